"""The heartbeat: extends the visibility of long jobs so that no second worker gets their message.

Every ``every_s`` a running job's message gets the full visibility timeout again, in
ChangeMessageVisibilityBatch calls of up to 10, but never past SQS's 12 hours from its receipt:
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from .. import aws
from ..batching import MAX_ENTRIES, call_batch
from ..events import EventLog
from .config import MAX_VISIBILITY_S, Stats
from .inflight import Inflight, Lease


def extension_s(lease: Lease, now: float, visibility_timeout_s: int) -> int:
    """The visibility to give ``lease`` now: the full timeout, or what is left of SQS's 12-hour cap
    (≤ 0: it cannot be extended any more)."""
    return int(min(visibility_timeout_s, MAX_VISIBILITY_S - (now - lease.received_at)))


class Heartbeat:
    def __init__(self, sqs, queue_url: str, inflight: Inflight, *, every_s: float, visibility_timeout_s: int,
                 log: EventLog, stats: Stats, sleep: Callable[[float], None] = time.sleep):
        self.sqs = sqs
        self.queue_url = queue_url
        self.inflight = inflight
        self.every_s = every_s
        self.visibility_timeout_s = visibility_timeout_s
        self.log = log
        self.stats = stats
        self.sleep = sleep

    def run(self, stop: threading.Event, clock: Callable[[], float]) -> None:
        tick_s = min(1.0, self.every_s / 4)
        while not stop.wait(tick_s):
            self.beat(clock())

    def beat(self, now: float) -> None:
        """Extend every lease that is due at ``now``."""
        due = self.inflight.due(now, self.every_s)
        for i in range(0, len(due), MAX_ENTRIES):
            chunk = due[i:i + MAX_ENTRIES]
            extended: list[Lease] = []
            try:
                extended = self._extend(chunk, now)
            finally:
                self.inflight.beaten(chunk, extended=extended, now=now)

    def _extend(self, leases: list[Lease], now: float) -> list[Lease]:
        plan = [(lease, extension_s(lease, now, self.visibility_timeout_s)) for lease in leases]
        plan = [(lease, seconds) for lease, seconds in plan if seconds > 0]
        if not plan:
            return []
        try:
            # One retry of what failed on the server's side; the next tick comes well before the deadline.
            result = call_batch(
                lambda entries: self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries),
                plan, lambda item: {"ReceiptHandle": item[0].receipt, "VisibilityTimeout": item[1]},
                attempts=2, sleep=self.sleep)
        except Exception as exc:  # noqa: BLE001 - fatal errors stop the poller; here, try next tick
            self.log("warning", during="heartbeat", reason=aws.describe(exc))
            return []
        for (lease, _), why in result.refused:
            self.log("warning", key=lease.key, reason=f"heartbeat refused (message no longer ours): {why}")
        for _, why in result.gave_up[:1]:
            self.log("warning", during="heartbeat", reason=why)
        for lease, seconds in result.succeeded:
            self.stats.add("heartbeats")
            self.log("heartbeat", key=lease.key, attempt=lease.attempt, running_s=round(now - lease.received_at, 1),
                     visibility_s=seconds)
        return [lease for lease, _ in result.succeeded]
