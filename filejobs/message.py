"""The job message: one versioned schema shared by sendjobs and getjobs.

Pure module: no boto3, no click, no I/O. It owns the wire format (encode/decode), the rules that
make a message trustworthy (``authorize``) and every S3 key or local file name derived from a job.

Wire format, version 1 (a JSON object, ASCII only so any key survives SQS's character rules)::

    {"v": 1, "bucket": "b", "input_key": "input/a/b.txt", "input_prefix": "input/",
     "output_prefix": "output/", "batch_id": "20261128T020501Z-3f9a2c", "size": 4096,
     "etag": "\"9e107d9d372bb6826bd81d3542a419d6\"", "version_id": null}

The original sample's body ``["process", bucket, input_prefix, output_prefix, file_name]`` is
decoded too (``Job.legacy``), so a queue filled by the old tool drains.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, asdict
from datetime import datetime, timezone

SCHEMA_VERSION = 1
#: S3 object keys are at most 1,024 bytes of UTF-8.
#: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
MAX_KEY_BYTES = 1024
#: Most file systems cap one path component at 255 bytes; keep room for a suffix.
MAX_LOCAL_NAME_BYTES = 200

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class MessageError(ValueError):
    """A message that must not be processed; ``str()`` is one line saying why."""


@dataclass(frozen=True)
class Job:
    bucket: str
    input_key: str
    input_prefix: str
    output_prefix: str
    batch_id: str | None = None
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    legacy: bool = False

    @property
    def relative_name(self) -> str:
        """The input's path relative to its input prefix (``a/b.txt``)."""
        return self.input_key[len(self.input_prefix):]

    def output_key(self, extension: str) -> str:
        """Output prefix + relative path + extension, as the original tool named outputs."""
        return self.output_prefix + self.relative_name + extension


# --------------------------------------------------------------------------- encode / decode

_FIELDS = {
    "bucket": str,
    "input_key": str,
    "input_prefix": str,
    "output_prefix": str,
}
_OPTIONAL = {
    "batch_id": str,
    "size": int,
    "etag": str,
    "version_id": str,
}


def encode(job: Job) -> str:
    """The message body for ``job`` (compact, ASCII-only JSON)."""
    check_job(job)
    data = {"v": SCHEMA_VERSION}
    data.update({k: v for k, v in asdict(job).items() if k != "legacy"})
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def decode(body: str) -> Job:
    """Parse and validate a message body; raise ``MessageError`` with a one-line reason."""
    return from_data(loads(body))


def loads(body: str):
    """The JSON value of a message body; ``MessageError`` if it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, TypeError) as exc:
        raise MessageError(f"body is not JSON ({exc.__class__.__name__})") from None


def from_data(data) -> Job:
    """The job a decoded JSON body describes (version 1 or the legacy list), validated."""
    if isinstance(data, list):
        return _decode_legacy(data)
    if not isinstance(data, dict):
        raise MessageError(f"body is a JSON {type(data).__name__}, expected an object")
    version = data.get("v")
    if version is None:
        raise MessageError("missing field 'v' (schema version)")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise MessageError(f"unsupported schema version {version!r} (this worker reads {SCHEMA_VERSION})")
    values = {}
    for name, kind in _FIELDS.items():
        if name not in data:
            raise MessageError(f"missing field {name!r}")
        values[name] = _typed(data, name, kind)
    for name, kind in _OPTIONAL.items():
        if data.get(name) is not None:
            values[name] = _typed(data, name, kind)
    job = Job(**values)
    check_job(job)
    return job


def _typed(data: dict, name: str, kind: type):
    value = data[name]
    # bool is an int subclass in Python; a size of `true` is still a mistyped field.
    if type(value) is not kind:
        raise MessageError(f"field {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _decode_legacy(data: list) -> Job:
    if len(data) != 5 or data[0] != "process":
        raise MessageError("legacy body must be [\"process\", bucket, input_prefix, output_prefix, file_name]")
    if not all(isinstance(v, str) for v in data[1:]):
        raise MessageError("legacy body fields must be strings")
    _, bucket, input_prefix, output_prefix, file_name = data
    job = Job(bucket=bucket, input_key=input_prefix + file_name, input_prefix=input_prefix,
              output_prefix=output_prefix, legacy=True)
    check_job(job)
    return job


def check_job(job: Job) -> None:
    """Refuse a job no well-formed message has (see ``check_key`` and the naming rules)."""
    if not _BUCKET_RE.match(job.bucket):
        raise MessageError(f"invalid bucket name {printable(job.bucket)}")
    if not job.input_key.startswith(job.input_prefix):
        raise MessageError("input_key is not under input_prefix")
    if not job.relative_name:
        raise MessageError("input_key names no file below input_prefix")
    _check_relative_name(job.relative_name, label="file name" if job.legacy else "input_key below input_prefix")
    for label, key in (("input_key", job.input_key), ("output_prefix", job.output_prefix)):
        check_key(key, label=label)
    if job.size is not None and job.size < 0:
        raise MessageError("field 'size' must not be negative")
    if job.batch_id is not None and not _BATCH_RE.match(job.batch_id):
        raise MessageError("invalid batch_id")


def _check_relative_name(name: str, *, label: str) -> None:
    """The path below the input prefix becomes the path below the output prefix: it must be
    relative and plain, or ``output/`` + ``/tmp/x`` writes ``output//tmp/x``. No file below a
    folder has such a path, so sendjobs never sends one."""
    segments = name.split("/")
    if name.startswith("/"):
        raise MessageError(f"{label} is absolute: {printable(name)}")
    if ".." in segments:
        raise MessageError(f"{label} has a '..' segment: {printable(name)}")
    if "" in segments:
        raise MessageError(f"{label} has an empty segment: {printable(name)}")


def check_key(key: str, *, label: str = "key") -> None:
    """Refuse keys no well-formed job has: absolute, with a ``..`` segment, NUL, or over 1,024 bytes.

    S3 itself accepts such keys, but they are the classic way to make a worker write outside
    its folder (the original joined the file name to the work directory).
    """
    if "\x00" in key:
        raise MessageError(f"{label} contains a NUL character")
    if key.startswith("/"):
        raise MessageError(f"{label} is absolute: {printable(key)}")
    if ".." in key.split("/"):
        raise MessageError(f"{label} has a '..' segment: {printable(key)}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise MessageError(f"{label} is not valid Unicode") from None
    if size > MAX_KEY_BYTES:
        raise MessageError(f"{label} is {size} bytes, over S3's {MAX_KEY_BYTES}")


# --------------------------------------------------------------------------- trust


@dataclass(frozen=True)
class Allowed:
    """What a worker was configured to touch; ``None`` means "take it from the message".
    ``s3_events``: S3 event notifications are jobs too (``intake.py``); they carry no prefixes, so
    this needs all three of the others."""

    bucket: str | None = None
    input_prefix: str | None = None
    output_prefix: str | None = None
    s3_events: bool = False


def authorize(job: Job, allowed: Allowed) -> None:
    """Raise ``MessageError`` unless ``job`` stays inside the configured bucket and prefixes."""
    if allowed.bucket is not None and job.bucket != allowed.bucket:
        raise MessageError(f"bucket {printable(job.bucket)} is not the configured bucket")
    if allowed.input_prefix is not None and not job.input_key.startswith(allowed.input_prefix):
        raise MessageError(f"input key {printable(job.input_key)} is outside {printable(allowed.input_prefix)}")
    if allowed.output_prefix is not None and not job.output_prefix.startswith(allowed.output_prefix):
        raise MessageError(f"output prefix {printable(job.output_prefix)} is outside {printable(allowed.output_prefix)}")


# --------------------------------------------------------------------------- naming


def input_key(input_prefix: str, relative_path: str) -> str:
    """The S3 key of a file at ``relative_path`` (``/``-separated) under the input prefix."""
    return input_prefix + relative_path


def safe_local_name(relative_name: str, suffix: str = "") -> str:
    """A single path component for the local copy of an input: never a separator, ``.``/``..``,
    NUL or over-long name, so joining it to a private folder cannot leave that folder.
    The original base name and extension are kept where possible, since commands often look at them."""
    base = relative_name.rsplit("/", 1)[-1].replace("\x00", "_").replace("\\", "_")
    if base in ("", ".", ".."):
        base = "input"
    limit = MAX_LOCAL_NAME_BYTES - len(suffix.encode("utf-8", "surrogateescape"))
    encoded = base.encode("utf-8", "surrogateescape")
    if len(encoded) > limit:
        stem, dot, ext = base.rpartition(".")
        ext = (dot + ext) if stem and len(ext) <= 16 else ""
        keep = limit - len(ext.encode("utf-8", "surrogateescape"))
        base = encoded[:keep].decode("utf-8", "ignore") + ext
    return base + suffix


def new_batch_id(now: datetime, token: str) -> str:
    """Sortable batch ids: ``20261128T020501Z-<token>``."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{token}"


def manifest_key(batch_prefix: str, batch_id: str) -> str:
    return f"{batch_prefix}{batch_id}/manifest.jsonl"


def error_key(errors_prefix: str, batch_id: str | None, relative_name: str) -> str:
    """Where a worker records why a job finally failed (one small JSON object per job)."""
    return f"{errors_prefix}{batch_id or 'no-batch'}/{relative_name}.json"


def printable(text: str) -> str:
    """``text`` quoted on one line: control characters, newlines and stray surrogates escaped."""
    out = []
    for ch in text:
        if ch in "\t\n\r" or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                       if ch not in "\t\n\r" else {"\t": "\\t", "\n": "\\n", "\r": "\\r"}[ch])
        else:
            out.append(ch)
    return "'" + "".join(out).replace("'", "\\'") + "'"
