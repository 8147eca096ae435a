"""One line per event on stderr: ``text`` for people, ``json`` for CloudWatch Logs Insights."""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone

from .message import printable


class EventLog:
    def __init__(self, *, fmt: str = "text", stream=None, quiet_events: frozenset = frozenset()):
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.quiet_events = quiet_events
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields) -> None:
        if event in self.quiet_events:
            return
        now = datetime.now(timezone.utc)
        if self.fmt == "json":
            record = {"ts": now.isoformat(timespec="milliseconds"), "event": event}
            record.update({k: v for k, v in fields.items() if v is not None})
            line = json.dumps(record, ensure_ascii=False, default=str)
        else:
            parts = [now.strftime("%Y-%m-%dT%H:%M:%SZ"), event]
            for k, v in fields.items():
                if v is None:
                    continue
                if isinstance(v, float):
                    v = f"{v:.3f}"
                elif isinstance(v, str) and (k in ("key", "output", "file") or not v.isprintable() or " " in v):
                    v = printable(v)
                parts.append(f"{k}={v}")
            line = " ".join(parts)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def raw(self, line: str) -> None:
        """A pre-formatted line on stdout (CloudWatch embedded metric format)."""
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
