"""One run's upload → batch → send → journal plumbing, fed one planned step at a time.

::

    submit(step) ──► upload pool (``concurrency`` threads; at most 2 × concurrency steps held)
        ──► Batcher (one thread: full batches of ≤ 10 entries and ≤ MaximumMessageSize)
        ──► sender threads (SendMessageBatch, partial failures retried) ──► journal: sent

A job enters the batcher only after its upload returned, so a message never names an object that
is not (yet) in S3. Only the batcher ever holds a partial batch; ``senders`` threads send full ones,
so SQS latency overlaps the uploads.
"""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable

from .. import aws, message
from ..batching import MAX_ENTRIES, Batcher, call_batch
from ..message import Job
from ..records import SENT, UPLOADED, JournalRow
from ..transfer import FileChanged, put_file
from .journal import Journal
from .plan import SEND_ONLY, Step
from .summary import Tally

#: Attempts at one batch's entries that SQS failed for its own reasons (throttling, 5xx).
SEND_ATTEMPTS = 6


@dataclass(frozen=True)
class Outgoing:
    """An uploaded file's job, waiting for its batch."""

    row: JournalRow
    body: str


@dataclass(frozen=True)
class Destination:
    """Where this run's jobs go, and the run's identity."""

    s3: object
    sqs: object
    queue_url: str
    #: The queue's MaximumMessageSize: what one SendMessageBatch may carry in all.
    max_message_bytes: int
    batch_id: str


class Pipeline:
    """Acts on the planned steps of one run. ``stop`` (Ctrl-C) ends it early; a fatal error (bucket
    gone, access denied) ends it and stays in ``fatal`` for the caller to report."""

    def __init__(self, config, dest: Destination, journal: Journal, tally: Tally, *, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.dest = dest
        self.journal = journal
        self.tally = tally
        self.stop = stop
        self.sleep = sleep
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._in_pool = 0  # submitted steps not yet handed to the batcher (or dropped)
        # At most 2 × concurrency steps are held at once: memory stays flat for any directory.
        self._slots = threading.BoundedSemaphore(config.concurrency * 2)
        senders = max(1, min(8, config.concurrency // 8))
        self._batches: queue_mod.Queue = queue_mod.Queue(maxsize=senders * 2)
        self._batcher: Batcher[Outgoing] = Batcher(
            self._batches.put, max_linger_s=config.batch_max_linger_s, more_coming=self._uploads_pending,
            max_bytes=dest.max_message_bytes, size_of=lambda o: len(o.body), clock=clock,
            maxsize=MAX_ENTRIES * senders * 4)
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="upload")
        self._threads = [threading.Thread(target=self._batcher.run, daemon=True, name="batcher")]
        self._threads += [threading.Thread(target=self._send_loop, daemon=True, name=f"sender-{i}")
                          for i in range(senders)]
        for t in self._threads:
            t.start()

    @property
    def stopping(self) -> bool:
        return self.stop.is_set() or self.fatal is not None

    def submit(self, step: Step) -> bool:
        """Queue ``step`` for upload once a slot is free; False once the run is stopping."""
        while not self._slots.acquire(timeout=0.2):
            if self.stopping:
                return False
        if self.stopping:
            self._slots.release()
            return False
        with self._lock:
            self._in_pool += 1
        self._pool.submit(self._upload, step)
        return True

    def close(self) -> None:
        """Finish what was submitted (unless stopping), flush the last batch, stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=self.stopping)
        self._batcher.close()
        self._threads[0].join()
        for _ in self._threads[1:]:
            self._batches.put(None)
        for t in self._threads[1:]:
            t.join()

    # -- upload ---------------------------------------------------------------------------------

    def _uploads_pending(self) -> bool:
        with self._lock:
            return self._in_pool > 0

    def _upload(self, step: Step) -> None:
        try:
            if self.stopping:
                return
            f = step.file
            etag = self._etag_in_s3(step) if step.action == SEND_ONLY else None
            if etag is None:
                etag = self._put(step)
            if etag is None:
                return
            c = self.config
            job = Job(bucket=c.bucket, input_key=message.input_key(c.input_prefix, f.rel),
                      input_prefix=c.input_prefix, output_prefix=c.output_prefix, batch_id=self.dest.batch_id,
                      size=f.size, etag=etag)
            self._batcher.put(Outgoing(self._uploaded_row(step, etag), message.encode(job)))
        except Exception as exc:  # noqa: BLE001 - never drop a file silently in a worker thread: stop the run
            self.fatal = self.fatal or exc
        finally:
            with self._lock:
                self._in_pool -= 1
            self._slots.release()

    def _uploaded_row(self, step: Step, etag: str) -> JournalRow:
        f = step.file
        return JournalRow(rel=f.rel, size=f.size, mtime_ns=f.mtime_ns, etag=etag, state=UPLOADED,
                          batch_id=self.dest.batch_id)

    def _etag_in_s3(self, step: Step) -> str | None:
        """A file uploaded by an interrupted run: reuse the object if S3 still holds that version."""
        try:
            head = self.dest.s3.head_object(Bucket=self.config.bucket,
                                            Key=message.input_key(self.config.input_prefix, step.file.rel))
        except Exception:  # noqa: BLE001 - any doubt means upload again
            return None
        if head.get("ETag") == step.etag and head.get("ContentLength") == step.file.size:
            return step.etag
        return None

    def _put(self, step: Step) -> str | None:
        """Upload the file; its ETag, or None when it failed (named in the tally) or the run must stop."""
        c, f = self.config, step.file
        try:
            result = put_file(self.dest.s3, f.path, c.bucket, message.input_key(c.input_prefix, f.rel),
                              config=c.transfer, size=f.size, mtime_ns=f.mtime_ns)
        except FileChanged:
            self.tally.fail(f.rel, "changed while it was uploaded; rerun to send the new version")
            return None
        except OSError as exc:
            self.tally.fail(f.rel, f"cannot read: {exc.strerror or exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - classified here
            if aws.is_fatal(exc):
                self.fatal = self.fatal or exc
            else:
                self.tally.fail(f.rel, aws.describe(exc, bucket=c.bucket))
            return None
        self.journal.record([self._uploaded_row(step, result.etag)], wait=False)
        self.tally.uploaded(f.size)
        return result.etag

    # -- send -----------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while (batch := self._batches.get()) is not None:
            if self.fatal is None:
                self._send(batch)

    def _send(self, batch: list[Outgoing]) -> None:
        try:
            outcome = call_batch(
                lambda entries: self.dest.sqs.send_message_batch(QueueUrl=self.dest.queue_url, Entries=entries),
                batch, lambda o: {"MessageBody": o.body}, attempts=SEND_ATTEMPTS, sleep=self.sleep,
                on_success=self._sent)
        except Exception as exc:  # noqa: BLE001 - call_batch raises only what no retry can fix
            self.fatal = self.fatal or exc
            return
        for o, why in outcome.refused:
            self.tally.fail(o.row.rel, f"SQS refused the message: {why}")
        for o, _ in outcome.gave_up:
            self.tally.fail(o.row.rel, "SQS kept failing to accept the message; rerun to resend")

    def _sent(self, sent: list[Outgoing]) -> None:
        self.journal.record([replace(o.row, state=SENT) for o in sent])
        self.tally.sent(len(sent))
