"""Move dead-letter messages back to their queue after a fix, and clear their failure records."""

from __future__ import annotations

from dataclasses import dataclass

from .. import aws, message
from .status import StatusError, dlq_url_of


@dataclass
class RedriveResult:
    dlq_url: str
    available: int
    moved: int = 0
    method: str = ""
    errors_cleared: int = 0


def redrive(clients, *, queue: str, dry_run: bool = False, max_messages: int | None = None,
            errors_bucket: str | None = None, errors_prefix: str = "errors/") -> RedriveResult:
    """Move dead-letter messages back to the queue after a fix.

    Uses SQS ``StartMessageMoveTask`` where the endpoint supports it, else receive → send → delete
    in batches of 10 (a message is deleted from the DLQ only once the queue accepted its copy).
    Error records listed before the move are removed, so the batch status counts those jobs as
    pending again rather than failed.
    """
    sqs = clients.sqs
    queue_url = aws.resolve_queue_url(sqs, queue)
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy", "QueueArn"])["Attributes"]
    if "RedrivePolicy" not in attrs:
        raise StatusError(f"queue {queue} has no dead-letter queue")
    dlq_url = dlq_url_of(queue_url, attrs["RedrivePolicy"])
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages",
                                                                           "QueueArn"])["Attributes"]
    result = RedriveResult(dlq_url=dlq_url, available=int(dlq_attrs["ApproximateNumberOfMessages"]))
    if dry_run or result.available == 0:
        return result
    error_keys = []
    if errors_bucket:
        for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=errors_bucket, Prefix=errors_prefix):
            error_keys += [o["Key"] for o in page.get("Contents", [])]
    if max_messages is None and _start_move_task(clients, dlq_attrs["QueueArn"], attrs["QueueArn"]):
        result.method, result.moved = "StartMessageMoveTask", result.available
    else:
        result.method = "receive/send/delete"
        bodies = _move_by_hand(sqs, dlq_url, queue_url, max_messages)
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


def _move_by_hand(sqs, dlq_url: str, queue_url: str, max_messages: int | None) -> list[str]:
    """Receive → send → delete in batches of 10; returns the bodies moved."""
    moved: list[str] = []
    empty_rounds = 0
    while (max_messages is None or len(moved) < max_messages) and empty_rounds < 2:
        want = 10 if max_messages is None else min(10, max_messages - len(moved))
        batch = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=want, WaitTimeSeconds=1,
                                    VisibilityTimeout=60, MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            empty_rounds += 1
            continue
        empty_rounds = 0
        entries = []
        for i, m in enumerate(batch):
            entry = {"Id": str(i), "MessageBody": m["Body"]}
            attrs = {k: v for k, v in (m.get("MessageAttributes") or {}).items() if k != "filejobs-reject-reason"}
            if attrs:
                entry["MessageAttributes"] = {k: {kk: vv for kk, vv in v.items() if kk in ("DataType", "StringValue", "BinaryValue")}
                                              for k, v in attrs.items()}
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        ok = [batch[int(s["Id"])] for s in sent.get("Successful", [])]
        if ok:
            sqs.delete_message_batch(QueueUrl=dlq_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(ok)])
        moved += [m["Body"] for m in ok]
    return moved
