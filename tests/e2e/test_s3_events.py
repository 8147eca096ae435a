"""Files that arrive on their own: plain boto3 uploads into input/ (no sendjobs), S3 event
notifications delivered by the moto server to the queue, getjobs --s3-events as a subprocess.

moto sends an event per created object to SQS in server mode, as S3 does once a bucket
notification is configured (https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventNotifications.html),
and a test event when the configuration is set.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from filejobs import aws
from testing.helpers import REGION, ROOT, drain_queue, list_keys, run_tool

pytestmark = pytest.mark.e2e


def notify(server, res, prefix="input/"):
    arn = server.sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    server.s3.put_bucket_notification_configuration(Bucket=res.bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}}]})


def getjobs_args(res, work, *extra, idle_s=3, command=("cp",)):
    return ["--s3-events", "--bucket", res.bucket, "--input-prefix", "input/", "--output-prefix", "output/",
            "--wait-time", "1", "--exit-when-idle", str(idle_s), "--retry-delay", "0", "--log-format", "json",
            *extra, work, ".out", res.queue_url, REGION, *command]


def events_of(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def summary(stderr: str) -> dict:
    (last,) = [e for e in events_of(stderr) if e["event"] == "summary"]
    return last


def etags(s3, bucket, prefix, suffix=""):
    """{relative name: ETag} of every object under ``prefix``; one LIST per 1,000 keys."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix):].removesuffix(suffix)] = obj["ETag"]
    return found


def test_a_file_uploaded_with_plain_boto3_is_processed_as_it_lands(server, make_resources, tmp_path):
    res = make_resources(server)
    notify(server, res)
    server.s3.put_object(Bucket=res.bucket, Key="input/reports/q4 2026+final.csv", Body=b"a,b\n1,2\n")
    got = run_tool("getjobs", *getjobs_args(res, tmp_path / "work", idle_s=1), env=server.env)
    assert got.returncode == 0, got.stderr
    assert server.s3.get_object(Bucket=res.bucket, Key="output/reports/q4 2026+final.csv.out")["Body"].read() == \
        b"a,b\n1,2\n"
    s = summary(got.stderr)
    assert (s["done"], s["skipped"], s["failed"], s["rejected"]) == (1, 1, 0, 0)  # the job, and S3's test event
    (test_event,) = [e for e in events_of(got.stderr) if e["event"] == "skipped" and "TestEvent" in e["reason"]]
    assert drain_queue(server.sqs, res.queue_url) == [] and drain_queue(server.sqs, res.dlq_url) == []


def test_bad_events_foreign_buckets_test_events_and_overwrites(server, make_resources, tmp_path):
    res = make_resources(server)
    notify(server, res)
    for body in (b"v1", b"v2 (the newest)"):
        server.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=body)
    bad = {
        "not an event": '{"Records": "nope"}',
        "foreign bucket": json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
            "bucket": {"name": "someone-elses-bucket"}, "object": {"key": "input/x.txt", "size": 1}}}]}),
        "outside the prefix": json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                                       "s3": {"bucket": {"name": res.bucket},
                                                              "object": {"key": "secret/x.txt", "size": 1}}}]}),
        "bad SNS envelope": json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                                        "Message": "not json"}),
    }
    for body in bad.values():
        server.sqs.send_message(QueueUrl=res.queue_url, MessageBody=body)
    got = run_tool("getjobs", *getjobs_args(res, tmp_path / "work", idle_s=1), env=server.env)
    assert got.returncode == 0 and "Traceback" not in got.stderr, got.stderr
    assert server.s3.get_object(Bucket=res.bucket, Key="output/a.txt.out")["Body"].read() == b"v2 (the newest)"
    s = summary(got.stderr)
    assert (s["done"], s["skipped"], s["rejected"], s["failed"]) == (1, 2, 4, 0)  # skipped: the test event, v1
    reasons = {m["Body"]: m["MessageAttributes"]["filejobs-reject-reason"]["StringValue"]
               for m in drain_queue(server.sqs, res.dlq_url)}
    assert reasons == {
        bad["not an event"]: "S3 event: S3 event without records",
        bad["foreign bucket"]: "S3 event: bucket 'someone-elses-bucket' is not the configured bucket",
        bad["outside the prefix"]: "S3 event: input key 'secret/x.txt' is outside 'input/'",
        bad["bad SNS envelope"]: "S3 event: SNS notification whose Message is not JSON"}
    assert list_keys(server.s3, res.bucket, "output/") == ["output/a.txt.out"]


class Workers:
    """getjobs subprocesses whose event logs are read as they come: ``settled`` counts the
    messages they finished (done or skipped)."""

    def __init__(self, server, argvs):
        self.settled = 0
        self.changed = threading.Condition()
        self.procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "getjobs.py"), *map(str, argv)],
                                       env=server.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       text=True) for argv in argvs]
        self.logs: list[list[str]] = [[] for _ in self.procs]
        self.readers = [threading.Thread(target=self._read, args=(p, log), daemon=True)
                        for p, log in zip(self.procs, self.logs)]
        for reader in self.readers:
            reader.start()

    def _read(self, proc, log):
        for line in proc.stderr:
            log.append(line)
            if '"event": "done"' in line or '"event": "skipped"' in line:
                with self.changed:
                    self.settled += 1
                    self.changed.notify_all()

    def wait_below(self, sent: int, window: int, timeout_s: float = 60) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: sent - self.settled < window, timeout_s), "the workers stalled"

    def finish(self, timeout_s: float = 120) -> list[str]:
        for proc in self.procs:
            proc.wait(timeout=timeout_s)
        for reader in self.readers:
            reader.join(timeout=10)
        assert [p.returncode for p in self.procs] == [0] * len(self.procs), "".join(self.logs[0])[-2000:]
        return ["".join(log) for log in self.logs]


@pytest.mark.slow
def test_an_event_storm_of_1000_uploads_loses_nothing(server, make_resources, tmp_path):
    """1,000 uploads from 8 threads while two workers (10 slots each) take their events. moto's SQS
    scans every message of a queue on each call (send and receive alike), so a backlog of 1,000
    would make each call cost ~0.5 s: the uploaders keep at most WINDOW events unsettled, enough to
    keep every slot busy. Real S3 and SQS have no such limit; what is tested is that none is lost."""
    window = 30
    res = make_resources(server, visibility_timeout_s=60)
    notify(server, res)
    # The uploaders wait for the workers' "done" lines, which getjobs writes in batches (up to
    # 0.1 s late, later on a loaded machine): with --exit-when-idle 1 a worker could see that gap
    # as idleness and leave while uploads wait for it. 3 s of idleness is never part of the storm.
    # What is tested is the events: each job copies its file in the worker (a --handler) rather than
    # through a `cp` process, a fifth of the test's CPU; commands have their own tests.
    workers = Workers(server, [getjobs_args(res, tmp_path / f"w{i}", "--concurrency", "10", "--handler",
                                            "shutil:copyfile", idle_s=3, command=()) for i in range(2)])
    s3 = boto3.client("s3", endpoint_url=server.env["AWS_ENDPOINT_URL"], region_name=REGION,
                      config=aws.client_config(max_pool_connections=16))
    names = [f"d{i % 10}/file {i:04d}.txt" for i in range(1000)]
    sent = itertools.count(1)
    lock = threading.Lock()

    def upload(name):
        with lock:
            n = next(sent)
        workers.wait_below(n, window)
        s3.put_object(Bucket=res.bucket, Key=f"input/{name}", Body=name.encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, names))
    outs = workers.finish()
    inputs = etags(server.s3, res.bucket, "input/")
    outputs = etags(server.s3, res.bucket, "output/", ".out")
    assert len(inputs) == 1000 and outputs == inputs  # every file, with its own bytes: lost 0
    assert sum(summary(o)["done"] for o in outs) == 1000
    assert sum(summary(o)["failed"] + summary(o)["rejected"] for o in outs) == 0
    assert drain_queue(server.sqs, res.queue_url) == [] and drain_queue(server.sqs, res.dlq_url) == []


@pytest.mark.parametrize("args, why", [
    (["--s3-events", "w", ".out", "q", REGION, "cp"], "--s3-events needs --bucket, --input-prefix and --output-prefix"),
    (["--s3-events", "--bucket", "b", "--input-prefix", "input/", "w", ".out", "q", REGION, "cp"], "--s3-events needs"),
    (["--s3-events", "--bucket", "b", "--input-prefix", "in/", "--output-prefix", "in/out/", "w", ".out", "q", REGION,
      "cp"], "--output-prefix 'in/out/' must not overlap --input-prefix 'in/'"),
    (["--s3-events", "--bucket", "b", "--input-prefix", "data/in/", "--output-prefix", "data/", "w", ".out", "q",
      REGION, "cp"], "--output-prefix 'data/' must not overlap"),
    (["--s3-events", "--bucket", "b", "--input-prefix", "in/", "--output-prefix", "out/", "--errors-prefix",
      "in/errors/", "w", ".out", "q", REGION, "cp"], "--errors-prefix 'in/errors/' must not overlap"),
])
def test_s3_events_without_the_bucket_and_prefixes_is_refused_at_start_up(args, why, tmp_path):
    got = run_tool("getjobs", *args, env={**os.environ}, cwd=str(tmp_path))
    assert got.returncode == 2 and got.stderr.count("\n") == 1 and why in got.stderr, got.stderr
