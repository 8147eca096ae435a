"""A one-line progress display on stderr (TTY only) and human-readable units."""

from __future__ import annotations

import sys
import threading
import time


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def human_seconds(s: float) -> str:
    s = int(max(0, s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Redraws at most ``hz`` times a second from counters other threads update.

    ``total`` may arrive late (from a counting pass); until then no percentage or ETA is shown.
    """

    def __init__(self, *, label: str, stream=None, enabled: bool | None = None, hz: float = 4):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.done = 0
        self.bytes = 0
        self.total: int | None = None
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(1 / hz,), daemon=True)
        self._width = 0

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, files: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.done += files
            self.bytes += nbytes

    def line(self) -> str:
        elapsed = max(1e-6, time.monotonic() - self._start)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            pct = 100 * self.done / self.total
            parts.append(f"{self.done}/{self.total} ({pct:.0f}%)")
        else:
            parts.append(f"{self.done}")
        parts.append(human_bytes(self.bytes))
        parts.append(f"{rate:.0f} files/s")
        parts.append(f"{human_bytes(self.bytes / elapsed)}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {human_seconds((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def _draw(self):
        text = self.line()
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def _run(self, interval):
        while not self._stop.wait(interval):
            self._draw()

    def close(self):
        if self.enabled and not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        self._stop.set()
