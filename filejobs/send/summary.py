"""What a run did: the summary it returns, and the tally every thread of the run updates."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..events import EventLog

#: The summary names at most this many failed files and warnings (--json); the counts stay exact.
MAX_LISTED = 1000


@dataclass
class Failure:
    rel: str
    reason: str


@dataclass
class SendSummary:
    batch_id: str | None = None
    files_seen: int = 0
    files_sent: int = 0
    files_skipped: int = 0
    files_uploaded: int = 0
    files_failed: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    manifest_key: str | None = None
    #: The newest batch this directory → queue pairing wrote a manifest for (what --wait follows).
    last_batch_id: str | None = None
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.files_failed and not self.interrupted

    def as_dict(self) -> dict:
        secs = max(self.seconds, 1e-9)
        return {
            "batch_id": self.batch_id, "files_seen": self.files_seen, "files_sent": self.files_sent,
            "files_skipped": self.files_skipped, "files_uploaded": self.files_uploaded,
            "files_failed": self.files_failed, "bytes_uploaded": self.bytes_uploaded,
            "seconds": round(self.seconds, 3), "files_per_s": round(self.files_sent / secs, 1),
            "mib_per_s": round(self.bytes_uploaded / secs / 2**20, 2), "interrupted": self.interrupted,
            "manifest_key": self.manifest_key, "last_batch_id": self.last_batch_id,
            "failures": [{"file": f.rel, "reason": f.reason} for f in self.failures],
        }


class Tally:
    """Counts into a ``SendSummary`` from any thread, and tells the event log and the progress line."""

    def __init__(self, summary: SendSummary, *, log: EventLog, progress=None):
        self.summary = summary
        self.log = log
        self.progress = progress
        self._lock = threading.Lock()

    def seen(self, *, skipped: bool) -> None:
        with self._lock:
            self.summary.files_seen += 1
            self.summary.files_skipped += skipped
        if skipped:
            self._progress(files=1)

    def uploaded(self, nbytes: int) -> None:
        with self._lock:
            self.summary.files_uploaded += 1
            self.summary.bytes_uploaded += nbytes
        self._progress(nbytes=nbytes)

    def sent(self, count: int) -> None:
        with self._lock:
            self.summary.files_sent += count
        self._progress(files=count)

    def fail(self, rel: str, reason: str) -> None:
        with self._lock:
            self.summary.files_failed += 1
            if len(self.summary.failures) < MAX_LISTED:
                self.summary.failures.append(Failure(rel, reason))
        self.log("failed", file=rel, reason=reason)

    def warn(self, text: str) -> None:
        with self._lock:
            if len(self.summary.warnings) < MAX_LISTED:
                self.summary.warnings.append(text)
        self.log("warning", reason=text)

    def _progress(self, **counts) -> None:
        if self.progress:
            self.progress.add(**counts)
