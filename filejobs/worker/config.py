"""The worker's settings, counters and its one fatal error."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

from ..message import Allowed
from ..transfer import TransferConfig

#: SQS caps a message's total invisibility at 12 hours from its receipt.
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html
MAX_VISIBILITY_S = 12 * 3600
#: The longest long poll SQS allows.
MAX_WAIT_S = 20


@dataclass(frozen=True)
class WorkerConfig:
    work_dir: str
    extension: str
    queue: str
    allowed: Allowed = Allowed()
    concurrency: int = 1
    job_timeout_s: float | None = None
    visibility_timeout_s: int | None = None  # None: the queue's
    heartbeat_s: float | None = None  # None: a third of the visibility timeout
    grace_s: float = 60.0
    exit_when_idle_s: float | None = None
    max_jobs: int | None = None
    wait_time_s: int = MAX_WAIT_S
    retry_base_s: float = 10.0
    retry_max_s: float = 900.0
    errors_prefix: str = "errors/"
    batch_linger_s: float = 0.05
    #: How often the instance metadata is read for notices; AWS suggests every 5 seconds.
    notice_poll_s: float = 5.0
    transfer: TransferConfig = field(default_factory=TransferConfig)


@dataclass
class Stats:
    """What a run did. Job threads, the heartbeat and the poller all count, so every change goes
    through ``add`` (a read-modify-write from two threads would lose one of them)."""

    received: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    rejected: int = 0
    released: int = 0
    heartbeats: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


@dataclass(frozen=True)
class QueueInfo:
    """What ``Worker.start`` learned about the queue, with the settings derived from it."""

    url: str
    visibility_timeout_s: int
    heartbeat_s: float
    dlq_url: str | None = None
    max_receive_count: int | None = None


class FatalWorkerError(Exception):
    """The worker cannot go on (queue deleted, access denied): one line, exit 1."""


def check_heartbeat(heartbeat_s: float, visibility_timeout_s: int) -> None:
    """A heartbeat must come well before the visibility timeout runs out (a request can take
    seconds under throttling): at most half of it."""
    if heartbeat_s <= 0 or heartbeat_s * 2 > visibility_timeout_s:
        raise FatalWorkerError(
            f"heartbeat interval {heartbeat_s:g}s is not safely below the visibility timeout "
            f"{visibility_timeout_s}s (it must be at most half of it)")
