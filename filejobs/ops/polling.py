"""Poll until something has ended or a timeout has passed (a wait for a batch, a move task)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll_until(fetch: Callable[[], T], ended: Callable[[T], bool], *, interval_s: float, timeout_s: float | None,
               on_update: Callable[[T], None] = lambda value: None, sleep=time.sleep, clock=time.monotonic) -> T:
    """``fetch`` every ``interval_s`` until ``ended`` says so or ``timeout_s`` has passed; the last
    fetch is at the deadline (never a sleep past it). Returns the last value fetched."""
    started = clock()
    while True:
        value = fetch()
        on_update(value)
        if ended(value):
            return value
        left = None if timeout_s is None else timeout_s - (clock() - started)
        if left is not None and left <= 0:
            return value
        sleep(interval_s if left is None else min(interval_s, left))
