"""One run's upload → batch → send → journal plumbing, fed one planned step at a time.

::

    submit(step) ──► uploads: threads here (upload.py) or upload processes (procs.py)
        ──► finished(step, outcome), in the thread that learnt it: the job joins a batch (collect.py)
        ──► full batch ──► sender threads (SendMessageBatch, partial failures retried) ──► journal: sent

A job joins a batch only after its upload returned, so a message never names an object that is
not (yet) in S3. A batch is cut by the upload that fills it, or when nothing else is in flight
(or it has waited ``batch_max_linger_s``), so batches stay full (≈1.1 requests per file) and SQS
latency overlaps the uploads. Per ten files the journal writer and a sender are woken once each.
"""

from __future__ import annotations

import queue as queue_mod
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from .. import message
from ..batching import call_batch
from ..message import Job
from ..records import SENT, UPLOADED, JournalRow
from .collect import BatchCollector
from .journal import Journal
from .plan import Step
from .summary import Tally
from .upload import SKIPPED, Outcome, Target, UploadThreads, upload_step

#: Attempts at one batch's entries that SQS failed for its own reasons (throttling, 5xx).
SEND_ATTEMPTS = 6


@dataclass(frozen=True)
class Outgoing:
    """An uploaded file's job, waiting for its batch."""

    row: JournalRow
    body: str
    #: The "uploaded" row is already in the journal (large files: recorded at once).
    recorded: bool = False


@dataclass(frozen=True)
class Destination:
    """Where this run's jobs go, and the run's identity."""

    s3: object
    sqs: object
    queue_url: str
    #: The queue's MaximumMessageSize: what one SendMessageBatch may carry in all.
    max_message_bytes: int
    batch_id: str


class RunStopped(Exception):
    """What stopped the run, already in one line (a fatal error seen in an upload process)."""


class Pipeline:
    """Acts on the planned steps of one run. ``stop`` (Ctrl-C) ends it early; a fatal error (bucket
    gone, access denied) ends it and stays in ``fatal`` for the caller to report. ``uploads``
    builds the upload side for the pipeline (``put(step) -> bool``, ``close()``, reporting each
    step to ``finished``); the default is ``concurrency`` threads in this process."""

    def __init__(self, config, dest: Destination, journal: Journal, tally: Tally, *, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 uploads: Callable[[Pipeline], object] | None = None):
        self.config = config
        self.dest = dest
        self.journal = journal
        self.tally = tally
        self.stop = stop
        self.sleep = sleep
        self.fatal: BaseException | None = None
        self.target = Target(bucket=config.bucket, input_prefix=config.input_prefix, transfer=config.transfer)
        self._lock = threading.Lock()
        self._in_flight = 0  # submitted steps not finished yet
        senders = max(1, min(8, config.concurrency // 8))
        self._batches: queue_mod.Queue = queue_mod.Queue(maxsize=senders * 2)
        self._collector: BatchCollector[Outgoing] = BatchCollector(
            self._cut, max_bytes=dest.max_message_bytes, size_of=lambda o: len(o.body), clock=clock)
        self._senders = [threading.Thread(target=self._send_loop, args=(i == 0,), daemon=True, name=f"sender-{i}")
                         for i in range(senders)]
        for t in self._senders:
            t.start()
        self.uploads = (uploads or upload_threads)(self)

    @property
    def stopping(self) -> bool:
        return self.stop.is_set() or self.fatal is not None

    def submit(self, step: Step) -> bool:
        """Hand ``step`` to the uploads (blocks while enough are waiting); False once the run is stopping."""
        if self.stopping:
            return False
        with self._lock:
            self._in_flight += 1
        if self.uploads.put(step):
            return True
        with self._lock:
            self._in_flight -= 1
        return False

    def close(self) -> None:
        """Finish what was submitted (unless stopping), send the last batch, stop the threads."""
        self.uploads.close()
        self._collector.flush_all()
        for _ in self._senders:
            self._batches.put(None)
        for t in self._senders:
            t.join()

    def stop_run(self, reason: str) -> None:
        """Stop the run for a reason already put in one line (an upload process's trouble)."""
        self.fatal = self.fatal or RunStopped(reason)

    # -- an upload finished (called from whichever thread learnt it) ----------------------------

    def finished(self, step: Step, outcome: Outcome) -> None:
        try:
            if outcome.etag is not None:
                self._uploaded(step, outcome)
            elif outcome.fatal:
                self.fatal = self.fatal or outcome.error or RunStopped(outcome.reason)
            elif not outcome.skipped:
                self.tally.fail(step.file.rel, outcome.reason)
        except Exception as exc:  # noqa: BLE001 - never drop a file silently in a worker thread: stop the run
            self.fatal = self.fatal or exc
        finally:
            with self._lock:
                self._in_flight -= 1
                idle = self._in_flight == 0
            if idle:  # nothing in flight could fill the partial batch: send it now
                self._collector.flush_all()

    def _uploaded(self, step: Step, outcome: Outcome) -> None:
        f, c = step.file, self.config
        row = JournalRow(rel=f.rel, size=f.size, mtime_ns=f.mtime_ns, etag=outcome.etag, state=UPLOADED,
                         batch_id=self.dest.batch_id)
        # A large file's upload is worth keeping at once (a rerun then only checks it is there); a
        # small one's row goes in with its batch's, one journal write per ten files.
        recorded = f.size > c.transfer.in_memory_max
        if recorded:
            self.journal.record([row], wait=False)
        if outcome.put:
            self.tally.uploaded(f.size)
        job = Job(bucket=c.bucket, input_key=message.input_key(c.input_prefix, f.rel), input_prefix=c.input_prefix,
                  output_prefix=c.output_prefix, batch_id=self.dest.batch_id, size=f.size, etag=outcome.etag)
        self._collector.add(Outgoing(row, message.encode(job), recorded))

    def _cut(self, batch: list[Outgoing]) -> None:
        self._record_uploaded(batch)
        self._batches.put(batch)

    def _record_uploaded(self, batch: list[Outgoing]) -> None:
        rows = [o.row for o in batch if not o.recorded]
        if rows:
            self.journal.record(rows, wait=False)

    # -- send -----------------------------------------------------------------------------------

    def _send_loop(self, lingers: bool) -> None:
        # One sender also sends a partial batch that waited too long (uploads slower than that).
        wait_s = self.config.batch_max_linger_s / 4 if lingers else None
        while True:
            try:
                batch = self._batches.get(timeout=wait_s)
            except queue_mod.Empty:
                # Sent from here, not queued: with one sender, a full queue would wait for itself.
                batch = self._collector.take_older(self.config.batch_max_linger_s)
                if batch:
                    self._record_uploaded(batch)
                    self._send(batch)
                continue
            if batch is None:
                return
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


def upload_threads(pipeline: Pipeline) -> UploadThreads:
    """The default upload side: ``concurrency`` threads in this process, through transfer.py."""

    def work(step: Step) -> None:
        pipeline.finished(step, SKIPPED if pipeline.stopping else upload_step(pipeline.dest.s3, pipeline.target, step))

    return UploadThreads(pipeline.config.concurrency, work, stopping=lambda: pipeline.stopping)
