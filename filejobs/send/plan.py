"""Plan each file: skip it, send its job only, or upload it and send (pure: plan → act)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from ..records import SENT, JournalRow
from .walk import LocalFile

SKIP, SEND_ONLY, UPLOAD = "skip", "send-only", "upload"


@dataclass(frozen=True)
class Step:
    """What the run does with one file."""

    file: LocalFile
    action: str
    #: SEND_ONLY: the ETag S3 gave an earlier run's upload (reused only if S3 still holds it).
    etag: str | None = None


def plan(file: LocalFile, previous: JournalRow | None, *, force: bool) -> str:
    """What to do with ``file`` given what the journal says an earlier run did with it."""
    if force or previous is None:
        return UPLOAD
    if previous.size != file.size or previous.mtime_ns != file.mtime_ns:
        return UPLOAD
    return SKIP if previous.state == SENT else SEND_ONLY


def plan_files(files: Iterable[LocalFile], lookup: Callable[[str], JournalRow | None], *,
               force: bool) -> Iterator[Step]:
    """One step per file, lazily: the dry run prints them, the real run acts on them."""
    for file in files:
        previous = None if force else lookup(file.rel)
        action = plan(file, previous, force=force)
        yield Step(file, action, previous.etag if action == SEND_ONLY and previous else None)
