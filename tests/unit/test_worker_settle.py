"""settle(lease, outcome): what each end means for the message, in SQS calls."""

from __future__ import annotations

import dataclasses

import pytest

from filejobs import message
from filejobs.worker import Outcome, Settler, retry_delay_s
from filejobs.worker.settle import count_carried_over
from worker_fakes import QUEUE, FakeRng, FakeS3, FakeSQS, Parts, admit, body, client_error, config, error_record


class Setup:
    def __init__(self, tmp_path, *, queue=QUEUE, attempt=1, leases=1, **config_kw):
        self.p = Parts(concurrency=max(1, leases))
        self.sqs, self.s3, self.fatal = FakeSQS(), FakeS3(), []
        self.settler = Settler(config(tmp_path, **config_kw), self.sqs, self.s3, queue, self.p.inflight,
                               log=self.p.log, stats=self.p.stats, on_fatal=self.fatal.append, clock=self.p.clock,
                               sleep=lambda s: None, rng=FakeRng(), wall_clock=lambda: 1764806400.0)
        self.leases = admit(self.p.inflight, *(body(f"input/{i}.txt") for i in range(leases)), attempt=attempt)
        for lease in self.leases:
            lease.job = message.decode(lease.body)

    def settle(self, outcome, lease=None):
        lease = lease or self.leases[0]
        self.settler.settle(lease, outcome)
        self.p.inflight.finish(lease)

    def flush_deletes(self):
        self.settler.deletes.close()
        self.settler.deletes.run()  # flushes what it holds, then returns


def test_retry_delays_grow_with_the_receive_count_and_are_capped():
    rng = FakeRng()
    assert [retry_delay_s(n, rng, base_s=10, max_s=100) for n in (1, 2, 3, 6)] == [10, 20, 40, 100]


def test_retry_delays_have_twenty_percent_jitter():
    class Edge:
        def __init__(self, pick):
            self.pick = pick

        def uniform(self, low, high):
            return low if self.pick == "low" else high
    assert [retry_delay_s(2, Edge(p), base_s=10, max_s=100) for p in ("low", "high")] == [16, 24]


@pytest.mark.parametrize("outcome, event, metric", [
    (Outcome.done("output/0.txt.out").timed(1.5), "done", "JobsDone"),
    (Outcome.duplicate("a duplicate delivery wrote it first", output="output/0.txt.out").timed(1), "skipped",
     "JobsSkipped"),
    (Outcome.stale().timed(0.1), "skipped", "JobsSkipped"),
])
def test_a_job_with_its_output_in_s3_is_deleted_in_a_batch(tmp_path, outcome, event, metric):
    s = Setup(tmp_path)
    s.settle(outcome)
    assert s.sqs.calls == []  # not yet: the deleter sends batches
    s.flush_deletes()
    (call,) = s.sqs.of("DeleteMessageBatch")
    assert [e["ReceiptHandle"] for e in call["Entries"]] == ["r0"]
    (fields,) = s.p.log.of(event)
    assert (fields["key"], fields["duration_s"], fields["output"], fields["reason"] or None) == (
        "input/0.txt", outcome.duration_s, outcome.output, outcome.reason or None)
    assert s.p.log.metrics == [(metric, outcome.duration_s)]


def test_deletes_of_many_jobs_share_requests(tmp_path):
    s = Setup(tmp_path, leases=12)
    for lease in s.leases:
        s.settle(Outcome.done("o").timed(1), lease)
    s.flush_deletes()
    assert [len(c["Entries"]) for c in s.sqs.of("DeleteMessageBatch")] == [10, 2]
    assert s.p.stats.done == 12


def test_a_refused_delete_is_a_warning(tmp_path):
    s = Setup(tmp_path)
    s.sqs.refuse = {"r0"}
    s.settle(Outcome.done("o").timed(1))
    s.flush_deletes()
    assert "delete failed" in s.p.log.of("warning")[0]["reason"]


def test_a_fatal_delete_error_stops_the_worker(tmp_path):
    s = Setup(tmp_path)
    s.sqs.errors["DeleteMessageBatch"] = client_error("AccessDenied")
    s.settle(Outcome.done("o").timed(1))
    s.flush_deletes()
    assert [type(e).__name__ for e in s.fatal] == ["ClientError"]


def test_a_failed_job_is_released_with_backoff_from_its_receive_count(tmp_path):
    s = Setup(tmp_path, attempt=2)
    s.settle(Outcome.failed("exit code 3", exit_code=3).timed(2))
    assert s.sqs.of("ChangeMessageVisibility") == [{"QueueUrl": QUEUE.url, "ReceiptHandle": "r0",
                                                     "VisibilityTimeout": 20}]
    (fields,) = s.p.log.of("failed")
    assert (fields["reason"], fields["exit_code"], fields["next"]) == ("exit code 3", 3, "retry in 20s")
    assert s.s3.calls == [] and s.p.log.metrics == [("JobsFailed", 2)] and s.p.stats.failed == 1


def test_the_last_failure_writes_the_failure_record_and_lets_sqs_dead_letter_it(tmp_path):
    s = Setup(tmp_path, attempt=3)
    s.settle(Outcome.failed("exit code 3", exit_code=3, stderr_tail="boom").timed(2))
    assert s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 0  # the next receive moves it
    assert s.p.log.of("failed")[0]["next"] == "dead-letter queue"
    assert error_record(s.s3, "errors/b1/0.txt.json") == {
        "v": 1, "input_key": "input/0.txt", "batch_id": "b1", "attempts": 3, "reason": "exit code 3",
        "exit_code": 3, "stderr_tail": "boom", "message_id": "m0", "at": "2025-12-04T00:00:00Z"}


def test_a_failure_record_that_cannot_be_written_is_a_warning_and_the_message_still_goes(tmp_path):
    s = Setup(tmp_path, attempt=3)
    s.s3.errors["PutObject"] = client_error("AccessDenied")
    s.settle(Outcome.failed("exit code 3").timed(2))
    assert "could not record the failure" in s.p.log.of("warning")[0]["reason"]
    assert s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 0


@pytest.mark.parametrize("count, max_receive_count, carried", [
    (1, 3, False), (3, 3, False),  # counts SQS can show: up to maxReceiveCount, then it moves the message
    (4, 3, True),  # only a store that carried the count over a redrive shows more
    (50, None, False),  # no dead-letter queue: any count is real
])
def test_a_count_above_max_receive_count_is_one_carried_over_a_redrive(count, max_receive_count, carried):
    assert count_carried_over(count, max_receive_count) is carried


def test_a_failure_on_a_carried_over_count_sends_the_job_again_as_a_new_message_then_deletes_it(tmp_path):
    s = Setup(tmp_path, attempt=4)  # maxReceiveCount 3: LocalStack after a redrive
    s.settle(Outcome.failed("exit code 3", exit_code=3).timed(2))
    (copy,) = s.sqs.of("SendMessage")
    assert copy == {"QueueUrl": QUEUE.url, "MessageBody": s.leases[0].body, "DelaySeconds": 10}  # attempt 1's delay
    s.flush_deletes()
    assert [e["ReceiptHandle"] for e in s.sqs.of("DeleteMessageBatch")[0]["Entries"]] == ["r0"]
    assert s.sqs.of("ChangeMessageVisibility") == [] and s.s3.calls == []  # no record: its attempts are still to come
    assert s.p.log.of("failed")[0]["next"] == "retry in 10s as a new message (receive count carried over a redrive)"
    assert s.p.stats.failed == 1 and s.p.log.metrics == [("JobsFailed", 2)]


def test_the_new_message_waits_at_most_what_sqs_allows(tmp_path):
    s = Setup(tmp_path, attempt=4, retry_base_s=2000, retry_max_s=5000)
    s.settle(Outcome.failed("exit code 3").timed(2))
    assert s.sqs.of("SendMessage")[0]["DelaySeconds"] == 900


def test_a_job_that_cannot_be_sent_again_is_recorded_and_still_backs_off(tmp_path):
    s = Setup(tmp_path, attempt=4)
    s.sqs.errors["SendMessage"] = client_error("AccessDenied")  # the worker role may not send to its queue
    s.settle(Outcome.failed("exit code 3", exit_code=3).timed(2))
    s.flush_deletes()
    assert error_record(s.s3, "errors/b1/0.txt.json")["attempts"] == 4  # it may have been the last attempt
    assert s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 10 and s.sqs.of("DeleteMessageBatch") == []
    assert "could not send it again" in s.p.log.of("warning")[0]["reason"]


def test_a_count_above_a_max_receive_count_raised_since_start_up_is_a_real_count(tmp_path):
    s = Setup(tmp_path, attempt=4, leases=2)
    s.sqs.max_receive_count = 5  # the policy now
    s.settle(Outcome.failed("exit code 3").timed(2))
    assert s.sqs.of("SendMessage") == [] and s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 80
    s.leases[1].attempt = 5
    s.settle(Outcome.failed("exit code 3").timed(2), s.leases[1])
    assert s.sqs.of("ChangeMessageVisibility")[1]["VisibilityTimeout"] == 0  # the last attempt: to the DLQ
    assert len(s.sqs.of("GetQueueAttributes")) == 1 and ("my-bucket", "errors/b1/1.txt.json") in s.s3.objects


def test_without_a_dead_letter_queue_failures_are_retried_forever(tmp_path):
    s = Setup(tmp_path, attempt=50, queue=dataclasses.replace(QUEUE, dlq_url=None, max_receive_count=None))
    s.settle(Outcome.failed("exit code 3").timed(2))
    assert s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 100 and s.s3.calls == []


def test_a_rejected_message_is_copied_to_the_dead_letter_queue_with_its_reason_then_deleted(tmp_path):
    s = Setup(tmp_path)
    s.settle(Outcome.rejected("body is not JSON"))
    (copy,) = s.sqs.of("SendMessage")
    assert copy["QueueUrl"] == QUEUE.dlq_url and copy["MessageBody"] == s.leases[0].body
    assert copy["MessageAttributes"]["filejobs-reject-reason"]["StringValue"] == "body is not JSON"
    s.flush_deletes()
    assert len(s.sqs.of("DeleteMessageBatch")) == 1 and s.s3.calls == [] and s.p.stats.rejected == 1
    assert s.p.log.of("rejected")[0] == {"message_id": "m0", "attempt": 1, "reason": "body is not JSON"}


def test_a_rejected_message_that_cannot_be_copied_is_left_to_sqs_redrive(tmp_path):
    s = Setup(tmp_path, attempt=2)
    s.sqs.errors["SendMessage"] = client_error("InvalidParameterValue")
    s.settle(Outcome.rejected("body is not JSON"))
    s.flush_deletes()
    assert s.sqs.of("DeleteMessageBatch") == [] and s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 20


def test_without_a_dead_letter_queue_a_rejected_message_waits_the_longest_retry_delay(tmp_path):
    s = Setup(tmp_path, queue=dataclasses.replace(QUEUE, dlq_url=None, max_receive_count=None))
    s.settle(Outcome.rejected("body is not JSON"))
    assert s.sqs.of("SendMessage") == [] and s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 100


def test_a_cancelled_job_is_released_at_once(tmp_path):
    s = Setup(tmp_path)
    s.settle(Outcome.cancelled())
    assert s.sqs.of("ChangeMessageVisibility")[0]["VisibilityTimeout"] == 0
    assert s.p.log.of("released") == [{"key": "input/0.txt", "attempt": 1, "reason": "shutdown"}]
    assert s.p.stats.released == 1


def test_a_lease_is_settled_once_even_if_shutdown_and_its_job_thread_both_try(tmp_path):
    s = Setup(tmp_path)
    s.settler.settle(s.leases[0], Outcome.cancelled())  # shutdown releases a stuck job...
    s.settler.settle(s.leases[0], Outcome.done("o").timed(1))  # ...which then finishes
    s.flush_deletes()
    assert [op for op, _ in s.sqs.calls] == ["ChangeMessageVisibility"] and s.p.stats.done == 0


def test_a_visibility_change_that_fails_is_a_warning_the_message_reappears_anyway(tmp_path):
    s = Setup(tmp_path)
    s.sqs.errors["ChangeMessageVisibility"] = client_error("InternalError")
    s.settle(Outcome.cancelled())
    assert "could not change visibility" in s.p.log.of("warning")[0]["reason"]
