"""sendjobs' library: walk a directory, upload every file, send one job per uploaded file.

One run reads ``walk → plan → upload → batch → send → journal``: the walk (walk.py) yields files
lazily, the plan (plan.py) says per file what the journal allows (skip / send only / upload), and
the dry run prints those steps while the real run hands them to the pipeline (pipeline.py), which
uploads them (in its own threads, upload.py; through the AWS CRT, crtuploads.py; or in upload
processes, procs.py + uploader.py), batches and sends them (collect.py) and records each file in
the journal (journal.py). The journal is a small SQLite file per (directory, bucket, prefixes,
queue) in the state folder; it is what makes a rerun resume (see README, "Resume"). The batch
manifest (manifest.py) is written last.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

from .. import aws, message
from ..events import EventLog, NullLog
from ..records import JournalRow, ManifestHeader
from ..transfer import TransferConfig
from .journal import Journal, default_state_dir, journal_path
from .manifest import manifest_lines, upload_lines
from .pipeline import Destination, Pipeline, RunStopped
from .procs import LateProcesses
from .plan import SKIP, UPLOAD, Step, plan_files
from .summary import SendSummary, Tally
from .walk import LocalFile, key_problem, walk

#: What SQS allows when the queue does not say (GetQueueAttributes MaximumMessageSize).
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class SendConfig:
    directory: str
    bucket: str
    input_prefix: str
    output_prefix: str
    queue: str
    recursive: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = False
    concurrency: int = 32
    force: bool = False
    dry_run: bool = False
    batch_prefix: str = "batches/"
    state_dir: str | None = None
    transfer: TransferConfig = field(default_factory=TransferConfig)
    #: Upload processes besides this one (procs.py); 1 = upload in this process's threads.
    processes: int = 1
    #: They start once this many files were handed to the uploads (the run is large); before, and
    #: for runs that never get there, this process uploads.
    processes_after: int = 256
    #: "crt": single-part uploads through the AWS CRT (the ``crt`` extra, crtuploads.py), in
    #: this process; "botocore": transfer.py everywhere.
    uploader: str = "botocore"
    #: A partial batch is sent once no upload is running that could fill it, or after this long.
    #: Waiting keeps batches full (≈1.1 requests per file) even when uploads are slow.
    batch_max_linger_s: float = 1.0


class FatalSendError(Exception):
    """Stops the whole run (bucket missing, access denied…): one line for the user."""


class Sender:
    """Runs one submission. ``clients`` is injected (tests pass moto clients), and so are the wall
    clock (``now``, for batch ids), the monotonic ``clock`` and ``sleep`` (retry backoff)."""

    def __init__(self, config: SendConfig, clients, *, log: EventLog = NullLog(),
                 emit: Callable[[str], None] = lambda _: None, progress=None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.clients = clients
        self.s3 = clients.s3
        self.sqs = clients.sqs
        self.log = log
        self.emit = emit
        self.now = now
        self.clock = clock
        self.sleep = sleep
        self.summary = SendSummary()
        self.tally = Tally(self.summary, log=log, progress=progress)
        self.queue_url: str | None = None
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
        self._stop = threading.Event()

    def run(self) -> SendSummary:
        started = self.clock()
        try:
            if self.config.dry_run:
                self._dry_run()
            else:
                self._preflight()
                journal = self._open_journal()
                try:
                    self._send(journal)
                finally:
                    journal.close()
        finally:
            self.summary.seconds = self.clock() - started
        return self.summary

    def stop(self) -> None:
        """Ask the run to stop promptly (Ctrl-C): no new uploads, in-flight batches are recorded."""
        self._stop.set()

    # -- walk → plan (shared by the dry run and the real run) ----------------------------------

    def _state_dir(self) -> str:
        return self.config.state_dir or default_state_dir()

    def _files(self) -> Iterator[LocalFile]:
        c = self.config
        for f in walk(c.directory, recursive=c.recursive, include=c.include, exclude=c.exclude,
                      follow_symlinks=c.follow_symlinks, warn=self.tally.warn, fail=self.tally.fail,
                      skip_dirs=(self._state_dir(),)):
            problem = key_problem(c.input_prefix, f.rel)
            if problem:
                self.tally.fail(f.rel, problem)
                continue
            yield f

    def _steps(self, lookup: Callable[[str], JournalRow | None]) -> Iterator[Step]:
        """Every file the walk finds, planned and counted; the files to act on."""
        for step in plan_files(self._files(), lookup, force=self.config.force):
            self.tally.seen(skipped=step.action == SKIP)
            if step.action != SKIP:
                yield step

    def _dry_run(self) -> None:
        journal = None
        path = journal_path(self._state_dir(), self.config, self.config.queue)
        # Read-only look at the journal, if a previous run left one; the queue URL is unknown
        # without a request, so only a URL given as QUEUE finds it.
        if not self.config.force and os.path.exists(path):
            journal = Journal(path)
        try:
            for step in self._steps(journal.lookup if journal else lambda _: None):
                f = step.file
                self.summary.files_sent += 1
                self.summary.bytes_uploaded += f.size if step.action == UPLOAD else 0
                self.emit(json.dumps({"file": f.rel, "key": message.input_key(self.config.input_prefix, f.rel),
                                      "size": f.size, "action": step.action}, ensure_ascii=False))
        finally:
            if journal:
                journal.close()

    # -- the real run ---------------------------------------------------------------------------

    def _preflight(self) -> None:
        """Find the queue and its size limit; raise FatalSendError with one line if it is missing."""
        try:
            self.queue_url = aws.resolve_queue_url(self.sqs, self.config.queue)
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                  AttributeNames=["MaximumMessageSize"])["Attributes"]
        except Exception as exc:  # noqa: BLE001 - every cause becomes one line
            raise FatalSendError(aws.describe(exc, bucket=self.config.bucket, queue=self.config.queue)) from None
        self.max_message_bytes = int(attrs.get("MaximumMessageSize", self.max_message_bytes))

    def _open_journal(self) -> Journal:
        try:
            return Journal(journal_path(self._state_dir(), self.config, self.queue_url or self.config.queue))
        except (OSError, sqlite3.Error) as exc:
            raise FatalSendError(f"cannot open the resume journal in {self._state_dir()}: {exc}") from None

    def _batch_id(self, journal: Journal) -> str:
        """The interrupted run's batch, if there is one to finish; else a new one."""
        batch_id = None if self.config.force else journal.get_meta("open_batch")
        if batch_id:
            self.log("resuming", batch=batch_id)
        else:
            batch_id = message.new_batch_id(self.now(), secrets.token_hex(3))
            journal.set_meta("open_batch", batch_id)
        self.summary.batch_id = batch_id
        return batch_id

    def _send(self, journal: Journal) -> None:
        batch_id = self._batch_id(journal)
        pipeline = Pipeline(self.config, Destination(s3=self.s3, sqs=self.sqs, queue_url=self.queue_url,
                                                     max_message_bytes=self.max_message_bytes, batch_id=batch_id),
                            journal, self.tally, stop=self._stop, clock=self.clock, sleep=self.sleep,
                            uploads=self._uploads())
        try:
            for step in self._steps(journal.lookup):
                if not pipeline.submit(step):
                    break
        except KeyboardInterrupt:
            # Ctrl-C: stop submitting; uploads in flight finish, batches in flight are recorded,
            # nothing else is sent. A rerun resumes from the journal.
            self._stop.set()
        finally:
            pipeline.close()
        if isinstance(pipeline.fatal, RunStopped):
            raise FatalSendError(str(pipeline.fatal))
        if pipeline.fatal:
            raise FatalSendError(aws.describe(pipeline.fatal, bucket=self.config.bucket, queue=self.config.queue))
        self.summary.interrupted = self._stop.is_set()
        self.summary.manifest_key = self._write_manifest(journal, batch_id)
        if self.summary.manifest_key:
            journal.set_meta("last_batch", batch_id)
        self.summary.last_batch_id = journal.get_meta("last_batch")
        if self.summary.ok:
            journal.set_meta("open_batch", None)

    def _uploads(self):
        """How the pipeline uploads: upload processes, the CRT here, or (None) threads here."""
        c = self.config
        if c.processes > 1:
            return lambda pipeline: LateProcesses(pipeline, processes=c.processes, clients=self.clients,
                                                  start_after=c.processes_after)
        if c.uploader == "crt":
            from ..crt import CrtPutter
            from .crtuploads import CrtUploads

            return lambda pipeline: CrtUploads(pipeline, CrtPutter(self.clients, connections=c.concurrency),
                                               concurrency=c.concurrency)
        return None

    def _write_manifest(self, journal: Journal, batch_id: str) -> str | None:
        """The batch's files, keys and sizes, as JSON lines in S3, for status checks; its key."""
        c = self.config
        files, nbytes = journal.sent_totals(batch_id)
        if not files:
            return None
        header = ManifestHeader(batch_id=batch_id, bucket=c.bucket, input_prefix=c.input_prefix,
                                output_prefix=c.output_prefix, queue_url=self.queue_url, files=files, bytes=nbytes,
                                complete=self.summary.ok, written_at=self.now().isoformat())
        key = message.manifest_key(c.batch_prefix, batch_id)
        try:
            upload_lines(self.s3, c.bucket, key, manifest_lines(header, journal.sent_rows(batch_id)),
                         transfer=c.transfer)
        except Exception as exc:  # noqa: BLE001 - the jobs are sent; say so and go on
            self.tally.warn(f"could not write the batch manifest {key}: {aws.describe(exc)}")
            return None
        return key
