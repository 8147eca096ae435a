"""What a message body asks a worker to do, whatever its form. Pure: no boto3, no I/O.

A worker's queue can hold three forms of message; ``read`` turns any body into one ``Request``:

=================================  ===========================================================
form                               what it asks for
=================================  ===========================================================
version 1 (``message.py``)         one job, trusted only inside ``Allowed``
legacy ``["process", ...]``        one job, as the original sample sent it
S3 event notification              with ``Allowed.s3_events``: one job per new object under
(``s3event.py``; direct or SNS)    the configured input prefix; a test event, removals and
                                   folder markers ask for nothing; without it, refused
=================================  ===========================================================

A request that can never succeed (not JSON, wrong schema, a key that leaves its prefix, an event
for another bucket) is ``REJECTED`` with a one-line reason: the worker moves it to the dead-letter
queue without touching S3. Every job, whatever its form, goes through the same checks
(``message.check_job``, ``authorize``, the output key).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import message, s3event
from .message import Allowed, Job, MessageError, printable


class Ask(enum.Enum):
    JOBS = "jobs"  # run each job
    NOTHING = "nothing"  # a test event, removals, folder markers: delete the message
    REJECTED = "rejected"  # never processable: to the dead-letter queue


@dataclass(frozen=True)
class Request:
    ask: Ask
    jobs: tuple[Job, ...] = ()
    #: REJECTED: why; NOTHING: what the message held; JOBS: records left out, if any ("; "-joined).
    reason: str = ""

    @classmethod
    def rejected(cls, reason: str) -> Request:
        return cls(Ask.REJECTED, reason=reason)


def read(body: str, *, allowed: Allowed, extension: str) -> Request:
    """What ``body`` asks for, checked against what the worker may touch."""
    try:
        data = message.loads(body)
        if isinstance(data, dict) and "v" not in data and s3event.is_event(data):
            return _event(data, allowed, extension)
        job = message.from_data(data)
        _check(job, allowed, extension)
    except MessageError as exc:
        return Request.rejected(str(exc))
    return Request(Ask.JOBS, jobs=(job,))


def _check(job: Job, allowed: Allowed, extension: str) -> None:
    message.authorize(job, allowed)
    message.check_key(job.output_key(extension), label="output key")


def _event(data: dict, allowed: Allowed, extension: str) -> Request:
    if not allowed.s3_events:
        return Request.rejected("an S3 event notification: start getjobs with --s3-events (and --bucket, "
                                "--input-prefix, --output-prefix) to process these")
    if None in (allowed.bucket, allowed.input_prefix, allowed.output_prefix):
        return Request.rejected("S3 events need a configured bucket, input prefix and output prefix")
    try:
        notification = s3event.decode(data)
    except s3event.EventError as exc:
        return Request.rejected(f"S3 event: {exc}")
    if notification.test:
        return Request(Ask.NOTHING, reason="an s3:TestEvent (sent when a bucket notification is set up)")
    jobs: list[Job] = []
    for index, obj in enumerate(notification.objects):
        job = Job(bucket=obj.bucket, input_key=obj.key, input_prefix=allowed.input_prefix,
                  output_prefix=allowed.output_prefix, size=obj.size, etag=obj.etag, version_id=obj.version_id)
        try:
            # Bucket and prefix first: "outside 'input/'" says more than "not under input_prefix".
            message.authorize(job, allowed)
            message.check_job(job)
            message.check_key(job.output_key(extension), label="output key")
        except MessageError as exc:
            where = f"record {index} ({printable(obj.key)})" if len(notification.objects) > 1 else "S3 event"
            return Request.rejected(f"{where}: {exc}")
        if job not in jobs:  # the same object version twice in one message is one job
            jobs.append(job)
    skipped = "; ".join(notification.skipped)
    if not jobs:
        return Request(Ask.NOTHING, reason=skipped)
    return Request(Ask.JOBS, jobs=tuple(jobs), reason=skipped)
