"""See a batch: status counts, failure reasons, wait.

All state comes from S3 and SQS, never from the process that sent the batch, so it works across
reruns and from another machine:

* the batch **manifest** (``batches/<id>/manifest.jsonl``, written by sendjobs) says which jobs exist;
* a job is **done** when its output exists (about one ``ListObjectsV2`` page per 1,000 outputs,
  limited to the keys of the batch; ``listing.py`` says how, on S3 and on other stores);
* a job has **failed** when the worker gave up on it and wrote ``errors/<id>/<path>.json``
  (exit code, stderr tail, attempts) and its output does not exist;
* the rest is **pending**: in progress (in flight) or waiting, estimated from the queue's counters.

Cost of one status call on S3: 1 GET (manifest) + ⌈jobs/1000⌉ LIST (outputs) + ⌈failed/1000⌉
LIST (errors) + up to ``reasons`` GETs (failure details) + 2 GetQueueAttributes (+1 GetQueueUrl) +
1 CloudWatch GetMetricStatistics: ≈ 7 requests for 1,000 jobs, ≈ 106 for 100,000. Other stores
list differently (``listing.py``), about the same for numbered names, up to ~3× for random ones.

The arithmetic (which outputs and failure records belong to which job, throughput) is pure and
kept apart from the reading, so it is tested without S3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from .. import aws, message
from ..records import ErrorRecord, ManifestEntry, ManifestHeader, RecordError
from . import listing
from .polling import poll_until


class StatusError(Exception):
    """One line for the user (no such batch, no manifest…)."""


@dataclass
class Manifest:
    header: ManifestHeader
    keys: list[str]  # input keys, sorted

    @property
    def batch_id(self) -> str:
        return self.header.batch_id


@dataclass
class BatchStatus:
    batch_id: str | None
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
    #: ``jobctl status --prefix``: the input prefix compared, instead of a batch.
    prefix: str | None = None
    #: Lines for the user about how far the counts can be trusted.
    warnings: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.total

    @property
    def pending(self) -> int:
        return max(0, self.total - self.done - self.failed)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- arithmetic (pure)


def parse_manifest(lines: Iterable[str | bytes]) -> Manifest:
    """A manifest from its lines (header first); ``RecordError`` if a line cannot be read."""
    lines = iter(lines)
    header = ManifestHeader.decode(next(lines, b"") or b"")
    keys = sorted(ManifestEntry.decode(line).key for line in lines if line.strip())
    return Manifest(header=header, keys=keys)


def output_keys(manifest: Manifest, ext: str) -> dict[str, str]:
    """Input key → the output key a worker writes for it (``OUTPUT_PREFIX + path + ext``)."""
    h = manifest.header
    return {k: h.output_prefix + k[len(h.input_prefix):] + ext for k in manifest.keys}


def failed_jobs(error_keys: Iterable[str], errors_prefix: str, outputs: dict[str, str],
                done: set[str], input_prefix: str) -> list[tuple[str, str]]:
    """(input key, failure record key) of this batch's jobs with a record and no output, by key."""
    failed = []
    for ek in sorted(error_keys):
        rel = ek[len(errors_prefix):]
        inp = input_prefix + (rel[:-len(".json")] if rel.endswith(".json") else rel)
        if inp in outputs and outputs[inp] not in done:
            failed.append((inp, ek))
    return failed


def failure_detail(input_key: str, body: str | bytes) -> dict:
    """What ``jobctl status`` shows of one failure, from the worker's failure record."""
    try:
        r = ErrorRecord.decode(body)
    except RecordError as exc:
        return unreadable_failure(input_key, str(exc))
    return {"input_key": input_key, "reason": r.reason, "exit_code": r.exit_code, "attempts": r.attempts,
            "stderr_tail": r.stderr_tail}


def unreadable_failure(input_key: str, why: str) -> dict:
    """A failure whose record cannot be read: the job still counts as failed, and says why."""
    return {"input_key": input_key, "reason": f"failure record unreadable: {why}", "exit_code": None,
            "attempts": None, "stderr_tail": None}


def batch_started(batch_id: str) -> datetime | None:
    """When sendjobs made the batch, from its id (``20261128T020501Z-3f9a2c``)."""
    try:
        return datetime.strptime(batch_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def throughput(batch_id: str, *, done: int, pending: int, now: datetime) -> tuple[float | None, float | None]:
    """(jobs per second since the batch started, seconds left at that rate)."""
    started = batch_started(batch_id)
    if not (started and done):
        return None, None
    jobs_per_s = round(done / max(1.0, (now - started).total_seconds()), 3)
    return jobs_per_s, (round(pending / jobs_per_s, 1) if jobs_per_s else None)


# --------------------------------------------------------------------------- reading state


def latest_batch(s3, bucket: str, batch_prefix: str, requests=None) -> str:
    """The newest batch id under ``batch_prefix`` (ids begin with their UTC time, so the greatest)."""
    folders = listing.list_folders(s3, bucket, batch_prefix, requests=requests or listing.Requests())
    if not folders:
        raise StatusError(f"no batch found under s3://{bucket}/{batch_prefix}")
    return max(f[len(batch_prefix):].rstrip("/") for f in folders)


def load_manifest(s3, bucket: str, batch_prefix: str, batch_id: str) -> Manifest:
    key = message.manifest_key(batch_prefix, batch_id)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as exc:  # noqa: BLE001
        if aws.is_not_found(exc):
            raise StatusError(f"batch {batch_id} has no manifest at s3://{bucket}/{key}") from None
        raise
    try:
        return parse_manifest(body.iter_lines())
    except RecordError as exc:
        raise StatusError(f"the manifest s3://{bucket}/{key} cannot be read: {exc}") from None


def batch_status(clients, *, bucket: str, batch_id: str | None = None, ext: str = ".out",
                 batch_prefix: str = "batches/", errors_prefix: str = "errors/", reasons: int = 20,
                 now: datetime | None = None) -> BatchStatus:
    s3, requests = clients.s3, listing.Requests()
    ordered = listing.trusts_start_after(clients.target)
    if batch_id is None:
        batch_id = latest_batch(s3, bucket, batch_prefix, requests)
    manifest = requests(load_manifest, s3=s3, bucket=bucket, batch_prefix=batch_prefix, batch_id=batch_id)
    h = manifest.header
    outputs = output_keys(manifest, ext)
    wanted = set(outputs.values())
    done = listing.settled(wanted, listing.find(s3, bucket, wanted, requests=requests, ordered=ordered))
    err_prefix = f"{errors_prefix}{batch_id}/"
    records = [message.error_key(errors_prefix, batch_id, k[len(h.input_prefix):]) for k in manifest.keys]
    listed = listing.find(s3, bucket, records, requests=requests, ordered=ordered)
    failed = failed_jobs(listed, err_prefix, outputs, done, h.input_prefix)
    status = BatchStatus(batch_id=batch_id, total=len(manifest.keys), done=len(done), failed=len(failed),
                         in_progress=0, waiting=0,
                         failures=[failure(s3, bucket, inp, ek, requests) for inp, ek in failed[:reasons]])
    finish(clients, status, h.queue_url, requests, now or datetime.now(timezone.utc))
    return status


def finish(clients, status: BatchStatus, queue_url: str | None, requests: listing.Requests, now: datetime) -> None:
    """Split the pending jobs into in progress and waiting (from the queue), add rate, ETA and cost."""
    if queue_url:
        _queue_counts(clients, queue_url, status, requests, now)
    status.in_progress = min(status.pending, status.queue_in_flight or 0)
    status.waiting = status.pending - status.in_progress
    if status.batch_id:
        status.jobs_per_s, status.eta_s = throughput(status.batch_id, done=status.done, pending=status.pending,
                                                     now=now)
    status.requests = requests.n


def failure(s3, bucket: str, input_key: str, error_key: str, requests: listing.Requests) -> dict:
    try:
        body = requests(s3.get_object, Bucket=bucket, Key=error_key)["Body"].read()
    except Exception as exc:  # noqa: BLE001 - the job still counts as failed, without the details
        return unreadable_failure(input_key, aws.describe(exc, bucket=bucket))
    return failure_detail(input_key, body)


def _queue_counts(clients, queue_url: str, status: BatchStatus, requests: listing.Requests, now: datetime) -> None:
    sqs = clients.sqs
    try:
        attrs = requests(sqs.get_queue_attributes, QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "RedrivePolicy"])["Attributes"]
    except Exception:  # noqa: BLE001 - the queue is optional for status (it may be gone)
        return
    status.queue_visible = int(attrs.get("ApproximateNumberOfMessages", 0))
    status.queue_in_flight = int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
    if attrs.get("RedrivePolicy"):
        try:
            dlq_url = aws.queue_url_from_arn(aws.dead_letter_target(attrs["RedrivePolicy"])[0], queue_url)
            status.dlq_visible = int(requests(sqs.get_queue_attributes, QueueUrl=dlq_url, AttributeNames=[
                "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        except Exception:  # noqa: BLE001 - optional, like the queue itself
            pass
    status.oldest_age_s = _oldest_age(clients, queue_url, requests, now)


def _oldest_age(clients, queue_url: str, requests: listing.Requests, now: datetime) -> float | None:
    """SQS has no API for it; CloudWatch has ApproximateAgeOfOldestMessage (1-minute data)."""
    if clients.session is None:
        return None
    try:
        points = requests(clients.client("cloudwatch").get_metric_statistics, Namespace="AWS/SQS",
                          MetricName="ApproximateAgeOfOldestMessage",
                          Dimensions=[{"Name": "QueueName", "Value": aws.queue_name(queue_url)}],
                          StartTime=now - timedelta(minutes=5), EndTime=now, Period=60,
                          Statistics=["Maximum"])["Datapoints"]
    except Exception:  # noqa: BLE001 - optional: no permission, or an endpoint without metrics
        return None
    if not points:
        return None
    return max(points, key=lambda p: p["Timestamp"])["Maximum"]


# --------------------------------------------------------------------------- wait


def wait_for(poll: Callable[[], BatchStatus], *, interval_s: float = 5.0, timeout_s: float | None = None,
             on_update=lambda status: None, sleep=time.sleep, clock=time.monotonic) -> BatchStatus:
    """Poll until every job is done or failed, or ``timeout_s`` has passed (then the last poll is
    at the deadline); ``on_update`` sees each status. Unfinished on return means timed out."""
    return poll_until(poll, lambda s: s.finished, interval_s=interval_s, timeout_s=timeout_s, on_update=on_update,
                      sleep=sleep, clock=clock)


def wait_for_batch(clients, *, bucket: str, batch_id: str, interval_s: float = 5.0, timeout_s: float | None = None,
                   on_update=lambda status: None, sleep=time.sleep, clock=time.monotonic, **kwargs) -> BatchStatus:
    """``wait_for`` one batch."""
    return wait_for(lambda: batch_status(clients, bucket=bucket, batch_id=batch_id, **kwargs), interval_s=interval_s,
                    timeout_s=timeout_s, on_update=on_update, sleep=sleep, clock=clock)
