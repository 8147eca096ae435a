"""Attempts after a dead-letter redrive, whichever way a store counts them (issue 15, item 4).

* AWS: a redriven message is a new message, its ApproximateReceiveCount starts again from 1
  ("All redriven messages are considered new messages and are assigned a new messageID and
  enqueueTime": https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html).
* LocalStack keeps the message and reports its old count (the first receive after the move showed 4
  with maxReceiveCount 2), while its own decision to dead-letter it again counts from 1.

moto plays the queue. ``Store`` is its client as the worker sees it: the backoffs the worker asks
for are recorded and then made immediate (no test waits for them), and for the LocalStack case the
count of the redriven message is reported with the offset LocalStack adds. Either way a failing job
must get its full retries, each failure but the last with a backoff, and one failure record per
trip to the dead-letter queue.
"""

from __future__ import annotations

import json

import pytest

from filejobs import aws, message
from filejobs.message import Job
from filejobs.runner import RunResult
from filejobs.worker import Worker, WorkerConfig
from testing.helpers import RecordingLog, drain_queue
from testing.recorder import CallRecorder


class Store:
    """moto's SQS client; ``carried`` maps a MessageId to the offset its reported count gets."""

    def __init__(self, sqs, carried: dict[str, int] | None = None):
        self.sqs, self.carried = sqs, carried or {}
        self.waits: list[tuple[str, int]] = []  # ("visibility" | "send", seconds asked for)

    def __getattr__(self, name):
        return getattr(self.sqs, name)

    def receive_message(self, **params):
        answer = self.sqs.receive_message(**params)
        for m in answer.get("Messages", []):
            if m["MessageId"] in self.carried:
                count = int(m["Attributes"]["ApproximateReceiveCount"]) + self.carried[m["MessageId"]]
                m["Attributes"]["ApproximateReceiveCount"] = str(count)
        return answer

    def change_message_visibility(self, **params):
        self.waits.append(("visibility", params["VisibilityTimeout"]))
        return self.sqs.change_message_visibility(**{**params, "VisibilityTimeout": 0})

    def send_message(self, **params):
        self.waits.append(("send", params.get("DelaySeconds", 0)))
        return self.sqs.send_message(**{**params, "DelaySeconds": 0})


class NoJitter:
    def uniform(self, low, high):
        return (low + high) / 2


class Failing:
    def __init__(self):
        self.runs = 0

    def describe(self):
        return "failing"

    def run(self, input_path, output_path, *, cwd, timeout_s, cancel, context=None):
        self.runs += 1
        return RunResult(False, exit_code=3, reason="exit code 3", stderr_tail="boom")


def send_job(mocked, res) -> str:
    etag = mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"a")["ETag"]
    return mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(Job(
        bucket=res.bucket, input_key="input/a.txt", input_prefix="input/", output_prefix="output/", batch_id="b1",
        etag=etag)))["MessageId"]


def work(tmp_path, mocked, res, store: Store, runner) -> RecordingLog:
    log = RecordingLog()
    config = WorkerConfig(work_dir=str(tmp_path / "work"), extension=".out", queue=res.queue_url, wait_time_s=0,
                          exit_when_idle_s=0.3, retry_base_s=10, retry_max_s=100)
    Worker(config, aws.Clients(s3=mocked.s3, sqs=store), runner, log=log, rng=NoJitter()).run()
    return log


@pytest.fixture
def records(mocked):
    """Every write of a failure record."""
    recorder = CallRecorder(keep_params=True)
    recorder.attach(mocked.s3)
    return lambda: [p["Key"] for _, op, p in recorder.calls if op == "PutObject" and p["Key"].startswith("errors/")]


def test_aws_a_redriven_job_is_a_new_message_with_full_retries_and_one_record_per_trip(
        tmp_path, mocked, make_resources, records):
    res = make_resources(mocked, max_receive_count=2)
    send_job(mocked, res)
    store, runner = Store(mocked.sqs), Failing()
    for trip in (1, 2):
        work(tmp_path, mocked, res, store, runner)
        assert runner.runs == 2 * trip and [s for _, s in store.waits] == [10, 0] * trip  # backoff, then the DLQ
        assert records() == ["errors/b1/a.txt.json"] * trip
        (dead,) = drain_queue(mocked.sqs, res.dlq_url)
        # A redrive as AWS does it: the job comes back as a new message (its count starts from 1).
        # The failure record is left where it is: the worker needs nothing from the redrive.
        mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=dead["Body"])
        mocked.sqs.delete_message(QueueUrl=res.dlq_url, ReceiptHandle=dead["ReceiptHandle"])


@pytest.mark.parametrize("offset", [
    3,  # LocalStack as measured: attempts 1, 2, its move counted once more, then 4 after the redrive
    2,  # a store that counts the move as nothing: 3 after the redrive
])
def test_localstack_a_count_carried_over_a_redrive_still_gets_full_retries_with_backoff_and_one_record(
        tmp_path, mocked, make_resources, records, offset):
    res = make_resources(mocked, max_receive_count=2)
    redriven = send_job(mocked, res)
    store, runner = Store(mocked.sqs, carried={redriven: offset}), Failing()
    log = work(tmp_path, mocked, res, store, runner)
    attempts = [(f["attempt"], f["next"]) for f in log.of("failed")]
    assert attempts == [(offset + 1, "retry in 10s as a new message (receive count carried over a redrive)"),
                        (1, "retry in 10s"), (2, "dead-letter queue")]
    assert store.waits == [("send", 10), ("visibility", 10), ("visibility", 0)]  # every retry after a backoff
    assert records() == ["errors/b1/a.txt.json"]  # once, on the last attempt
    record = json.loads(mocked.s3.get_object(Bucket=res.bucket, Key="errors/b1/a.txt.json")["Body"].read())
    assert (record["attempts"], record["reason"]) == (2, "exit code 3")
    # Lost 0: the job is in the dead-letter queue, once, and nowhere else.
    (dead,) = drain_queue(mocked.sqs, res.dlq_url)
    assert message.decode(dead["Body"]).input_key == "input/a.txt" and drain_queue(mocked.sqs, res.queue_url) == []


def test_localstack_a_redriven_job_that_now_succeeds_is_done_at_once(tmp_path, mocked, make_resources, records):
    res = make_resources(mocked, max_receive_count=2)
    redriven = send_job(mocked, res)
    store = Store(mocked.sqs, carried={redriven: 3})
    log = work(tmp_path, mocked, res, store, _Copying())
    assert [f["attempt"] for f in log.of("done")] == [4] and store.waits == [] and records() == []
    assert drain_queue(mocked.sqs, res.queue_url) == [] and drain_queue(mocked.sqs, res.dlq_url) == []


class _Copying:
    def describe(self):
        return "cp"

    def run(self, input_path, output_path, *, cwd, timeout_s, cancel, context=None):
        with open(input_path, "rb") as src, open(output_path, "wb") as dst:
            dst.write(src.read())
        return RunResult(True, exit_code=0)
