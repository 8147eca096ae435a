"""sendjobs' library: walk a directory, upload every file, send one job per uploaded file.

Pipeline (plan → act)::

    walk (lazy, main thread) ──► plan (journal: skip / send only / upload)
        ──► upload pool (``concurrency`` threads, bounded queue) ──► sender threads
        (SendMessageBatch of 10) ──► journal marks the file as sent

A job is put on the sender queue only after its upload returned, so a message never names an
object that is not (yet) in S3. The journal is a small SQLite file per (directory, bucket,
prefixes, queue) in the state folder; it is what makes a rerun resume (see README, "Resume").
"""

from __future__ import annotations

import json
import os
import queue as queue_mod
import secrets
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

from .. import aws, message
from ..message import Job
from ..events import EventLog, NullLog
from ..transfer import TransferConfig, put_file
from .journal import Journal, default_state_dir, journal_path
from .plan import SEND_ONLY, SKIP, UPLOAD, plan
from .walk import LocalFile, key_problem, walk

#: SendMessageBatch takes at most 10 entries whose bodies add up to the queue's MaximumMessageSize.
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html
BATCH_ENTRIES = 10
SEND_RETRIES = 6


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
    #: A partial batch is sent once no upload is running that could fill it, or after this long.
    #: Waiting keeps batches full (≈1.1 requests per file) even when uploads are slow.
    batch_max_linger_s: float = 1.0


@dataclass
class Failure:
    rel: str
    reason: str


@dataclass
class SendSummary:
    batch_id: str | None = None
    files_seen: int = 0
    files_sent: int = 0
    files_skipped: int = 0
    files_uploaded: int = 0
    files_failed: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    manifest_key: str | None = None
    #: The newest batch this directory → queue pairing wrote a manifest for (what --wait follows).
    last_batch_id: str | None = None
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.files_failed and not self.interrupted

    def as_dict(self) -> dict:
        secs = max(self.seconds, 1e-9)
        return {
            "batch_id": self.batch_id, "files_seen": self.files_seen, "files_sent": self.files_sent,
            "files_skipped": self.files_skipped, "files_uploaded": self.files_uploaded,
            "files_failed": self.files_failed, "bytes_uploaded": self.bytes_uploaded,
            "seconds": round(self.seconds, 3), "files_per_s": round(self.files_sent / secs, 1),
            "mib_per_s": round(self.bytes_uploaded / secs / 2**20, 2), "interrupted": self.interrupted,
            "manifest_key": self.manifest_key, "last_batch_id": self.last_batch_id,
            "failures": [{"file": f.rel, "reason": f.reason} for f in self.failures],
        }


class FatalSendError(Exception):
    """Stops the whole run (bucket missing, access denied…): one line for the user."""


# --------------------------------------------------------------------------- act


class Sender:
    """Runs one submission. ``clients`` is injected (tests pass moto clients)."""

    def __init__(self, config: SendConfig, clients, *, log: EventLog = NullLog(),
                 emit: Callable[[str], None] = lambda _: None, progress=None, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.config = config
        self.s3 = clients.s3
        self.sqs = clients.sqs
        self.log = log
        self.emit = emit
        self.progress = progress
        self.now = now
        self.summary = SendSummary()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._fatal: BaseException | None = None
        self._uploading = 0
        self.queue_url: str | None = None
        self.max_message_bytes = 256 * 1024

    # -- set-up ---------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Find the queue and its size limit; raise FatalSendError with one line if it is missing."""
        try:
            self.queue_url = aws.resolve_queue_url(self.sqs, self.config.queue)
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                  AttributeNames=["MaximumMessageSize"])["Attributes"]
        except Exception as exc:  # noqa: BLE001 - every cause becomes one line
            raise FatalSendError(aws.describe(exc, bucket=self.config.bucket, queue=self.config.queue)) from None
        self.max_message_bytes = int(attrs.get("MaximumMessageSize", self.max_message_bytes))

    def open_journal(self) -> Journal:
        state_dir = self.config.state_dir or default_state_dir()
        try:
            return Journal(journal_path(state_dir, self.config, self.queue_url or self.config.queue))
        except (OSError, sqlite3.Error) as exc:
            raise FatalSendError(f"cannot open the resume journal in {state_dir}: {exc}") from None

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> SendSummary:
        started = time.monotonic()
        try:
            if self.config.dry_run:
                return self._dry_run()
            self.preflight()
            journal = self.open_journal()
            try:
                self._run(journal)
            finally:
                journal.close()
        finally:
            self.summary.seconds = time.monotonic() - started
        return self.summary

    def stop(self) -> None:
        """Ask the run to stop promptly (Ctrl-C): no new uploads, in-flight batches are recorded."""
        self._stop.set()

    def _fail(self, rel: str, reason: str) -> None:
        with self._lock:
            self.summary.files_failed += 1
            if len(self.summary.failures) < 1000:
                self.summary.failures.append(Failure(rel, reason))
        self.log("failed", file=rel, reason=reason)

    def _warn(self, text: str) -> None:
        with self._lock:
            if len(self.summary.warnings) < 1000:
                self.summary.warnings.append(text)
        self.log("warning", reason=text)

    def _files(self) -> Iterator[LocalFile]:
        c = self.config
        for f in walk(c.directory, recursive=c.recursive, include=c.include, exclude=c.exclude,
                      follow_symlinks=c.follow_symlinks, warn=self._warn, fail=self._fail,
                      skip_dirs=(c.state_dir or default_state_dir(),)):
            problem = key_problem(c.input_prefix, f.rel)
            if problem:
                self._fail(f.rel, problem)
                continue
            yield f

    def _dry_run(self) -> SendSummary:
        journal = None
        state_dir = self.config.state_dir or default_state_dir()
        if not self.config.force and os.path.isdir(state_dir):
            # Read-only look at the journal, if a previous run left one; the queue URL is
            # unknown without a request, so only a URL given as QUEUE finds it.
            path = journal_path(state_dir, self.config, self.config.queue)
            if os.path.exists(path):
                journal = Journal(path)
        self.summary.files_sent = 0
        for f in self._files():
            self.summary.files_seen += 1
            action = plan(f, journal.lookup(f.rel) if journal else None, force=self.config.force)
            if action == SKIP:
                self.summary.files_skipped += 1
                continue
            self.summary.files_sent += 1
            self.summary.bytes_uploaded += f.size if action == UPLOAD else 0
            self.emit(json.dumps({"file": f.rel, "key": message.input_key(self.config.input_prefix, f.rel),
                                  "size": f.size, "action": action}, ensure_ascii=False))
        if journal:
            journal.close()
        return self.summary

    def _run(self, journal: Journal) -> None:
        c = self.config
        batch_id = None if c.force else journal.get_meta("open_batch")
        if batch_id:
            self.log("resuming", batch=batch_id)
        else:
            batch_id = message.new_batch_id(self.now(), secrets.token_hex(3))
            journal.set_meta("open_batch", batch_id)
        self.summary.batch_id = batch_id

        # One batcher groups uploaded files into batches of 10 (so only it ever holds a partial
        # batch); `senders` threads send them, so SQS latency overlaps uploads.
        senders = max(1, min(8, c.concurrency // 8))
        jobs: queue_mod.Queue = queue_mod.Queue(maxsize=BATCH_ENTRIES * senders * 4)
        batches: queue_mod.Queue = queue_mod.Queue(maxsize=senders * 2)
        slots = threading.BoundedSemaphore(c.concurrency * 2)
        batcher = threading.Thread(target=self._batch_loop, args=(jobs, batches, senders), daemon=True, name="batcher")
        sender_threads = [batcher] + [threading.Thread(target=self._send_loop, args=(batches, journal), daemon=True,
                                                       name=f"sender-{i}") for i in range(senders)]
        for t in sender_threads:
            t.start()
        pool = ThreadPoolExecutor(max_workers=c.concurrency, thread_name_prefix="upload")
        try:
            self._submit_all(journal, batch_id, jobs, slots, pool)
        except KeyboardInterrupt:
            # Ctrl-C: stop submitting; uploads in flight finish, batches in flight are recorded,
            # nothing else is sent. A rerun resumes from the journal.
            self._stop.set()
        finally:
            pool.shutdown(wait=True, cancel_futures=self._stop.is_set() or self._fatal is not None)
            jobs.put(None)  # the batcher flushes, then stops the senders
            for t in sender_threads:
                t.join()
        if self._fatal:
            raise FatalSendError(aws.describe(self._fatal, bucket=c.bucket, queue=c.queue))
        self.summary.interrupted = self._stop.is_set()
        self._write_manifest(journal, batch_id)
        if self.summary.manifest_key:
            journal.set_meta("last_batch", batch_id)
        self.summary.last_batch_id = journal.get_meta("last_batch")
        if self.summary.ok:
            journal.set_meta("open_batch", None)

    def _submit_all(self, journal: Journal, batch_id: str, jobs, slots, pool) -> None:
        for f in self._files():
            if self._stop.is_set() or self._fatal:
                return
            self.summary.files_seen += 1
            action = plan(f, journal.lookup(f.rel), force=self.config.force)
            if action == SKIP:
                with self._lock:
                    self.summary.files_skipped += 1
                if self.progress:
                    self.progress.add(files=1)
                continue
            # At most 2 × concurrency files are in the pool at once: memory stays flat.
            while not slots.acquire(timeout=0.2):
                if self._stop.is_set() or self._fatal:
                    return
            with self._lock:
                self._uploading += 1
            pool.submit(self._upload_one, f, action, journal, batch_id, jobs, slots)

    def _upload_one(self, f: LocalFile, action: str, journal: Journal, batch_id: str, jobs, slots) -> None:
        try:
            if self._stop.is_set() or self._fatal:
                return
            c = self.config
            key = message.input_key(c.input_prefix, f.rel)
            etag = None
            if action == SEND_ONLY:
                etag = self._verify_uploaded(key, journal.lookup(f.rel), f)
            if etag is None:
                try:
                    result = put_file(self.s3, f.path, c.bucket, key, config=c.transfer, size=f.size)
                    after = os.stat(f.path)
                except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
                    self._fail(f.rel, f"cannot read: {exc.strerror or exc}")
                    return
                except OSError as exc:
                    self._fail(f.rel, f"cannot read: {exc}")
                    return
                except Exception as exc:  # noqa: BLE001 - classified below
                    if aws.is_fatal(exc):
                        self._fatal = self._fatal or exc
                    else:
                        self._fail(f.rel, aws.describe(exc, bucket=c.bucket))
                    return
                if after.st_size != f.size or after.st_mtime_ns != f.mtime_ns:
                    self._fail(f.rel, "changed while it was uploaded; rerun to send the new version")
                    return
                etag = result.etag
                journal.record([(f.rel, f.size, f.mtime_ns, etag, batch_id)], "uploaded", wait=False)
                with self._lock:
                    self.summary.files_uploaded += 1
                    self.summary.bytes_uploaded += f.size
                if self.progress:
                    self.progress.add(nbytes=f.size)
            job = Job(bucket=c.bucket, input_key=key, input_prefix=c.input_prefix, output_prefix=c.output_prefix,
                      batch_id=batch_id, size=f.size, etag=etag)
            jobs.put((f, job, message.encode(job)))
        finally:
            with self._lock:
                self._uploading -= 1
            slots.release()

    def _verify_uploaded(self, key: str, row, f: LocalFile) -> str | None:
        """A file uploaded by an interrupted run: reuse the object if S3 still holds that version."""
        try:
            head = self.s3.head_object(Bucket=self.config.bucket, Key=key)
        except Exception:  # noqa: BLE001 - any doubt means upload again
            return None
        if row and head.get("ETag") == row[2] and head.get("ContentLength") == f.size:
            return row[2]
        return None

    # -- enqueue --------------------------------------------------------------------------------

    def _batch_loop(self, jobs, batches, senders: int) -> None:
        """Group uploaded files into batches: send one when it is full, when no upload is running
        that could fill it, or after ``batch_max_linger_s`` (keeps ≈1.1 requests per file)."""
        pending: list = []
        first_at = 0.0
        done = False
        while not done:
            try:
                item = jobs.get(timeout=0.02 if pending else None)
            except queue_mod.Empty:
                item = False
            if item is None:
                done = True
            elif item is not False:
                if not pending:
                    first_at = time.monotonic()
                pending.append(item)
            if not pending:
                continue
            full = len(pending) >= BATCH_ENTRIES or self._batch_bytes(pending) > self.max_message_bytes
            with self._lock:
                idle = self._uploading == 0 and jobs.empty()
            if full or (item is False and (idle or time.monotonic() - first_at >= self.config.batch_max_linger_s)):
                batches.put(self._take_batch(pending))
                first_at = time.monotonic()
        while pending:
            batches.put(self._take_batch(pending))
        for _ in range(senders):
            batches.put(None)

    def _send_loop(self, batches, journal: Journal) -> None:
        while (batch := batches.get()) is not None:
            self._send_batch(batch, journal)

    @staticmethod
    def _batch_bytes(pending) -> int:
        return sum(len(body) for _, _, body in pending)

    def _take_batch(self, pending: list) -> list:
        """The largest prefix of ``pending`` that fits one request; the rest waits its turn."""
        batch, size = [], 0
        for item in pending[:BATCH_ENTRIES]:
            if batch and size + len(item[2]) > self.max_message_bytes:
                break
            batch.append(item)
            size += len(item[2])
        del pending[:len(batch)]
        return batch

    def _send_batch(self, batch: list, journal: Journal) -> None:
        if self._fatal:
            return
        entries = {str(i): (f, job, body) for i, (f, job, body) in enumerate(batch)}
        attempt = 0
        while entries:
            try:
                response = self.sqs.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": i, "MessageBody": body} for i, (_, _, body) in entries.items()])
            except Exception as exc:  # noqa: BLE001
                if aws.is_fatal(exc):
                    self._fatal = self._fatal or exc
                    return
                response = {"Failed": [{"Id": i, "SenderFault": False, "Message": aws.describe(exc)}
                                       for i in entries]}
            sent = [entries.pop(ok["Id"]) for ok in response.get("Successful", [])]
            if sent:
                journal.record([(f.rel, f.size, f.mtime_ns, job.etag, job.batch_id) for f, job, _ in sent], "sent")
                with self._lock:
                    self.summary.files_sent += len(sent)
                if self.progress:
                    self.progress.add(files=len(sent))
            failed = response.get("Failed", [])
            for entry in failed:
                if entry.get("SenderFault"):
                    f, _, _ = entries.pop(entry["Id"])
                    self._fail(f.rel, f"SQS refused the message: {entry.get('Message', entry.get('Code'))}")
            attempt += 1
            if entries and attempt >= SEND_RETRIES:
                for f, _, _ in entries.values():
                    self._fail(f.rel, "SQS kept failing to accept the message; rerun to resend")
                return
            if entries:
                time.sleep(min(5.0, 0.1 * 2 ** attempt))

    # -- manifest -------------------------------------------------------------------------------

    def _write_manifest(self, journal: Journal, batch_id: str) -> None:
        """The batch's files, keys and sizes, as JSON lines in S3, for status checks."""
        c = self.config
        count = total = 0
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".jsonl", delete=False) as tmp:
            try:
                for rel, size, etag in journal.batch_rows(batch_id):
                    tmp.write(json.dumps({"key": message.input_key(c.input_prefix, rel), "size": size,
                                          "etag": etag}, ensure_ascii=True) + "\n")
                    count += 1
                    total += size
            finally:
                tmp.close()
        try:
            if count == 0:
                return
            header = json.dumps({"batch_id": batch_id, "bucket": c.bucket, "input_prefix": c.input_prefix,
                                 "output_prefix": c.output_prefix, "queue_url": self.queue_url, "files": count,
                                 "bytes": total, "complete": self.summary.ok,
                                 "written_at": self.now().isoformat()}, ensure_ascii=True)
            final = tmp.name + ".full"
            with open(final, "w", encoding="utf-8") as out, open(tmp.name, encoding="utf-8") as body:
                out.write(header + "\n")
                for line in body:
                    out.write(line)
            key = message.manifest_key(c.batch_prefix, batch_id)
            try:
                put_file(self.s3, final, c.bucket, key, config=c.transfer)
                self.summary.manifest_key = key
            except Exception as exc:  # noqa: BLE001 - the jobs are sent; say so and go on
                self._warn(f"could not write the batch manifest {key}: {aws.describe(exc)}")
            finally:
                os.unlink(final)
        finally:
            os.unlink(tmp.name)
