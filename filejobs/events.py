"""The one event log of both tools: ``log(event, **fields)``, one line per event on stderr.

Formats: ``text`` (timestamped ``event key=value`` lines, for workers and their journald/CloudWatch
logs), ``json`` (one object per line, for CloudWatch Logs Insights) and ``plain`` (``event: key=value``,
no timestamp, for a person at a terminal running sendjobs). Values that could break a line or be
misread (names, spaces, control characters) are quoted with ``message.printable``.

Metrics: with ``metrics=True``, ``metric()`` also prints CloudWatch embedded-metric-format lines on
stdout, which the CloudWatch agent (or Lambda/ECS log drivers) turn into metrics with no
PutMetricData call:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

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
                 wall_clock: Callable[[], float] = time.time):
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
        stamp = datetime.fromtimestamp(self.wall_clock(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return " ".join([stamp, event, *parts])

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

    def _write(self, stream, line: str) -> None:
        with self._lock:
            stream.write(line + "\n")
            stream.flush()


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
