"""S3 event notifications as jobs, through the real worker on moto's mock_aws: moto sends a real
event to the queue for each object the test creates (as S3 does once the bucket notification is set).

Notification configuration: https://docs.aws.amazon.com/AmazonS3/latest/userguide/ways-to-add-notification-config-to-bucket.html
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from filejobs.message import Allowed
from filejobs.runner import RunResult
from filejobs.worker import Worker, WorkerConfig
from testing.helpers import RecordingLog, drain_queue, list_keys
from testing.recorder import CallRecorder


class Upper:
    """Writes the input upper-cased; ``during(data)`` runs first (the test's hook into the job)."""

    def __init__(self, during=lambda data: None):
        self.during = during
        self.seen: list[bytes] = []
        self.lock = threading.Lock()

    def describe(self):
        return "upper"

    def run(self, input_path, output_path, *, cwd, timeout_s, cancel, context=None):
        with open(input_path, "rb") as fh:
            data = fh.read()
        with self.lock:
            self.seen.append(data)
        self.during(data)
        with open(output_path, "wb") as fh:
            fh.write(data.upper())
        return RunResult(True, exit_code=0)


def notify(clients, res, events=("s3:ObjectCreated:*",), prefix="input/"):
    """The bucket sends ``events`` for keys under ``prefix`` to the job queue (moto then sends a test event)."""
    arn = clients.sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    clients.s3.put_bucket_notification_configuration(Bucket=res.bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": list(events),
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}}]})


def run_worker(tmp_path, clients, res, runner, *, s3_events=True, **kw):
    allowed = Allowed(bucket=res.bucket, input_prefix="input/", output_prefix="output/", s3_events=s3_events)
    cfg = WorkerConfig(work_dir=str(tmp_path / "work"), extension=".out", queue=res.queue_url, allowed=allowed,
                       exit_when_idle_s=kw.pop("exit_when_idle_s", 0.05), wait_time_s=0, retry_base_s=0, **kw)
    log = RecordingLog()
    return Worker(cfg, clients, runner, log=log).run(), log


def output(clients, res, key):
    return clients.s3.get_object(Bucket=res.bucket, Key=key)["Body"].read()


def test_files_that_land_in_the_input_prefix_are_processed(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    notify(mocked, res)
    names = ["a.txt", "red flower+1.jpg", "datei-ü 18.dat", "deep/er/x.csv"]
    for name in names:
        mocked.s3.put_object(Bucket=res.bucket, Key=f"input/{name}", Body=name.encode())
    mocked.s3.put_object(Bucket=res.bucket, Key="elsewhere/b.txt", Body=b"no event: outside the filter")
    stats, log = run_worker(tmp_path, mocked, res, Upper(), concurrency=2)
    assert (stats.done, stats.skipped, stats.failed, stats.rejected) == (len(names), 1, 0, 0)
    assert sorted(list_keys(mocked.s3, res.bucket, "output/")) == sorted(f"output/{n}.out" for n in names)
    assert output(mocked, res, "output/red flower+1.jpg.out") == b"RED FLOWER+1.JPG"
    assert "s3:TestEvent" in [f for f in log.of("skipped") if not f["key"]][0]["reason"]
    assert drain_queue(mocked.sqs, res.queue_url) == [] and drain_queue(mocked.sqs, res.dlq_url) == []


def test_removals_and_folder_markers_are_deleted_without_running_anything(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    mocked.s3.put_object(Bucket=res.bucket, Key="input/old.txt", Body=b"x")
    notify(mocked, res, events=("s3:ObjectCreated:*", "s3:ObjectRemoved:*"))
    mocked.s3.delete_object(Bucket=res.bucket, Key="input/old.txt")
    mocked.s3.put_object(Bucket=res.bucket, Key="input/folder/", Body=b"")
    runner = Upper()
    stats, log = run_worker(tmp_path, mocked, res, runner)
    assert (stats.skipped, stats.done, runner.seen) == (3, 0, [])
    reasons = " ".join(f["reason"] for f in log.of("skipped"))
    assert "ObjectRemoved:Delete" in reasons and "folder marker" in reasons
    assert drain_queue(mocked.sqs, res.queue_url) == [] and list_keys(mocked.s3, res.bucket, "output/") == []


def test_an_object_overwritten_before_its_job_ran_is_processed_once_in_its_newest_version(
        tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    notify(mocked, res)
    for body in (b"v1", b"v2", b"v3"):
        mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=body)
    runner = Upper()
    stats, log = run_worker(tmp_path, mocked, res, runner)
    assert (stats.done, runner.seen) == (1, [b"v3"])
    assert [f["reason"] for f in log.of("skipped") if f["key"]] == ["input changed since the job was sent"] * 2
    assert output(mocked, res, "output/a.txt.out") == b"V3"


def test_a_duplicate_event_is_a_no_op(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    mocked.s3.put_bucket_versioning(Bucket=res.bucket, VersioningConfiguration={"Status": "Enabled"})
    notify(mocked, res)
    mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"once")
    received = drain_queue(mocked.sqs, res.queue_url)
    for m in received:
        mocked.sqs.change_message_visibility(QueueUrl=res.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                             VisibilityTimeout=0)
    (event,) = [m for m in received if "Records" in m["Body"]]
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=event["Body"])  # S3 delivered it twice
    stats, log = run_worker(tmp_path, mocked, res, Upper())
    assert (stats.done, stats.skipped) == (1, 2)  # the test event, and the second copy
    # Which copy comes first is moto's choice: the redelivered original checks first, the copy writes first.
    assert {f["reason"] for f in log.of("skipped")} & {"a duplicate delivery wrote it first",
                                                       "output exists for this input version"}
    assert len(mocked.s3.list_object_versions(Bucket=res.bucket, Prefix="output/")["Versions"]) == 1


def event_body(bucket: str, key: str, etag: str = "0123") -> str:
    return json.dumps({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1,
                                                                                  "eTag": etag}}}]})


@pytest.mark.parametrize("bucket, key, why", [
    ("someone-elses-bucket", "input/a.txt", "bucket 'someone-elses-bucket' is not the configured bucket"),
    ("BUCKET", "secret/a.txt", "input key 'secret/a.txt' is outside 'input/'"),
    ("BUCKET", "input/..%2F..%2Fetc%2Fpasswd", "'..' segment"),
])
def test_events_for_another_bucket_or_outside_the_prefix_are_dead_lettered_without_touching_s3(
        tmp_path, mocked, make_resources, bucket, key, why):
    res = make_resources(mocked)
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=event_body(bucket.replace("BUCKET", res.bucket), key))
    recorder = CallRecorder()
    recorder.attach(mocked.s3)
    runner = Upper()
    stats, _ = run_worker(tmp_path, mocked, res, runner)
    assert (stats.rejected, runner.seen, recorder.total_calls()) == (1, [], 0)
    (dead,) = drain_queue(mocked.sqs, res.dlq_url)
    assert why in dead["MessageAttributes"]["filejobs-reject-reason"]["StringValue"]


def test_without_s3_events_an_event_is_dead_lettered_with_what_to_do(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    notify(mocked, res)
    mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"x")
    stats, _ = run_worker(tmp_path, mocked, res, Upper(), s3_events=False)
    assert stats.rejected == 2  # the test event and the object's event
    reasons = {m["MessageAttributes"]["filejobs-reject-reason"]["StringValue"]
               for m in drain_queue(mocked.sqs, res.dlq_url)}
    assert reasons == {"an S3 event notification: start getjobs with --s3-events (and --bucket, --input-prefix, "
                       "--output-prefix) to process these"}


def test_an_older_versions_job_that_finishes_last_leaves_the_newer_output(tmp_path, mocked, make_resources):
    """The race, in this order: v1's job downloads; v2 lands, and its job (on the other slot) writes
    the output; then v1's job uploads. It must find v2's output, see that v1 is no longer the
    input's current version, and leave it (stale)."""
    res = make_resources(mocked)
    notify(mocked, res)
    mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"old")

    def during(data):
        if data != b"old":
            return
        mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"new")  # its event queues v2's job
        deadline = time.monotonic() + 20
        while not list_keys(mocked.s3, res.bucket, "output/"):
            assert time.monotonic() < deadline, "v2's job never wrote its output"
            time.sleep(0.02)
    runner = Upper(during)
    stats, log = run_worker(tmp_path, mocked, res, runner, concurrency=2, batch_linger_s=0)
    assert runner.seen == [b"old", b"new"]
    assert output(mocked, res, "output/a.txt.out") == b"NEW"
    assert (stats.done, stats.skipped, stats.failed) == (1, 2, 0)
    assert "a newer version of the input replaced it; its output is kept" in [f["reason"] for f in log.of("skipped")]


def test_several_records_in_one_message_are_each_processed(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    etags = [mocked.s3.put_object(Bucket=res.bucket, Key=f"input/{n}", Body=n.encode())["ETag"].strip('"')
             for n in ("a", "b")]
    records = [json.loads(event_body(res.bucket, f"input/{n}", etag))["Records"][0] for n, etag in zip("ab", etags)]
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=json.dumps({"Records": records}))
    stats, log = run_worker(tmp_path, mocked, res, Upper())
    assert stats.done == 1 and [f["result"] for f in log.of("record")] == ["done", "done"]
    assert (output(mocked, res, "output/a.out"), output(mocked, res, "output/b.out")) == (b"A", b"B")
