"""Plan one file: skip it, send its job only, or upload it and send (pure)."""

from __future__ import annotations

from .walk import LocalFile



SKIP, SEND_ONLY, UPLOAD = "skip", "send-only", "upload"


def plan(file: LocalFile, previous, *, force: bool) -> str:
    """What to do with ``file`` given its journal row ``(size, mtime_ns, etag, state, batch)``."""
    if force or previous is None:
        return UPLOAD
    size, mtime_ns, _etag, state, _batch = previous
    if size != file.size or mtime_ns != file.mtime_ns:
        return UPLOAD
    return SKIP if state == "sent" else SEND_ONLY
