"""Move dead-letter messages back to their queue after a fix, see the move through, and clear the
failure records of what was moved (so ``jobctl status`` counts those jobs as pending again).

Two ways to move:

* ``StartMessageMoveTask`` where the endpoint has it (AWS, LocalStack): SQS moves every message the
  dead-letter queue held when the task started, asynchronously. The redrive follows the task
  (``movetask.follow``) until it has ended or a timeout passes. Only a COMPLETED task clears failure
  records. A FAILED or CANCELLED task, or one still running when the redrive stops following it,
  clears nothing: the API does not say which messages it moved, and a stale record (an output
  written since wins over it in the status) is better than a failed job without its reason.
* receive → send → delete in batches of 10 (endpoints without the API, or ``--max``): a message
  is deleted from the dead-letter queue only once the queue accepted its copy; only the records of
  the moved jobs are cleared.

Either way a record is cleared only if it is the same object (ETag) as in the listing taken before
the move began: a job that was moved, ran and failed again meanwhile has a new record, which stays.

Seam for attempt counting (issue 15 item 4): ``stamp_attributes`` adds message attributes to each
copy moved by hand. A move task cannot add any, so the worker cannot rely on such a stamp alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .. import aws, message
from ..batching import MAX_ENTRIES, call_batch
from . import listing, movetask
from .status import StatusError, load_manifest

#: Attributes a worker added when it rejected a message: not carried back to the job queue.
_REJECT_REASON = "filejobs-reject-reason"


@dataclass
class RedriveResult:
    dlq_url: str
    available: int
    moved: int = 0
    method: str = ""
    #: COMPLETED, or the move task's last status (RUNNING when no longer followed, FAILED, CANCELLED).
    status: str = ""
    task: dict | None = None
    errors_cleared: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RedriveOptions:
    dry_run: bool = False
    max_messages: int | None = None
    errors_bucket: str | None = None
    errors_prefix: str = "errors/"
    batch_prefix: str = "batches/"
    #: Follow a move task to its end (or ``timeout_s``); False: start it and return.
    follow: bool = True
    timeout_s: float | None = None
    interval_s: float = 2.0
    stamp_attributes: dict | None = None


def redrive(clients, *, queue: str, options: RedriveOptions | None = None,
            on_update: Callable[[movetask.MoveTask], None] = lambda task: None, sleep=time.sleep,
            clock=time.monotonic, **option_fields) -> RedriveResult:
    """Move QUEUE's dead-letter messages back to QUEUE (see the module). ``option_fields``: the
    ``RedriveOptions`` fields as keywords, instead of ``options``."""
    sqs, o = clients.sqs, options or RedriveOptions(**option_fields)
    queue_url, queue_arn, dlq_arn, dlq_url = dead_letter_queue(sqs, queue)
    result = RedriveResult(dlq_url=dlq_url, available=_visible(sqs, dlq_url, queue))
    if o.dry_run or result.available == 0:
        return result
    before = _records(clients, o, keys=None, result=result) if o.errors_bucket else {}
    if o.max_messages is None:
        try:
            handle = movetask.start(movetask.one_shot_sqs(clients), source_arn=dlq_arn, destination_arn=queue_arn)
        except movetask.MoveTaskUnsupported:
            handle = None
        if handle is not None:
            task = _follow(clients, dlq_arn, handle, o, on_update, sleep, clock)
            result.method, result.status, result.moved, result.task = ("StartMessageMoveTask", task.status,
                                                                       task.moved, task.as_dict())
            if task.status == movetask.COMPLETED and o.errors_bucket:
                _clear(clients, o, result, before, _records(clients, o, keys=None, result=result))
            elif o.errors_bucket:
                result.notes.append(f"failure records kept: the move task is {task.status}, and SQS does not say "
                                    f"which messages it moved")
            return result
    limit = result.available if o.max_messages is None else min(o.max_messages, result.available)
    bodies = move_by_hand(sqs, dlq_url, queue_url, limit, stamp=o.stamp_attributes or {}, sleep=sleep)
    result.method, result.status, result.moved = "receive/send/delete", movetask.COMPLETED, len(bodies)
    if o.errors_bucket and bodies:
        keys = {k for b in bodies for k in [_error_key_of(b, o.errors_prefix)] if k}
        _clear(clients, o, result, before, _records(clients, o, keys=keys, result=result))
    return result


def dead_letter_queue(sqs, queue: str) -> tuple[str, str, str, str]:
    """(queue URL, queue ARN, dead-letter queue ARN, dead-letter queue URL) of QUEUE."""
    queue_url = aws.resolve_queue_url(sqs, queue)
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy", "QueueArn"])["Attributes"]
    if "RedrivePolicy" not in attrs:
        raise StatusError(f"queue {queue} has no dead-letter queue")
    dlq_arn, _ = aws.dead_letter_target(attrs["RedrivePolicy"])
    return queue_url, attrs["QueueArn"], dlq_arn, aws.queue_url_from_arn(dlq_arn, queue_url)


def _visible(sqs, dlq_url: str, queue: str) -> int:
    try:
        attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    except aws.AWS_ERRORS as exc:
        if aws.is_queue_missing(exc):
            raise StatusError(f"the dead-letter queue {aws.queue_name(dlq_url)} of {queue} does not exist") from None
        raise
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def _follow(clients, dlq_arn: str, handle: str, o: RedriveOptions, on_update, sleep, clock) -> movetask.MoveTask:
    if not o.follow:
        return movetask.MoveTask(status=movetask.RUNNING, handle=handle)
    return movetask.follow(clients.sqs, source_arn=dlq_arn, handle=handle, interval_s=o.interval_s,
                           timeout_s=o.timeout_s, on_update=on_update, sleep=sleep, clock=clock)


# --------------------------------------------------------------------------- failure records


def _records(clients, o: RedriveOptions, *, keys: set[str] | None, result: RedriveResult) -> listing.Found:
    """The failure records ``keys`` that exist (None: every record) with their ETags."""
    s3, requests = clients.s3, listing.Requests()
    ordered = listing.trusts_start_after(clients.target)
    if keys is None:
        return _all_records(s3, o.errors_bucket, o.errors_prefix, o.batch_prefix, requests, ordered, result)
    found = listing.find(s3, o.errors_bucket, keys, requests=requests, ordered=ordered)
    return {k: v for k, v in found.items() if k in keys}


def _clear(clients, o: RedriveOptions, result: RedriveResult, before: listing.Found, after: listing.Found) -> None:
    """Delete the records of ``after`` that are unchanged since ``before``."""
    same = sorted(k for k, obj in after.items() if k in before and before[k].get("ETag") == obj.get("ETag"))
    if len(same) < len(after):
        result.notes.append(f"{len(after) - len(same)} failure records written since the move began were kept")
    for i in range(0, len(same), 1000):
        answer = clients.s3.delete_objects(Bucket=o.errors_bucket, Delete={
            "Objects": [{"Key": k} for k in same[i:i + 1000]], "Quiet": True})
        result.errors_cleared += len(same[i:i + 1000]) - len(answer.get("Errors", []))


def _all_records(s3, bucket: str, errors_prefix: str, batch_prefix: str, requests: listing.Requests, ordered: bool,
                 result: RedriveResult) -> listing.Found:
    """Every failure record, batch folder by batch folder. A folder over 1,000 records on a store
    that pages differently is listed from its batch's manifest instead (listing.py)."""
    found: listing.Found = {}
    for folder in listing.list_folders(s3, bucket, errors_prefix, requests=requests):
        try:
            got, uncertain = listing.list_all(s3, bucket, folder, requests=requests, ordered=ordered)
        except listing.ListingError:
            got, uncertain = {}, True
        if uncertain:
            got.update(_records_of_batch(s3, bucket, errors_prefix, batch_prefix, folder, requests, result))
        found.update(got)
    return found


def _records_of_batch(s3, bucket: str, errors_prefix: str, batch_prefix: str, folder: str,
                      requests: listing.Requests, result: RedriveResult) -> listing.Found:
    batch_id = folder[len(errors_prefix):].rstrip("/")
    try:
        manifest = load_manifest(s3, bucket, batch_prefix, batch_id)
    except StatusError:
        result.notes.append(f"the records under {folder} were listed past 1,000 keys on an endpoint that may page "
                            f"differently: some may have been missed and kept")
        return {}
    keys = {message.error_key(errors_prefix, batch_id, k[len(manifest.header.input_prefix):]) for k in manifest.keys}
    return listing.find(s3, bucket, keys, requests=requests, ordered=False)


def _error_key_of(body: str, errors_prefix: str) -> str | None:
    try:
        job = message.decode(body)
    except message.MessageError:
        return None
    return message.error_key(errors_prefix, job.batch_id, job.relative_name)


# --------------------------------------------------------------------------- by hand


def _copy_entry(m: dict, stamp: dict) -> dict:
    """The SendMessageBatch entry (without Id) that puts a copy of ``m`` back on the job queue."""
    entry = {"MessageBody": m["Body"]}
    attrs = {k: {kk: vv for kk, vv in v.items() if kk in ("DataType", "StringValue", "BinaryValue")}
             for k, v in (m.get("MessageAttributes") or {}).items() if k != _REJECT_REASON}
    attrs.update({k: {"DataType": "String", "StringValue": str(v)} for k, v in stamp.items()})
    if attrs:
        entry["MessageAttributes"] = attrs
    return entry


def move_by_hand(sqs, dlq_url: str, queue_url: str, limit: int, *, stamp: dict,
                 sleep: Callable[[float], None]) -> list[str]:
    """Receive → send → delete in batches of 10, until ``limit`` moved or the DLQ looks empty
    (two empty long polls: its count is approximate); returns the bodies moved."""
    moved: list[str] = []

    def delete_sent(sent: list[dict]) -> None:
        # A copy is on the job queue: the original may go (a failed delete only means it comes
        # back to the DLQ after its visibility timeout, a duplicate the worker makes harmless).
        call_batch(lambda entries: sqs.delete_message_batch(QueueUrl=dlq_url, Entries=entries), sent,
                   lambda m: {"ReceiptHandle": m["ReceiptHandle"]}, sleep=sleep)
        moved.extend(m["Body"] for m in sent)

    empty_rounds = 0
    while len(moved) < limit and empty_rounds < 2:
        batch = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=min(MAX_ENTRIES, limit - len(moved)),
                                    WaitTimeSeconds=1, VisibilityTimeout=60,
                                    MessageAttributeNames=["All"]).get("Messages", [])
        empty_rounds = 0 if batch else empty_rounds + 1
        if batch:
            call_batch(lambda entries: sqs.send_message_batch(QueueUrl=queue_url, Entries=entries), batch,
                       lambda m: _copy_entry(m, stamp), sleep=sleep, on_success=delete_sent)
    return moved
