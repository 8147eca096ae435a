"""S3 Event Notification messages: the third form of job message, for files that arrive on their own.

Pure module (no boto3, no I/O), like ``message.py``. S3 can send an event per new object straight to
an SQS queue, or to an SNS topic that forwards it to the queue wrapped in an SNS envelope. This
module reads both and says what each message asks for:

* ``s3:TestEvent`` (sent once when a notification is configured): nothing to do;
* ``ObjectCreated:*`` records: one object each (S3 may batch several records in one message);
* any other record (``ObjectRemoved:*``, lifecycle, replication...): ignored;
* a zero-byte key ending in ``/`` (a "folder" made in the console): skipped.

Structure: https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
Object keys in events are URL-encoded the way HTML forms encode them ("red flower.jpg" arrives as
"red+flower.jpg"), so they are decoded with ``unquote_plus``. SNS envelope:
https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

from .message import printable

CREATED_PREFIX = "ObjectCreated:"


class EventError(ValueError):
    """An event message that cannot be used; ``str()`` is one line saying why."""


@dataclass(frozen=True)
class ObjectEvent:
    """One new object, as an event names it."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    sequencer: str | None
    event_name: str


@dataclass(frozen=True)
class Notification:
    """What one message asks for: objects to process, and what was left out and why."""

    objects: tuple[ObjectEvent, ...] = ()
    skipped: tuple[str, ...] = ()
    test: bool = False


def is_event(data) -> bool:
    """Does a decoded JSON body look like an S3 event (direct, test, or wrapped by SNS)?"""
    if not isinstance(data, dict):
        return False
    if data.get("Type") == "Notification" and "Message" in data and "TopicArn" in data:
        return True
    return "Records" in data or data.get("Event") == "s3:TestEvent"


def decode(data: dict) -> Notification:
    """Read a decoded JSON body that ``is_event``; raise ``EventError`` with a one-line reason."""
    if data.get("Type") == "Notification":
        try:
            data = json.loads(data["Message"])
        except (TypeError, ValueError):
            raise EventError("SNS notification whose Message is not JSON") from None
        if not isinstance(data, dict) or not is_event(data) or data.get("Type") == "Notification":
            raise EventError("SNS notification that does not carry an S3 event")
    if data.get("Event") == "s3:TestEvent":
        return Notification(test=True)
    records = data.get("Records")
    if not isinstance(records, list) or not records:
        raise EventError("S3 event without records")
    objects, skipped = [], []
    for index, record in enumerate(records):
        found = _record(record, index)
        if isinstance(found, str):
            skipped.append(found)
        else:
            objects.append(found)
    return Notification(objects=tuple(objects), skipped=tuple(skipped))


def _record(record, index: int) -> ObjectEvent | str:
    """The object a record names, or why it is left out."""
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        raise EventError(f"record {index} is not an S3 event record")
    name = record.get("eventName")
    s3 = record.get("s3")
    if not isinstance(name, str) or not isinstance(s3, dict):
        raise EventError(f"record {index} lacks eventName or s3")
    try:
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        raw_key = obj["key"]
    except (KeyError, TypeError):
        raise EventError(f"record {index} lacks the bucket name or the object key") from None
    if not isinstance(bucket, str) or not isinstance(raw_key, str):
        raise EventError(f"record {index} has a non-string bucket or key")
    try:
        # errors="strict": a %-sequence that is not UTF-8 names no key S3 could have stored.
        key = unquote_plus(raw_key, errors="strict")
    except UnicodeDecodeError:
        raise EventError(f"record {index} has a key that is not UTF-8 once decoded") from None
    if not name.startswith(CREATED_PREFIX):
        return f"{name} for {printable(key)} (only ObjectCreated events start jobs)"
    size = obj.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise EventError(f"record {index} has an invalid object size")
    if key.endswith("/") and not size:
        return f"{printable(key)} is a folder marker"
    etag, version_id, sequencer = (obj.get(k) or None for k in ("eTag", "versionId", "sequencer"))
    if not all(v is None or isinstance(v, str) for v in (etag, version_id, sequencer)):
        raise EventError(f"record {index} has a non-string eTag, versionId or sequencer")
    return ObjectEvent(bucket=bucket, key=key, size=size,
                       etag=f'"{etag}"' if etag and not etag.startswith('"') else etag,
                       version_id=version_id, sequencer=sequencer, event_name=name)

