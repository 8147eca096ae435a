"""jobctl redrive: a move task followed to its end, records cleared only for what was moved.

moto has no StartMessageMoveTask/ListMessageMoveTasks, so ``ScriptedMoveTasks`` plays SQS's part on
top of moto's queues: each ListMessageMoveTasks call takes the next status of a script, and the
messages really move (receive, send, delete on moto) when the script says they do. The statuses and
fields are the documented ones (filejobs/ops/movetask.py); LocalStack answered the same way
(/work/scratch/localstack/REPORT.md, s2 and s2b). The end-to-end run on LocalStack is in
tests/e2e/test_redrive_e2e.py."""

import json

import pytest
from botocore.exceptions import ClientError

from filejobs import aws
from filejobs import cli as jobctl
from filejobs.ops import redrive, status
from filejobs.records import ErrorRecord
from moto_jobs import submit, work
from testing.helpers import cli_runner, drain_queue


class ScriptedMoveTasks:
    """moto's SQS client plus the two move-task calls, following ``script`` (one status per List call).
    ``("COMPLETED", n)`` / ``("FAILED", n)`` / ``("CANCELLED", n)`` move n more messages first (None: all)."""

    def __init__(self, sqs, script, *, on_move=lambda: None):
        self._sqs, self.script, self.on_move = sqs, list(script), on_move
        self.task, self.calls = None, []

    def __getattr__(self, name):
        return getattr(self._sqs, name)

    def start_message_move_task(self, *, SourceArn, DestinationArn):
        self.calls.append("StartMessageMoveTask")
        if self.task and self.task["Status"] == "RUNNING":
            raise ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "There is already a task "
                              "running. Only one active task is allowed for a source queue arn at a given time."}},
                              "StartMessageMoveTask")
        dlq = self.dlq_url
        count = int(self._sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
                    ["Attributes"]["ApproximateNumberOfMessages"])
        self.src_url = dlq
        self.task = {"TaskHandle": "handle-1", "Status": "RUNNING", "SourceArn": SourceArn,
                     "DestinationArn": DestinationArn, "ApproximateNumberOfMessagesMoved": 0,
                     "ApproximateNumberOfMessagesToMove": count, "StartedTimestamp": 1767225600000}
        return {"TaskHandle": "handle-1"}

    def list_message_move_tasks(self, *, SourceArn, MaxResults=1):
        self.calls.append("ListMessageMoveTasks")
        step = self.script.pop(0)
        state, n = (step, 0) if isinstance(step, str) else step
        self._move(n)
        self.task["Status"] = state
        entry = dict(self.task)
        if state != "RUNNING":
            entry.pop("TaskHandle")
        if state == "FAILED":
            entry["FailureReason"] = "AWS.SimpleQueueService.AccessDenied"
        return {"Results": [entry]}

    def _move(self, n):
        moved = 0
        while n is None or moved < n:
            got = self._sqs.receive_message(QueueUrl=self.src_url, MaxNumberOfMessages=1).get("Messages", [])
            if not got:
                break
            self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=got[0]["Body"])
            self._sqs.delete_message(QueueUrl=self.src_url, ReceiptHandle=got[0]["ReceiptHandle"])
            moved += 1
        self.task["ApproximateNumberOfMessagesMoved"] += moved
        if moved:
            self.on_move()


class OneSession:
    """The session part ``movetask.one_shot_sqs`` uses: every SQS client is the scripted one."""

    def __init__(self, sqs):
        self.sqs = sqs

    def client(self, service, **_):
        assert service == "sqs"
        return self.sqs


def with_move_tasks(clients, res, script, **kw):
    fake = ScriptedMoveTasks(clients.sqs, script, **kw)
    fake.queue_url, fake.dlq_url = res.queue_url, res.dlq_url
    return aws.Clients(s3=clients.s3, sqs=fake, session=OneSession(fake), target=clients.target), fake


def failed_twice(tmp_path, mocked, make_resources, names=("x.txt", "y.txt")):
    res = make_resources(mocked, max_receive_count=1)
    submit(tmp_path, mocked, res, list(names))
    work(tmp_path, mocked, res, ["false"])  # the broken command: every job fails and reaches the DLQ
    assert status.batch_status(mocked, bucket=res.bucket).failed == len(names)
    return res


def test_a_move_task_is_followed_to_its_end_and_then_the_records_are_cleared(tmp_path, mocked, make_resources):
    res = failed_twice(tmp_path, mocked, make_resources)
    clients, fake = with_move_tasks(mocked, res, ["RUNNING", ("RUNNING", 1), ("COMPLETED", None)])
    seen, sleeps = [], []
    result = redrive.redrive(clients, queue=res.queue_url, errors_bucket=res.bucket, on_update=seen.append,
                             sleep=sleeps.append)
    assert [(t.status, t.moved) for t in seen] == [("RUNNING", 0), ("RUNNING", 1), ("COMPLETED", 2)]
    assert sleeps == [2.0, 2.0]  # no real sleep: the poll interval is injected
    assert (result.method, result.status, result.moved, result.errors_cleared) == ("StartMessageMoveTask",
                                                                                   "COMPLETED", 2, 2)
    work(tmp_path, mocked, res, ["cp"])  # the fixed command
    assert status.batch_status(mocked, bucket=res.bucket).done == 2


def test_a_failed_move_task_keeps_every_failure_record_and_says_so(tmp_path, mocked, make_resources):
    """Issue 15 item 5: the task failed after moving one job; both records stay (the one moved is
    stale until its job finishes, which is better than a failed job shown as waiting without a reason)."""
    res = failed_twice(tmp_path, mocked, make_resources)
    clients, _ = with_move_tasks(mocked, res, [("FAILED", 1)])
    result = redrive.redrive(clients, queue=res.queue_url, errors_bucket=res.bucket, sleep=lambda s: None)
    assert (result.status, result.moved, result.errors_cleared) == ("FAILED", 1, 0)
    assert result.notes == ["failure records kept: the move task is FAILED, and SQS does not say which messages "
                            "it moved"]
    assert status.batch_status(mocked, bucket=res.bucket).failed == 2


def test_the_cli_exits_1_when_the_move_task_failed(tmp_path, mocked, make_resources, monkeypatch):
    res = failed_twice(tmp_path, mocked, make_resources)
    clients, _ = with_move_tasks(mocked, res, [("FAILED", 1)])
    monkeypatch.setattr("filejobs.cli.connect", lambda target: clients)
    result = cli_runner().invoke(jobctl.cli, ["redrive", res.queue_url, "--bucket", res.bucket, "--json"],
                                prog_name="jobctl")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[-2] == (f"the move task FAILED (AWS.SimpleQueueService.AccessDenied) after moving 1 of 2 messages "
                         f"back to {res.queue_url}")
    assert json.loads(result.stdout)["task"]["status"] == "FAILED"


def test_a_move_task_still_running_at_the_timeout_exits_124_and_keeps_the_records(tmp_path, mocked, make_resources,
                                                                                  monkeypatch):
    res = failed_twice(tmp_path, mocked, make_resources)
    clients, fake = with_move_tasks(mocked, res, ["RUNNING"] * 50)
    monkeypatch.setattr("filejobs.cli.connect", lambda target: clients)
    result = cli_runner().invoke(jobctl.cli, ["redrive", res.queue_url, "--bucket", res.bucket, "--timeout", "0"],
                                prog_name="jobctl")
    assert result.exit_code == 124
    assert (f"the move task is RUNNING (0 moved so far); see it finish with 'jobctl redrive {res.queue_url} --status'"
            in result.stderr)
    assert status.batch_status(mocked, bucket=res.bucket).failed == 2
    tasks = cli_runner().invoke(jobctl.cli, ["redrive", res.queue_url, "--status"], prog_name="jobctl")
    assert tasks.exit_code == 0 and tasks.stderr.startswith("move task RUNNING, 0 of 2 moved (started 2026-01-01")


def test_no_wait_starts_the_task_and_returns(tmp_path, mocked, make_resources, monkeypatch):
    res = failed_twice(tmp_path, mocked, make_resources)
    clients, fake = with_move_tasks(mocked, res, [])
    monkeypatch.setattr("filejobs.cli.connect", lambda target: clients)
    result = cli_runner().invoke(jobctl.cli, ["redrive", res.queue_url, "--bucket", res.bucket, "--no-wait"],
                                prog_name="jobctl")
    assert result.exit_code == 0 and fake.calls == ["StartMessageMoveTask"]
    assert "see it finish with" in result.stderr


def test_a_record_written_again_during_the_move_is_kept(tmp_path, mocked, make_resources):
    res = failed_twice(tmp_path, mocked, make_resources)
    batch = status.latest_batch(mocked.s3, res.bucket, "batches/")

    def fails_again_at_once():  # a worker took the moved job and it failed for good again
        mocked.s3.put_object(Bucket=res.bucket, Key=f"errors/{batch}/x.txt.json", Body=ErrorRecord(
            input_key="input/x.txt", batch_id=batch, attempts=1, reason="exit code 9").encode())

    clients, _ = with_move_tasks(mocked, res, [("COMPLETED", None)], on_move=fails_again_at_once)
    result = redrive.redrive(clients, queue=res.queue_url, errors_bucket=res.bucket, sleep=lambda s: None)
    assert result.errors_cleared == 1 and result.notes == ["1 failure records written since the move began were kept"]
    (failure,) = status.batch_status(mocked, bucket=res.bucket).failures
    assert failure["reason"] == "exit code 9"


def test_a_task_already_running_is_an_error_not_a_second_move_by_hand(tmp_path, mocked, make_resources):
    res = failed_twice(tmp_path, mocked, make_resources)
    clients, fake = with_move_tasks(mocked, res, [])
    fake.start_message_move_task(SourceArn="arn:aws:sqs:us-east-1:123456789012:" + res.dlq_url.rsplit("/", 1)[1],
                                 DestinationArn="x")
    with pytest.raises(ClientError, match="already a task running"):
        redrive.redrive(clients, queue=res.queue_url, errors_bucket=res.bucket)
    assert len(drain_queue(mocked.sqs, res.dlq_url)) == 2


def test_an_endpoint_without_move_tasks_is_moved_by_hand_and_status_says_it_has_none(tmp_path, mocked,
                                                                                      make_resources):
    res = failed_twice(tmp_path, mocked, make_resources)
    result = redrive.redrive(mocked, queue=res.queue_url, errors_bucket=res.bucket)
    assert (result.method, result.status, result.moved, result.errors_cleared) == ("receive/send/delete",
                                                                                   "COMPLETED", 2, 2)
    tasks = cli_runner().invoke(jobctl.cli, ["redrive", res.queue_url, "--status"], prog_name="jobctl")
    assert tasks.exit_code == 1 and "this endpoint has no message move tasks" in tasks.stderr


def test_a_move_by_hand_can_stamp_each_copy(tmp_path, mocked, make_resources):
    """The seam for counting attempts after a redrive (issue 15 item 4): a move task cannot add attributes."""
    res = failed_twice(tmp_path, mocked, make_resources)
    redrive.redrive(mocked, queue=res.queue_url, max_messages=5, stamp_attributes={"filejobs-redriven": "1"})
    copies = drain_queue(mocked.sqs, res.queue_url)
    assert len(copies) == 2
    assert all(m["MessageAttributes"]["filejobs-redriven"]["StringValue"] == "1" for m in copies)


def test_a_missing_dead_letter_queue_is_named(mocked, make_resources):
    res = make_resources(mocked)
    mocked.sqs.delete_queue(QueueUrl=res.dlq_url)
    result = cli_runner().invoke(jobctl.cli, ["redrive", res.queue_url], prog_name="jobctl")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"jobctl: error: the dead-letter queue {res.dlq_url.rsplit('/', 1)[1]} of "
                                     f"{res.queue_url} does not exist")


def test_records_past_a_page_on_a_store_that_pages_like_localstack_are_all_found_and_cleared(tmp_path, mocked,
                                                                                             make_resources):
    from testing.fakes3 import PercentEncodedListing

    names = ["a.txt", "ä.txt", "b.txt", "über.txt", "c.txt"]
    res = failed_twice(tmp_path, mocked, make_resources, names)
    clients, _ = with_move_tasks(mocked, res, [("COMPLETED", None)])
    clients = aws.Clients(s3=PercentEncodedListing(mocked.s3, page_size=2), sqs=clients.sqs, session=clients.session,
                          target=aws.Target(region="us-east-1", endpoint_url="http://127.0.0.1:4566"))
    result = redrive.redrive(clients, queue=res.queue_url, errors_bucket=res.bucket, sleep=lambda s: None)
    assert (result.moved, result.errors_cleared, result.notes) == (5, 5, [])
    assert status.batch_status(mocked, bucket=res.bucket).failed == 0
