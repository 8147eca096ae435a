"""SendMessageBatch-sized batches formed by the threads that finish uploads, with no thread of
their own: an upload adds its job under a lock, and whoever fills a batch hands it on whole.
(A batcher thread would cost two thread hand-offs per file; this costs one per ten.)"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

from ..batching import MAX_ENTRIES

T = TypeVar("T")


class BatchCollector(Generic[T]):
    """Hands ``flush`` batches of at most ``max_entries`` items and ``max_bytes`` (by
    ``size_of``), in the order items were added. A partial batch goes out when the caller says
    nothing more is coming for now (``add(..., last=True)``), when it is older than the caller's
    linger (``take_older``), or at ``flush_all``. ``flush`` runs in the calling thread, outside
    the lock, one batch at a time per caller."""

    def __init__(self, flush: Callable[[list[T]], None], *, max_bytes: int, size_of: Callable[[T], int],
                 max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic):
        self.flush = flush
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: list[T] = []
        self._bytes = 0
        self._first_at = 0.0

    def add(self, item: T, *, last: bool = False) -> None:
        size = self.size_of(item)
        ready = []
        with self._lock:
            if self._pending and self._bytes + size > self.max_bytes:
                ready.append(self._take())
            if not self._pending:
                self._first_at = self.clock()
            self._pending.append(item)
            self._bytes += size
            if len(self._pending) >= self.max_entries or last:
                ready.append(self._take())
        for batch in ready:
            self.flush(batch)

    def take_older(self, age_s: float) -> list[T]:
        """The partial batch if its first item has waited ``age_s`` (the caller sends it), else []."""
        with self._lock:
            return self._take() if self._pending and self.clock() - self._first_at >= age_s else []

    def flush_all(self) -> None:
        with self._lock:
            batch = self._take() if self._pending else None
        if batch:
            self.flush(batch)

    def _take(self) -> list[T]:
        batch, self._pending, self._bytes = self._pending, [], 0
        return batch
