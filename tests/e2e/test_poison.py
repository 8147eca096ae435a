"""Poison catalogue: every message that cannot succeed ends in the dead-letter queue, by the
documented rule, while the worker keeps serving good jobs, and nothing is written outside
WORK_DIR.

The rule (filejobs/worker.py, getjobs --help "Trust"):

* **at once** – a message that can never succeed (not JSON, unknown schema version, missing or
  mistyped fields, a key that is absolute / has a ``..`` segment / is over 1,024 bytes, a
  bucket or prefix outside ``--bucket/--input-prefix/--output-prefix``) is copied to the DLQ
  with a ``filejobs-reject-reason`` attribute and deleted, without any S3 request;
  if that copy cannot be sent (e.g. the body plus the attribute is over the size limit) the
  message falls back to SQS's own redrive after ``maxReceiveCount``;
* **after maxReceiveCount** – a job that fails (non-zero exit, timeout, missing input) is
  retried with backoff; on the last attempt an error record ``errors/<batch>/<rel>.json`` is
  written and the visibility set to 0, so the next receive makes SQS move it to the DLQ.

The worker talks to the endpoint through the observing proxy (no faults), which is how the test
knows no S3 request ever named a forged bucket or key.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid

import pytest

from testing.helpers import REGION, ROOT, list_keys
from testing.faultproxy import FaultProxy

pytestmark = pytest.mark.e2e

MAX_RECEIVE = 2

COMMAND = """#!/bin/sh
case "$1" in
  *always-fail*) echo "this input always fails" >&2; exit 3 ;;
  *hang*) exec sleep HANG_SECONDS ;;
esac
exec cp "$1" "$2"
"""


def _body(**fields) -> str:
    return json.dumps(fields, separators=(",", ":"))


def _snapshot(root: str, skip: str) -> set[str]:
    out = set()
    for d, dirs, files in os.walk(root):
        if os.path.abspath(d).startswith(skip):
            dirs[:] = []
            continue
        out.update(os.path.join(d, f) for f in files)
    return out


def _dlq_messages(sqs, url: str) -> list[dict]:
    got, seen = [], set()
    for _ in range(20):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60,
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            break
        for m in batch:
            if m["MessageId"] not in seen:
                seen.add(m["MessageId"])
                got.append(m)
    return got


def _count(sqs, url: str) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in a["Attributes"].values())


@pytest.mark.slow
def test_poison_catalogue(server, make_resources, tmp_path, endpoint):
    res = make_resources(server, max_receive_count=MAX_RECEIVE, visibility_timeout_s=30)
    s3, sqs, bucket = server.s3, server.sqs, res.bucket
    tag = uuid.uuid4().hex[:8]
    outside = f"/tmp/filejobs-poison-{tag}"  # an absolute key aims here; it must never appear
    batch = f"poison-{tag}"

    def job(rel: str, **over) -> str:
        fields = {"v": 1, "bucket": bucket, "input_key": f"in/{rel}", "input_prefix": "in/",
                  "output_prefix": "out/", "batch_id": batch}
        fields.update(over)
        return _body(**fields)

    for name in ("always-fail.txt", "hang.txt", "deleted.txt"):
        s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=f"{name}\n".encode())
    deleted_etag = s3.head_object(Bucket=bucket, Key="in/deleted.txt")["ETag"]
    max_size = int(sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["MaximumMessageSize"])
                   ["Attributes"]["MaximumMessageSize"])

    immediate = {
        "malformed JSON": "{not json at all",
        "empty object": "{}",
        "JSON array, not the legacy shape": "[1, 2, 3]",
        "unknown schema version": job("v99.txt", v=99),
        "schema version as string": job("v1s.txt", v="1"),
        "missing fields": _body(v=1, bucket=bucket),
        "mistyped size": job("size.txt", size="big"),
        "oversized key": job("a" * 3000 + ".txt"),
        "forged bucket": job("forged.txt", bucket="someone-elses-bucket"),
        "input outside the allowed prefix": job("x.txt", input_key="secret/x.txt", input_prefix="secret/"),
        "output outside the allowed prefix": job("y.txt", output_prefix="elsewhere/"),
        "absolute key": job("abs", input_key=f"{outside}/pwned", input_prefix=f"{outside}/"),
        "absolute key, empty prefix": job("abs2", input_key=f"{outside}/pwned2", input_prefix=""),
        "dot-dot key": job("dd", input_key=f"in/../../../poison-{tag}-pwned", input_prefix="in/"),
        "dot-dot output prefix": job("ddo.txt", output_prefix="out/../../"),
        "legacy body with dot-dot": json.dumps(["process", bucket, "in/", "out/", f"../../poison-{tag}-legacy"]),
        "legacy body, absolute name": json.dumps(["process", bucket, "", "out/", f"{outside}/legacy"]),
        "NUL in key": job("nul\u0000.txt"),
    }
    # Near the size limit and not JSON: its copy (body + reason attribute) may not fit in the
    # DLQ; then SQS's redrive after maxReceiveCount is the documented fallback.
    oversized = "x" * (max_size - 64)
    after_retries = {
        "command always fails": job("always-fail.txt"),
        "command hangs past its timeout": job("hang.txt"),
        "input deleted before processing": job("deleted.txt", etag=deleted_etag),
    }
    s3.delete_object(Bucket=bucket, Key="in/deleted.txt")

    script = tmp_path / "cmd.sh"
    hang_seconds = f"60.{int(tag, 16) % 10**6:06d}"  # a process name no one else has
    script.write_text(COMMAND.replace("HANG_SECONDS", hang_seconds))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    before = _snapshot(str(tmp_path), str(work))

    def send_good(names):
        for n in names:
            s3.put_object(Bucket=bucket, Key=f"in/{n}", Body=f"good {n}\n".encode())
            sqs.send_message(QueueUrl=res.queue_url, MessageBody=job(n))

    goods_1 = [f"good-{i}.txt" for i in range(6)]
    goods_2 = [f"late-good-{i}.txt" for i in range(6)]
    # Interleave good and poison messages.
    send_good(goods_1[:2])
    for body in immediate.values():
        sqs.send_message(QueueUrl=res.queue_url, MessageBody=body)
    send_good(goods_1[2:4])
    sqs.send_message(QueueUrl=res.queue_url, MessageBody=oversized)
    for body in after_retries.values():
        sqs.send_message(QueueUrl=res.queue_url, MessageBody=body)
    send_good(goods_1[4:])

    with FaultProxy(endpoint, rate=0.0) as proxy:
        env = dict(server.env, AWS_ENDPOINT_URL=proxy.url, HOME=str(tmp_path))
        worker = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "getjobs.py"), "--concurrency", "3", "--wait-time", "1",
             "--exit-when-idle", "4", "--retry-delay", "0", "--job-timeout", "1.5", "--visibility-timeout", "30",
             "--bucket", bucket, "--input-prefix", "in/", "--output-prefix", "out/", "--log-format", "json",
             str(work), ".out", res.queue_url, REGION, str(script)],
            env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            total = len(immediate) + 1 + len(after_retries)
            deadline = time.monotonic() + 60
            sent_late = False
            while time.monotonic() < deadline:
                n = _count(sqs, res.dlq_url)
                if not sent_late and n >= len(immediate):
                    send_good(goods_2)  # the worker keeps serving good jobs after the poison
                    sent_late = True
                if n >= total and sent_late:
                    break
                assert worker.poll() is None, "the worker died:\n" + worker.stderr.read()[-3000:]
                time.sleep(0.3)
            assert worker.poll() is None, "the worker died"
            stderr = worker.communicate(timeout=60)[1]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        events = list(proxy.events)

    assert worker.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr

    dlq = _dlq_messages(sqs, res.dlq_url)
    by_body = {m["Body"]: m for m in dlq}
    missing = [name for name, body in {**immediate, **after_retries, "oversized body": oversized}.items()
               if body not in by_body]
    assert not missing, f"not in the DLQ: {missing}; DLQ has {len(dlq)}"
    for name, body in immediate.items():
        attrs = by_body[body].get("MessageAttributes", {})
        assert "filejobs-reject-reason" in attrs, name
    for name, body in after_retries.items():
        assert "filejobs-reject-reason" not in by_body[body].get("MessageAttributes", {}), name
    errors = set(list_keys(s3, bucket, f"errors/{batch}/"))
    assert errors == {f"errors/{batch}/{n}.json" for n in ("always-fail.txt", "hang.txt", "deleted.txt")}
    record = json.loads(s3.get_object(Bucket=bucket, Key=f"errors/{batch}/always-fail.txt.json")["Body"].read())
    assert record["attempts"] == MAX_RECEIVE and record["exit_code"] == 3
    assert "always fails" in record["stderr_tail"]
    hang = json.loads(s3.get_object(Bucket=bucket, Key=f"errors/{batch}/hang.txt.json")["Body"].read())
    assert "timed out" in hang["reason"]

    # Good jobs, before and after the poison, all done; the queue is empty.
    outs = set(list_keys(s3, bucket, "out/"))
    assert outs == {f"out/{n}.out" for n in goods_1 + goods_2}
    for n in goods_1 + goods_2:
        assert s3.get_object(Bucket=bucket, Key=f"out/{n}.out")["Body"].read() == f"good {n}\n".encode()
    assert _count(sqs, res.queue_url) == 0

    # No S3 request ever named a forged bucket or a key outside in/ out/ errors/.
    for e in events:
        if e.op.startswith("s3:"):
            assert e.data.get("bucket") == bucket, e
            named = e.data.get("key") or e.data.get("prefix") or ""
            assert named.startswith(("in/", "out/", "errors/")), e
            assert ".." not in named.split("/"), e

    # Nothing was written outside WORK_DIR, and WORK_DIR itself was cleaned up.
    assert not os.path.exists(outside)
    after = _snapshot(str(tmp_path), str(work))
    assert after == before, sorted(after - before)
    assert [f for _, _, fs in os.walk(work) for f in fs] == []
    assert not [p for p in os.listdir("/tmp") if p.startswith(f"poison-{tag}")]
    # The hanging command's whole process group was killed.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"sleep {hang_seconds}" not in ps
