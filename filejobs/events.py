"""The one event log of both tools: ``log(event, **fields)``, one line per event on stderr.

Formats: ``text`` (timestamped ``event key=value`` lines, for workers and their journald/CloudWatch
logs), ``json`` (one object per line, for CloudWatch Logs Insights) and ``plain`` (``event: key=value``,
no timestamp, for a person at a terminal running sendjobs). Values that could break a line or be
misread (names, spaces, control characters) are quoted with ``message.printable``.

Buffering: with ``flush_s``, lines are not written one by one (a ``write`` + ``flush`` per line is
a system call that, with dozens of busy threads, hands the GIL over each time: the worker's lines
cost more than its temp folders did); a flushing thread writes whatever has gathered at most
``flush_s`` after the first of it, in the order logged, and ``close()`` (also run at exit) writes the
rest. Timestamps are those of the events, not of the writes.

Metrics: with ``metrics=True``, ``metric()`` also prints CloudWatch embedded-metric-format lines on
stdout, which the CloudWatch agent (or Lambda/ECS log drivers) turn into metrics with no
PutMetricData call:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

from .message import printable

FORMATS = ("text", "json", "plain")
METRIC_NAMESPACE = "filejobs"


class EventLog:
    def __init__(self, *, fmt: str = "text", stream=None, only: Iterable[str] | None = None,
                 metrics: bool = False, metrics_stream=None, dimensions: dict[str, str] | None = None,
                 wall_clock: Callable[[], float] = time.time, flush_s: float | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}")
        self.fmt = fmt
        self.stream = stream or sys.stderr
        #: Show only these events (``sendjobs --quiet`` shows failures only); None: all.
        self.only = None if only is None else frozenset(only)
        self.metrics = metrics
        self.metrics_stream = metrics_stream or sys.stdout
        self.dimensions = dict(dimensions or {})
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._buffer = None if flush_s is None else LineBuffer(delay_s=flush_s)
        self._stamp = (-1, "")  # (second, its text): one strftime per second, not per line

    def __call__(self, event: str, **fields) -> None:
        if self.only is not None and event not in self.only:
            return
        self._write(self.stream, self.render(event, fields))

    def render(self, event: str, fields: dict) -> str:
        if self.fmt == "json":
            now = datetime.fromtimestamp(self.wall_clock(), timezone.utc)
            record = {"ts": now.isoformat(timespec="milliseconds"), "event": event}
            record.update({k: v for k, v in fields.items() if v is not None})
            return json.dumps(record, ensure_ascii=False, default=str)
        parts = [f"{k}={_text_value(k, v)}" for k, v in fields.items() if v is not None]
        if self.fmt == "plain":
            return f"{event}: " + " ".join(parts) if parts else event
        return " ".join([self._text_stamp(), event, *parts])

    def _text_stamp(self) -> str:
        second = int(self.wall_clock())
        cached, text = self._stamp
        if cached != second:
            text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._stamp = (second, text)
        return text

    def metric(self, name: str, *, duration_s: float | None = None, **dimensions: str) -> None:
        """Count one ``name`` (and a ``JobDuration`` sample) under the log's dimensions."""
        if not self.metrics:
            return
        dims = {**self.dimensions, **dimensions}
        metrics = [{"Name": name, "Unit": "Count"}]
        record = {name: 1}
        if duration_s is not None:
            metrics.append({"Name": "JobDuration", "Unit": "Seconds"})
            record["JobDuration"] = round(duration_s, 3)
        document = {"_aws": {"Timestamp": int(self.wall_clock() * 1000), "CloudWatchMetrics": [{
            "Namespace": METRIC_NAMESPACE, "Dimensions": [sorted(dims)], "Metrics": metrics}]}, **dims, **record}
        self._write(self.metrics_stream, json.dumps(document))

    def close(self) -> None:
        """Write what is buffered; later lines are written at once."""
        if self._buffer:
            self._buffer.close()

    def _write(self, stream, line: str) -> None:
        if self._buffer:
            self._buffer.add(stream, line)
            return
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


class LineBuffer:
    """Lines for one or more streams, written by one thread at most ``delay_s`` after the first
    of them came; each stream gets one ``write`` per flush."""

    def __init__(self, *, delay_s: float):
        self.delay_s = delay_s
        self._changed = threading.Condition()
        self._pending: list[tuple[object, str]] = []
        self._writing = threading.Lock()  # flushes (thread, close) one at a time, in order
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, stream, line: str) -> None:
        with self._changed:
            self._pending.append((stream, line))
            if not self._closed.is_set():
                if len(self._pending) == 1:  # the writer waits for a first line, not for each
                    self._start()
                    self._changed.notify()
                return
        self.flush()  # closed: at once

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
            self._thread.start()
            atexit.register(self.close)

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._changed:
                while not self._pending and not self._closed.is_set():
                    self._changed.wait()
            self._closed.wait(self.delay_s)  # let more lines gather; close() cuts it short
            self.flush()

    def flush(self) -> None:
        with self._writing:
            with self._changed:
                pending, self._pending = self._pending, []
            for stream, text in _by_stream(pending):
                try:
                    stream.write(text)
                    stream.flush()
                except (OSError, ValueError):  # stderr gone (a closed pipe): nowhere to say it
                    pass

    def close(self) -> None:
        with self._changed:
            self._closed.set()
            self._changed.notify()
        self.flush()


def _by_stream(pending: list[tuple[object, str]]):
    """(stream, text) of each run of consecutive lines for one stream, in order."""
    start = 0
    for i in range(1, len(pending) + 1):
        if i == len(pending) or pending[i][0] is not pending[start][0]:
            yield pending[start][0], "".join(line + "\n" for _, line in pending[start:i])
            start = i


def _text_value(key: str, value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, str) and (key in ("key", "output", "file") or not value.isprintable() or " " in value
                                   or value == ""):
        return printable(value)
    return str(value)


class NullLog(EventLog):
    """Drops every event and metric: the libraries' default when no log is given."""

    def __call__(self, event: str, **fields) -> None:
        pass

    def metric(self, name: str, *, duration_s: float | None = None, **dimensions: str) -> None:
        pass
