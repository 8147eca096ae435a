"""Batches of SQS entries: one linger batcher and one "batch call with partial failures" helper.

SQS's ``*Batch`` calls take up to 10 entries and answer per entry: a call can succeed for some
entries and fail for others, so every caller must sort ``Successful`` from ``Failed`` and retry only
what failed for a reason of the server's (``SenderFault`` false: throttling, an internal error).
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessageBatch.html

Both tools use these two pieces: the sender (SendMessageBatch) and the worker's deleter
(DeleteMessageBatch) and heartbeat (ChangeMessageVisibilityBatch).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

from . import aws

#: The most entries any SQS batch call accepts.
MAX_ENTRIES = 10

T = TypeVar("T")


class Batcher(Generic[T]):
    """Groups items into batches for ``flush``, from one thread (``run``), so only it ever sends.

    A batch goes out when it is full (``max_entries``, or ``max_bytes`` of ``size_of``), when no more
    items are coming soon (``more_coming()``, asked every ``poll_s`` while a batch is partial), or
    once its first item has waited ``max_linger_s``. Waiting for more keeps batches full (≈1 request
    per 10 items) without delaying the last ones: the caller knows whether more are on the way.
    ``put`` wakes the flushing thread only for a batch's first item and when the batch is full,
    not for every item (a wake-up is a context switch).
    """

    def __init__(self, flush: Callable[[list[T]], None], *, max_linger_s: float,
                 more_coming: Callable[[], bool] = lambda: False, max_entries: int = MAX_ENTRIES,
                 max_bytes: int | None = None, size_of: Callable[[T], int] = lambda _: 0,
                 clock: Callable[[], float] = time.monotonic, poll_s: float = 0.02):
        self.flush = flush
        self.max_linger_s = max_linger_s
        self.more_coming = more_coming
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.clock = clock
        self.poll_s = poll_s
        self._changed = threading.Condition()
        self._items: list[T] = []
        self._first_at = 0.0  # when the oldest waiting item came
        self._closed = False

    def put(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            if len(self._items) == 1:
                self._first_at = self.clock()
                self._changed.notify()
            elif self._full():
                self._changed.notify()

    def close(self) -> None:
        """``run`` flushes what it holds and returns."""
        with self._changed:
            self._closed = True
            self._changed.notify()

    def run(self) -> None:
        while True:
            with self._changed:
                while not self._items and not self._closed:
                    self._changed.wait()
                if not self._items:
                    return
                if not (self._closed or self._full()):
                    self._changed.wait(self.poll_s)  # more may come; woken early once the batch is full
                due = self._closed or self._full() or self.clock() - self._first_at >= self.max_linger_s
            if due or not self.more_coming():
                with self._changed:
                    batch = self._take()
                self.flush(batch)

    def _full(self) -> bool:
        if len(self._items) >= self.max_entries:
            return True
        return self.max_bytes is not None and sum(self.size_of(i) for i in self._items) > self.max_bytes

    def _take(self) -> list[T]:
        """The longest head of the waiting items that fits one request; the rest waits its turn."""
        batch: list[T] = []
        size = 0
        for item in self._items[:self.max_entries]:
            if batch and self.max_bytes is not None and size + self.size_of(item) > self.max_bytes:
                break
            batch.append(item)
            size += self.size_of(item)
        del self._items[:len(batch)]
        self._first_at = self.clock()
        return batch


@dataclass
class BatchOutcome(Generic[T]):
    """How each item of one batch call ended."""

    succeeded: list[T] = field(default_factory=list)
    #: Refused for the sender's fault (a bad receipt handle, a body too large): retrying cannot help.
    refused: list[tuple[T, str]] = field(default_factory=list)
    #: Still failing for the server's reasons after every attempt.
    gave_up: list[tuple[T, str]] = field(default_factory=list)


def call_batch(call: Callable[[list[dict]], dict], items: Sequence[T], entry: Callable[[T], dict], *,
               attempts: int = 5, backoff_s: float = 0.2, max_backoff_s: float = 5.0,
               sleep: Callable[[float], None] = time.sleep,
               on_success: Callable[[list[T]], None] = lambda _: None) -> BatchOutcome[T]:
    """Call an SQS ``*Batch`` API for ``items`` (``entry(item)`` is its entry without ``Id``).

    Entries that failed without sender fault, and whole calls that raised a retryable error, are
    retried up to ``attempts`` times with exponential backoff (botocore has already retried the
    HTTP request itself; this covers per-entry failures, which botocore cannot see). A fatal error
    (queue gone, access denied: ``aws.is_fatal``) is raised at once. ``on_success`` sees the items
    each response accepted, as soon as it arrives.
    """
    outcome: BatchOutcome[T] = BatchOutcome()
    todo = {str(i): item for i, item in enumerate(items)}
    reasons: dict[str, str] = {}
    for attempt in range(attempts):
        try:
            response = call([{"Id": i, **entry(item)} for i, item in todo.items()])
        except Exception as exc:  # noqa: BLE001 - classified here
            if aws.is_fatal(exc):
                raise
            reasons = {i: aws.describe(exc) for i in todo}
        else:
            done = [todo.pop(ok["Id"]) for ok in response.get("Successful", []) if ok["Id"] in todo]
            outcome.succeeded += done
            if done:
                on_success(done)
            reasons = {}
            for failed in response.get("Failed", []):
                if failed["Id"] not in todo:
                    continue
                why = failed.get("Message") or failed.get("Code") or "failed"
                if failed.get("SenderFault"):
                    outcome.refused.append((todo.pop(failed["Id"]), why))
                else:
                    reasons[failed["Id"]] = why
        if not todo:
            return outcome
        if attempt + 1 < attempts:
            sleep(min(max_backoff_s, backoff_s * 2 ** attempt))
    outcome.gave_up = [(item, reasons.get(i, "no answer")) for i, item in todo.items()]
    return outcome
