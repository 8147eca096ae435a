"""The wire formats besides the job message: the batch manifest, the failure record, the journal row.

Pure module (no boto3, no click, no I/O), like ``message.py``. Each format is versioned (``"v"``)
and decoded strictly, so the writer (sendjobs, getjobs) and the readers (``jobctl status``,
``jobctl redrive``) cannot drift apart. Records written before versioning carry no ``"v"``; they
have the version-1 fields and are read as version 1.

Manifest (``batches/<batch id>/manifest.jsonl``, written by sendjobs once a run ends)::

    {"v": 1, "batch_id": "...", "bucket": "b", "input_prefix": "input/", "output_prefix": "output/",
     "queue_url": "https://...", "files": 2, "bytes": 10, "complete": true, "written_at": "..."}
    {"key": "input/a.txt", "size": 4, "etag": "\\"...\\""}
    {"key": "input/b/c.txt", "size": 6, "etag": "\\"...\\""}

Failure record (``errors/<batch id>/<path below the input prefix>.json``, written by a worker when a
job fails for the last time)::

    {"v": 1, "input_key": "input/a.txt", "batch_id": "...", "attempts": 3, "exit_code": 2,
     "reason": "exit code 2", "stderr_tail": "...", "message_id": "...", "at": "2026-12-04T10:00:00Z"}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

VERSION = 1


class RecordError(ValueError):
    """A record that cannot be read; ``str()`` is one line saying why."""


def _load(text: str | bytes, what: str) -> dict:
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise RecordError(f"{what} is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{what} is a JSON {type(data).__name__}, expected an object")
    version = data.pop("v", VERSION)
    if version != VERSION:
        raise RecordError(f"{what} has version {version!r}; this filejobs reads version {VERSION}")
    return data


def _take(cls, data: dict, what: str, required: tuple[str, ...]):
    missing = [name for name in required if name not in data]
    if missing:
        raise RecordError(f"{what} lacks {', '.join(missing)}")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def _dump(record) -> str:
    return json.dumps({"v": VERSION, **asdict(record)}, ensure_ascii=True, separators=(",", ":"))


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ManifestHeader:
    batch_id: str
    bucket: str
    input_prefix: str
    output_prefix: str
    queue_url: str | None = None
    files: int = 0
    bytes: int = 0
    #: False when the run that wrote it was interrupted or had failures (a rerun rewrites it).
    complete: bool = True
    written_at: str | None = None

    def encode(self) -> str:
        return _dump(self)

    @classmethod
    def decode(cls, line: str | bytes) -> ManifestHeader:
        return _take(cls, _load(line, "manifest header"), "manifest header",
                     ("batch_id", "bucket", "input_prefix", "output_prefix"))


@dataclass(frozen=True)
class ManifestEntry:
    key: str
    size: int
    etag: str | None = None

    def encode(self) -> str:
        # Entries stay small and unversioned: the header's version covers the whole file.
        return json.dumps(asdict(self), ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def decode(cls, line: str | bytes) -> ManifestEntry:
        return _take(cls, _load(line, "manifest line"), "manifest line", ("key", "size"))


# --------------------------------------------------------------------------- failure record


@dataclass(frozen=True)
class ErrorRecord:
    input_key: str
    batch_id: str | None
    attempts: int
    reason: str
    exit_code: int | None = None
    stderr_tail: str = ""
    message_id: str | None = None
    #: UTC, ISO 8601 with a Z.
    at: str | None = None

    def encode(self) -> str:
        return json.dumps({"v": VERSION, **asdict(self)}, ensure_ascii=False)

    @classmethod
    def decode(cls, body: str | bytes) -> ErrorRecord:
        return _take(cls, _load(body, "failure record"), "failure record", ("input_key", "attempts", "reason"))


# --------------------------------------------------------------------------- journal row


#: Journal states: uploaded (S3 answered the PUT), sent (SQS accepted the message).
UPLOADED, SENT = "uploaded", "sent"


@dataclass(frozen=True)
class JournalRow:
    """One file of a directory → (bucket, queue) pairing, as the resume journal keeps it."""

    rel: str
    size: int
    mtime_ns: int
    etag: str | None
    state: str
    batch_id: str | None

    def as_tuple(self) -> tuple:
        return (self.rel, self.size, self.mtime_ns, self.etag, self.state, self.batch_id)

    @classmethod
    def from_tuple(cls, row: tuple) -> JournalRow:
        rel, size, mtime_ns, etag, state, batch_id = row
        if state not in (UPLOADED, SENT):
            raise RecordError(f"journal row for {rel!r} has unknown state {state!r}")
        return cls(rel=rel, size=size, mtime_ns=mtime_ns, etag=etag, state=state, batch_id=batch_id)
