"""SQS message move tasks (the dead-letter queue redrive API): start one, follow it to its end, list them.

A move task is asynchronous: ``StartMessageMoveTask`` returns at once with a handle and SQS moves
the messages in the background. ``ListMessageMoveTasks`` shows the most recent tasks of a source
queue (up to 10) with their status: RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED, the
approximate number moved so far and the number to move, counted when the task started. The handle
is listed only while the task is RUNNING. Only one task can be active per source queue.
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ListMessageMoveTasksResultEntry.html

moto does not implement the API (its server answers an HTML 500); LocalStack does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import botocore.exceptions as bexc

from .. import aws
from .polling import poll_until

RUNNING, COMPLETED, CANCELLING, CANCELLED, FAILED = "RUNNING", "COMPLETED", "CANCELLING", "CANCELLED", "FAILED"
ENDED = {COMPLETED, CANCELLED, FAILED}
#: How an endpoint without the API answers: moto's server (an HTML 500, parsed as code "500") and
#: mock_aws (NotImplementedError); other emulators say so by name.
_UNSUPPORTED = {"500", "501", "NotImplemented", "InvalidAction", "UnknownOperationException"}


class MoveTaskUnsupported(Exception):
    """The endpoint does not implement message move tasks."""


@dataclass(frozen=True)
class MoveTask:
    status: str
    moved: int = 0
    to_move: int | None = None
    started_at: datetime | None = None
    handle: str | None = None
    failure_reason: str | None = None

    @classmethod
    def from_entry(cls, e: dict) -> MoveTask:
        started = e.get("StartedTimestamp")
        return cls(status=e.get("Status", "?"), moved=int(e.get("ApproximateNumberOfMessagesMoved") or 0),
                   to_move=None if e.get("ApproximateNumberOfMessagesToMove") is None
                   else int(e["ApproximateNumberOfMessagesToMove"]),
                   started_at=None if started is None else datetime.fromtimestamp(int(started) / 1000, timezone.utc),
                   handle=e.get("TaskHandle"), failure_reason=e.get("FailureReason"))

    def line(self) -> str:
        of = f" of {self.to_move}" if self.to_move is not None else ""
        since = f" (started {self.started_at:%Y-%m-%d %H:%M:%S}Z)" if self.started_at else ""
        why = f": {self.failure_reason}" if self.failure_reason else ""
        return f"move task {self.status}{why}, {self.moved}{of} moved{since}"

    def as_dict(self) -> dict:
        return {"status": self.status, "moved": self.moved, "to_move": self.to_move, "handle": self.handle,
                "failure_reason": self.failure_reason,
                "started_at": self.started_at.isoformat() if self.started_at else None}


def _unsupported(exc: BaseException) -> bool:
    return isinstance(exc, NotImplementedError) or (
        isinstance(exc, bexc.ClientError) and aws.error_code(exc) in _UNSUPPORTED)


def one_shot_sqs(clients):
    """An SQS client that does not retry: an endpoint without the API answers 500, which botocore
    would otherwise retry for seconds before we could fall back."""
    return clients.session.client("sqs", endpoint_url=clients.target.resolved_endpoint,
                                  config=aws.client_config(max_attempts=1))


def start(sqs, *, source_arn: str, destination_arn: str) -> str:
    """Start a move task; its handle. ``MoveTaskUnsupported`` where the endpoint lacks the API."""
    try:
        return sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=destination_arn)["TaskHandle"]
    except (NotImplementedError, bexc.ClientError) as exc:
        if _unsupported(exc):
            raise MoveTaskUnsupported() from None
        raise


def recent(sqs, *, source_arn: str) -> list[MoveTask]:
    """The most recent move tasks of ``source_arn``, newest first."""
    try:
        entries = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10).get("Results", [])
    except (NotImplementedError, bexc.ClientError) as exc:
        if _unsupported(exc):
            raise MoveTaskUnsupported() from None
        raise
    tasks = [MoveTask.from_entry(e) for e in entries]
    return sorted(tasks, key=lambda t: t.started_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)


def current(sqs, *, source_arn: str, handle: str) -> MoveTask | None:
    """The task started with ``handle``: listed with its handle while it runs, afterwards (without
    one) as the newest task of the source queue, since only one can be active at a time."""
    tasks = recent(sqs, source_arn=source_arn)
    mine = [t for t in tasks if t.handle == handle]
    if mine:
        return mine[0]
    ended = [t for t in tasks if t.handle is None and t.status != RUNNING]
    return ended[0] if ended else None


def follow(sqs, *, source_arn: str, handle: str, interval_s: float = 2.0, timeout_s: float | None = None,
           on_update: Callable[[MoveTask], None] = lambda task: None, sleep=time.sleep,
           clock=time.monotonic) -> MoveTask:
    """Poll until the task has ended, or ``timeout_s`` has passed (then it is still RUNNING or CANCELLING)."""
    return poll_until(lambda: current(sqs, source_arn=source_arn, handle=handle) or MoveTask(status=RUNNING,
                                                                                            handle=handle),
                      lambda task: task.status in ENDED, interval_s=interval_s, timeout_s=timeout_s,
                      on_update=on_update, sleep=sleep, clock=clock)
