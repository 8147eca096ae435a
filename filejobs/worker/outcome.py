"""How one message's job ended: what ``handle`` returns and ``settle`` acts on."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Kind(enum.Enum):
    #: The output is in S3, written by this run: delete the message.
    DONE = "done"
    #: An output for this very input version was already there: delete the message.
    DUPLICATE = "duplicate"
    #: The input changed after the job was sent; the newer upload has a job of its own: delete.
    STALE = "stale"
    #: The message asks for nothing (an S3 test event, a removal, a folder marker): delete.
    IGNORED = "ignored"
    #: The job failed and may succeed later: release with backoff, or dead-letter on the last try.
    FAILED = "failed"
    #: The message can never succeed (malformed, forged): to the dead-letter queue at once.
    REJECTED = "rejected"
    #: Stopped by shutdown: release at once for another worker.
    CANCELLED = "cancelled"


#: The ends after which the message is deleted.
DELETED = frozenset({Kind.DONE, Kind.DUPLICATE, Kind.STALE, Kind.IGNORED})


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    reason: str = ""
    output: str | None = None
    exit_code: int | None = None
    stderr_tail: str = ""
    #: From the job's start (after decoding) to its end; None when it never started.
    duration_s: float | None = None

    @classmethod
    def done(cls, output: str) -> Outcome:
        return cls(Kind.DONE, output=output)

    @classmethod
    def duplicate(cls, reason: str, output: str | None = None) -> Outcome:
        return cls(Kind.DUPLICATE, reason=reason, output=output)

    @classmethod
    def stale(cls, reason: str = "input changed since the job was sent") -> Outcome:
        return cls(Kind.STALE, reason=reason)

    @classmethod
    def ignored(cls, reason: str) -> Outcome:
        return cls(Kind.IGNORED, reason=reason)

    @classmethod
    def failed(cls, reason: str, *, exit_code: int | None = None, stderr_tail: str = "") -> Outcome:
        return cls(Kind.FAILED, reason=reason, exit_code=exit_code, stderr_tail=stderr_tail)

    @classmethod
    def rejected(cls, reason: str) -> Outcome:
        return cls(Kind.REJECTED, reason=reason)

    @classmethod
    def cancelled(cls, reason: str = "shutdown") -> Outcome:
        return cls(Kind.CANCELLED, reason=reason)

    def timed(self, duration_s: float) -> Outcome:
        return replace(self, duration_s=duration_s)
