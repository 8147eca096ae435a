"""Move dead-letter messages back to their queue after a fix, and clear their failure records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .. import aws, message
from ..batching import MAX_ENTRIES, call_batch
from .status import StatusError

#: Attributes a worker added when it rejected a message: not carried back to the job queue.
_REJECT_REASON = "filejobs-reject-reason"


@dataclass
class RedriveResult:
    dlq_url: str
    available: int
    moved: int = 0
    method: str = ""
    errors_cleared: int = 0


def redrive(clients, *, queue: str, dry_run: bool = False, max_messages: int | None = None,
            errors_bucket: str | None = None, errors_prefix: str = "errors/",
            sleep: Callable[[float], None] = time.sleep) -> RedriveResult:
    """Move dead-letter messages back to the queue after a fix.

    Uses SQS ``StartMessageMoveTask`` where the endpoint supports it, else receive → send → delete
    in batches of 10 (a message is deleted from the DLQ only once the queue accepted its copy), up
    to the number the DLQ held when the redrive began. Error records listed before the move are
    removed, so the batch status counts those jobs as pending again rather than failed.
    """
    sqs = clients.sqs
    queue_url = aws.resolve_queue_url(sqs, queue)
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy", "QueueArn"])["Attributes"]
    if "RedrivePolicy" not in attrs:
        raise StatusError(f"queue {queue} has no dead-letter queue")
    dlq_arn, _ = aws.dead_letter_target(attrs["RedrivePolicy"])
    dlq_url = aws.queue_url_from_arn(dlq_arn, queue_url)
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    result = RedriveResult(dlq_url=dlq_url, available=int(dlq_attrs["Attributes"]["ApproximateNumberOfMessages"]))
    if dry_run or result.available == 0:
        return result
    error_keys = _error_keys(clients.s3, errors_bucket, errors_prefix) if errors_bucket else []
    if max_messages is None and _start_move_task(clients, dlq_arn, attrs["QueueArn"]):
        result.method, result.moved = "StartMessageMoveTask", result.available
    else:
        result.method = "receive/send/delete"
        limit = result.available if max_messages is None else min(max_messages, result.available)
        bodies = _move_by_hand(sqs, dlq_url, queue_url, limit, sleep=sleep)
        result.moved = len(bodies)
        if max_messages is not None:
            # Only some were moved: clear only their records; the rest stay failed.
            moved_keys = {_error_key_of(b, errors_prefix) for b in bodies}
            error_keys = [k for k in error_keys if k in moved_keys]
    if error_keys and result.moved:
        for i in range(0, len(error_keys), 1000):
            clients.s3.delete_objects(Bucket=errors_bucket, Delete={
                "Objects": [{"Key": k} for k in error_keys[i:i + 1000]], "Quiet": True})
        result.errors_cleared = len(error_keys)
    return result


def _error_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _start_move_task(clients, source_arn: str, destination_arn: str) -> bool:
    # One attempt, no retries: endpoints without the API (moto) answer 500 and botocore would
    # otherwise retry for seconds before we fall back.
    try:
        sqs = clients.session.client("sqs", endpoint_url=clients.target.resolved_endpoint,
                                     config=aws.client_config().merge(
                                         aws.Config(retries={"mode": "standard", "max_attempts": 1})))
        sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=destination_arn)
        return True
    except Exception:  # noqa: BLE001 - unsupported here: move by hand
        return False


def _error_key_of(body: str, errors_prefix: str) -> str | None:
    try:
        job = message.decode(body)
    except message.MessageError:
        return None
    return message.error_key(errors_prefix, job.batch_id, job.relative_name)


def _copy_entry(m: dict) -> dict:
    """The SendMessageBatch entry (without Id) that puts a copy of ``m`` back on the job queue."""
    entry = {"MessageBody": m["Body"]}
    attrs = {k: {kk: vv for kk, vv in v.items() if kk in ("DataType", "StringValue", "BinaryValue")}
             for k, v in (m.get("MessageAttributes") or {}).items() if k != _REJECT_REASON}
    if attrs:
        entry["MessageAttributes"] = attrs
    return entry


def _move_by_hand(sqs, dlq_url: str, queue_url: str, limit: int, *, sleep: Callable[[float], None]) -> list[str]:
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
                       _copy_entry, sleep=sleep, on_success=delete_sent)
    return moved
