"""See and steer a batch: status, wait, failure reasons, redrive.

All state comes from S3 and SQS, never from the process that sent the batch, so it works across
reruns and from another machine:

* the batch **manifest** (``batches/<id>/manifest.jsonl``, written by sendjobs) says which jobs exist;
* a job is **done** when its output exists (one ``ListObjectsV2`` page per 1,000 outputs, limited
  to the key range of the batch);
* a job has **failed** when the worker gave up on it and wrote ``errors/<id>/<path>.json``
  (exit code, stderr tail, attempts) and its output does not exist;
* the rest is **pending**: in progress (in flight) or waiting, estimated from the queue's counters.

Cost of one status call: 1 GET (manifest) + ⌈jobs/1000⌉ LIST (outputs) + ⌈failed/1000⌉ LIST
(errors) + up to ``reasons`` GETs (failure details) + 2 GetQueueAttributes (+1 GetQueueUrl) +
1 CloudWatch GetMetricStatistics: ≈ 7 requests for 1,000 jobs, ≈ 106 for 100,000.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .. import aws, message


class StatusError(Exception):
    """One line for the user (no such batch, no manifest…)."""


@dataclass
class Manifest:
    header: dict
    keys: list[str]  # input keys, sorted

    @property
    def batch_id(self) -> str:
        return self.header["batch_id"]


@dataclass
class BatchStatus:
    batch_id: str
    total: int
    done: int
    failed: int
    in_progress: int
    waiting: int
    queue_visible: int | None = None
    queue_in_flight: int | None = None
    dlq_visible: int | None = None
    oldest_age_s: float | None = None
    jobs_per_s: float | None = None
    eta_s: float | None = None
    failures: list[dict] = field(default_factory=list)
    requests: int = 0

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- reading state


def latest_batch(s3, bucket: str, batch_prefix: str) -> str:
    newest = None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=batch_prefix, Delimiter="/"):
        for p in page.get("CommonPrefixes", []):
            candidate = p["Prefix"][len(batch_prefix):].rstrip("/")
            if newest is None or candidate > newest:
                newest = candidate
    if newest is None:
        raise StatusError(f"no batch found under s3://{bucket}/{batch_prefix}")
    return newest


def load_manifest(s3, bucket: str, batch_prefix: str, batch_id: str) -> Manifest:
    key = message.manifest_key(batch_prefix, batch_id)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as exc:  # noqa: BLE001
        if aws.error_code(exc) in ("NoSuchKey", "404"):
            raise StatusError(f"batch {batch_id} has no manifest at s3://{bucket}/{key}") from None
        raise
    lines = body.iter_lines()
    header = json.loads(next(lines))
    keys = sorted(json.loads(line)["key"] for line in lines if line.strip())
    return Manifest(header=header, keys=keys)


def _list_range(s3, bucket: str, prefix: str, counter: list, first: str | None = None,
                last: str | None = None) -> set[str]:
    """Keys under ``prefix``; with ``first``/``last``, only about that range (S3 lists in UTF-8
    byte order), so a status costs pages of this batch's outputs, not of every output ever written."""
    found: set[str] = set()
    args = {"Bucket": bucket, "Prefix": prefix}
    if first:
        args["StartAfter"] = first[:-1]  # StartAfter is exclusive
    stop = None if last is None else (last + "\U0010ffff").encode("utf-8")
    while True:
        counter[0] += 1
        page = s3.list_objects_v2(**args)
        contents = page.get("Contents", [])
        found.update(obj["Key"] for obj in contents)
        if not page.get("IsTruncated") or (stop is not None and contents and contents[-1]["Key"].encode("utf-8") > stop):
            return found
        args["ContinuationToken"] = page["NextContinuationToken"]
        args.pop("StartAfter", None)


def batch_status(clients, *, bucket: str, batch_id: str | None = None, ext: str = ".out",
                 batch_prefix: str = "batches/", errors_prefix: str = "errors/", reasons: int = 20,
                 now: datetime | None = None) -> BatchStatus:
    s3 = clients.s3
    counter = [0]
    if batch_id is None:
        counter[0] += 1
        batch_id = latest_batch(s3, bucket, batch_prefix)
    manifest = load_manifest(s3, bucket, batch_prefix, batch_id)
    counter[0] += 1
    h = manifest.header
    in_prefix, out_prefix = h["input_prefix"], h["output_prefix"]
    bases = {k: out_prefix + k[len(in_prefix):] + ext for k in manifest.keys}
    done_keys: set[str] = set()
    if bases:
        ordered = sorted(bases.values(), key=lambda s: s.encode("utf-8"))
        listed = _list_range(s3, bucket, out_prefix, counter, first=ordered[0], last=ordered[-1])
        wanted = set(bases.values())
        for key in listed:
            if key in wanted:
                done_keys.add(key)
                continue
            # A directory output: output_key/part...; the base is a prefix ending before a "/".
            cut = key.find("/", len(out_prefix))
            while cut != -1:
                if key[:cut] in wanted:
                    done_keys.add(key[:cut])
                    break
                cut = key.find("/", cut + 1)
    done = len(done_keys)

    err_prefix = f"{errors_prefix}{batch_id}/"
    error_keys = sorted(_list_range(s3, bucket, err_prefix, counter))
    failed_inputs = []
    for ek in error_keys:
        rel = ek[len(err_prefix):-len(".json")] if ek.endswith(".json") else ek[len(err_prefix):]
        inp = in_prefix + rel
        if inp in bases and bases[inp] not in done_keys:
            failed_inputs.append((inp, ek))
    failures = []
    for inp, ek in failed_inputs[:reasons]:
        counter[0] += 1
        try:
            record = json.loads(s3.get_object(Bucket=bucket, Key=ek)["Body"].read())
        except Exception:  # noqa: BLE001 - the count still stands without the details
            record = {}
        failures.append({"input_key": inp, "reason": record.get("reason"), "exit_code": record.get("exit_code"),
                         "attempts": record.get("attempts"), "stderr_tail": record.get("stderr_tail")})
    failed = len(failed_inputs)

    status = BatchStatus(batch_id=batch_id, total=len(manifest.keys), done=done, failed=failed, in_progress=0,
                         waiting=0, failures=failures)
    pending = max(0, status.total - done - failed)
    queue_url = h.get("queue_url")
    if queue_url:
        _queue_counts(clients, queue_url, status, counter)
    in_flight = status.queue_in_flight or 0
    status.in_progress = min(pending, in_flight)
    status.waiting = pending - status.in_progress
    started = _batch_started(batch_id)
    now = now or datetime.now(timezone.utc)
    if started and done:
        elapsed = max(1.0, (now - started).total_seconds())
        status.jobs_per_s = round(done / elapsed, 3)
        status.eta_s = round(pending / status.jobs_per_s, 1) if status.jobs_per_s else None
    status.requests = counter[0]
    return status


def _queue_counts(clients, queue_url: str, status: BatchStatus, counter: list) -> None:
    sqs = clients.sqs
    try:
        counter[0] += 1
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "RedrivePolicy"])["Attributes"]
    except Exception:  # noqa: BLE001 - the queue is optional for status (it may be gone)
        return
    status.queue_visible = int(attrs.get("ApproximateNumberOfMessages", 0))
    status.queue_in_flight = int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
    if attrs.get("RedrivePolicy"):
        dlq_url = dlq_url_of(queue_url, attrs["RedrivePolicy"])
        try:
            counter[0] += 1
            status.dlq_visible = int(sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=[
                "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        except Exception:  # noqa: BLE001
            pass
    status.oldest_age_s = _oldest_age(clients, queue_url, counter)


def _oldest_age(clients, queue_url: str, counter: list) -> float | None:
    """SQS has no API for it; CloudWatch has ApproximateAgeOfOldestMessage (1-minute data)."""
    if clients.session is None:
        return None
    try:
        cw = clients.client("cloudwatch")
        end = datetime.now(timezone.utc)
        counter[0] += 1
        points = cw.get_metric_statistics(Namespace="AWS/SQS", MetricName="ApproximateAgeOfOldestMessage",
                                          Dimensions=[{"Name": "QueueName", "Value": aws.queue_name(queue_url)}],
                                          StartTime=end - timedelta(minutes=5), EndTime=end, Period=60,
                                          Statistics=["Maximum"])["Datapoints"]
    except Exception:  # noqa: BLE001 - optional: no permission, or an endpoint without metrics
        return None
    if not points:
        return None
    return max(points, key=lambda p: p["Timestamp"])["Maximum"]


def _batch_started(batch_id: str) -> datetime | None:
    try:
        return datetime.strptime(batch_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def dlq_url_of(queue_url: str, redrive_policy: str) -> str:
    arn = json.loads(redrive_policy)["deadLetterTargetArn"]
    _, _, _, _, account, name = arn.split(":", 5)
    return f"{queue_url.rsplit('/', 2)[0]}/{account}/{name}"


# --------------------------------------------------------------------------- wait


def wait_for_batch(clients, *, bucket: str, batch_id: str, interval_s: float = 5.0, timeout_s: float | None = None,
                   on_update=lambda status: None, sleep=time.sleep, clock=time.monotonic, **kwargs) -> BatchStatus:
    """Poll until every job is done or failed (or ``timeout_s``); ``on_update`` sees each status."""
    started = clock()
    while True:
        status = batch_status(clients, bucket=bucket, batch_id=batch_id, **kwargs)
        on_update(status)
        if status.finished or (timeout_s is not None and clock() - started >= timeout_s):
            return status
        sleep(interval_s)


# --------------------------------------------------------------------------- rendering


def progress_line(s: BatchStatus) -> str:
    pct = 100 * (s.done + s.failed) / s.total if s.total else 100
    parts = [f"batch {s.batch_id}", f"{s.done}/{s.total} done ({pct:.0f}%)", f"{s.failed} failed",
             f"{s.in_progress} in progress", f"{s.waiting} waiting"]
    if s.jobs_per_s:
        parts.append(f"{s.jobs_per_s:g} jobs/s")
    if s.eta_s is not None and not s.finished:
        parts.append(f"ETA {int(s.eta_s)}s")
    return "  ".join(parts)


def report_lines(s: BatchStatus, *, max_failures: int = 20) -> list[str]:
    lines = [progress_line(s)]
    q = []
    if s.queue_visible is not None:
        q.append(f"queue: {s.queue_visible} visible, {s.queue_in_flight} in flight")
    if s.dlq_visible is not None:
        q.append(f"dead-letter queue: {s.dlq_visible}")
    q.append("oldest message: " + (f"{s.oldest_age_s:.0f}s" if s.oldest_age_s is not None else "n/a"))
    lines.append("; ".join(q))
    if s.failures:
        lines.append(f"failed ({s.failed}):")
        for f in s.failures[:max_failures]:
            tail = (f.get("stderr_tail") or "").strip().splitlines()
            detail = f" | {tail[-1]}" if tail else ""
            lines.append(f"  {message.printable(f['input_key'])}: {f.get('reason')} "
                         f"(attempts: {f.get('attempts')}){detail}")
        if s.failed > len(s.failures[:max_failures]):
            lines.append(f"  … and {s.failed - len(s.failures[:max_failures])} more (--json for all counts)")
    return lines
