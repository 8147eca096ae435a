"""getjobs' library: a worker that polls SQS, runs one job per message and never loses one.

Threads (commands are subprocesses, so the GIL is not in the way and one process with shared
clients, one heartbeat and one deleter is simpler and cheaper than a process per job):

* the **poller** long-polls only when a job slot is free and asks for no more messages than there
  are free slots (never holds a message invisible while it waits for a slot);
* ``concurrency`` **job threads** each run download → command → upload for one message;
* the **heartbeat** extends the visibility of long jobs (ChangeMessageVisibilityBatch) so a job
  longer than the visibility timeout is never handed to a second worker;
* the **deleter** deletes finished messages in batches of up to 10 (one request per 10 jobs;
  a single deleting thread also avoids concurrent-delete quirks of some endpoints);
* the main thread supervises and handles signals: the first SIGTERM/SIGINT drains (no new
  messages, running jobs get ``grace_s``, the rest are released), the second aborts.

A message is deleted only after its output is in S3. Failures are released with a visibility
timeout that grows with ``ApproximateReceiveCount``; after the queue's ``maxReceiveCount`` SQS moves
the message to the dead-letter queue. Messages that can never succeed (malformed, forged) are
moved to the dead-letter queue at once, without touching S3.
"""

from __future__ import annotations

import json
import os
import queue as queue_mod
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import aws, message
from ..message import Allowed, Job, MessageError
from ..events import EventLog, NullLog
from ..runner import RunResult
from ..transfer import TransferConfig, get_to_file, put_file

#: SQS caps a message's total invisibility at 12 hours from its receipt.
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html
MAX_VISIBILITY_S = 12 * 3600
MAX_WAIT_S = 20
META_INPUT_ETAG = "filejobs-input-etag"
META_BATCH = "filejobs-batch"


@dataclass(frozen=True)
class WorkerConfig:
    work_dir: str
    extension: str
    queue: str
    allowed: Allowed = Allowed()
    concurrency: int = 1
    job_timeout_s: float | None = None
    visibility_timeout_s: int | None = None  # None: the queue's
    heartbeat_s: float | None = None  # None: a third of the visibility timeout
    grace_s: float = 60.0
    exit_when_idle_s: float | None = None
    max_jobs: int | None = None
    wait_time_s: int = MAX_WAIT_S
    retry_base_s: float = 10.0
    retry_max_s: float = 900.0
    errors_prefix: str = "errors/"
    batch_linger_s: float = 0.05
    transfer: TransferConfig = field(default_factory=TransferConfig)


@dataclass
class Stats:
    received: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    rejected: int = 0
    released: int = 0
    heartbeats: int = 0

    def as_dict(self):
        return dict(self.__dict__)


class FatalWorkerError(Exception):
    """The worker cannot go on (queue deleted, access denied): one line, exit 1."""


@dataclass
class _Running:
    message_id: str
    receipt: str
    attempt: int
    received_at: float
    key: str = ""
    extended_at: float = 0.0
    slot_freed: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)


class Worker:
    def __init__(self, config: WorkerConfig, clients, runner, *, log: EventLog = NullLog(),
                 protector=None, clock: Callable[[], float] = time.monotonic):
        self.c = config
        self.s3 = clients.s3
        self.sqs = clients.sqs
        self.runner = runner
        self.log = log
        self.protector = protector
        self.clock = clock
        self.stats = Stats()
        self.queue_url: str | None = None
        self.dlq_url: str | None = None
        self.max_receive_count: int | None = None
        self.visibility_timeout_s = config.visibility_timeout_s or 30
        self.heartbeat_s = config.heartbeat_s or 10.0

        self._lock = threading.Lock()
        self._slots_changed = threading.Condition(self._lock)
        self._running: dict[str, _Running] = {}
        self._busy = 0  # messages held: received and not yet finished (deleted or released)
        self._in_slot = 0  # jobs before or in their command: what --concurrency limits
        self._dispatched = 0
        self._last_activity = clock()
        self._work: queue_mod.Queue = queue_mod.Queue()
        self._deletes: queue_mod.Queue = queue_mod.Queue()
        self.draining = threading.Event()
        self.aborting = threading.Event()
        self.finished = threading.Event()
        self.fatal: BaseException | None = None
        self._signals = 0
        self._delete_done = threading.Event()

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        """Look up the queue and its settings; raise FatalWorkerError with one line on problems."""
        try:
            self.queue_url = aws.resolve_queue_url(self.sqs, self.c.queue)
            attrs = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"])["Attributes"]
        except Exception as exc:  # noqa: BLE001
            raise FatalWorkerError(aws.describe(exc, queue=self.c.queue)) from None
        self.visibility_timeout_s = self.c.visibility_timeout_s or int(attrs.get("VisibilityTimeout", 30))
        self.heartbeat_s = self.c.heartbeat_s or max(1.0, self.visibility_timeout_s / 3)
        check_heartbeat(self.heartbeat_s, self.visibility_timeout_s)
        redrive = attrs.get("RedrivePolicy")
        if redrive:
            policy = json.loads(redrive)
            self.max_receive_count = int(policy["maxReceiveCount"])
            dlq_arn = policy["deadLetterTargetArn"]
            self.dlq_url = _queue_url_from_arn(dlq_arn, self.queue_url)
        else:
            self.log("warning", reason="the queue has no dead-letter queue: failing jobs are retried until they expire")
        os.makedirs(self.c.work_dir, exist_ok=True)
        self._remove_stale_job_dirs()

    def _remove_stale_job_dirs(self) -> None:
        """Folders left by a worker that was killed (SIGKILL, OOM): ``job-<pid>-…`` whose process is
        gone. Several workers may share WORK_DIR, so only dead owners' folders are removed."""
        for entry in os.scandir(self.c.work_dir):
            parts = entry.name.split("-", 2)
            if len(parts) != 3 or parts[0] != "job" or not parts[1].isdigit() or not entry.is_dir(follow_symlinks=False):
                continue
            pid = int(parts[1])
            if pid == os.getpid() or _alive(pid):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            self.log("cleaned", folder=entry.name, reason="left by a worker that is no longer running")

    # ------------------------------------------------------------------ the run

    def run(self) -> Stats:
        """Start the threads and supervise until done; returns the counters."""
        self.start()
        started = self.clock()
        self.log("started", queue=aws.queue_name(self.queue_url), concurrency=self.c.concurrency,
                 visibility_timeout_s=self.visibility_timeout_s, heartbeat_s=self.heartbeat_s,
                 max_receive_count=self.max_receive_count, runner=self.runner.describe())
        threads = [threading.Thread(target=self._job_loop, name=f"job-{i}", daemon=True)
                   for i in range(self.c.concurrency * 2)]
        threads += [threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
                    threading.Thread(target=self._delete_loop, name="deleter", daemon=True)]
        poller = threading.Thread(target=self._poll_loop, name="poller", daemon=True)
        for t in threads:
            t.start()
        poller.start()
        try:
            self._supervise(poller)
        finally:
            self._shutdown(poller)
            self.log("summary", seconds=round(self.clock() - started, 3), **self.stats.as_dict())
        if self.fatal:
            raise FatalWorkerError(aws.describe(self.fatal, queue=self.c.queue))
        return self.stats

    def request_stop(self) -> None:
        """First call drains, second aborts (what SIGTERM/SIGINT do)."""
        self._signals += 1
        if self._signals == 1:
            self.log("stopping", mode="drain", grace_s=self.c.grace_s, running=self._busy)
            self.draining.set()
        else:
            self.log("stopping", mode="abort", running=self._busy)
            self.draining.set()
            self.aborting.set()
        with self._lock:
            self._slots_changed.notify_all()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())

    def _supervise(self, poller: threading.Thread) -> None:
        drain_started = None
        while True:
            if self.fatal:
                self.aborting.set()
                self.draining.set()
                return
            if self.draining.is_set():
                drain_started = drain_started or self.clock()
                with self._lock:
                    busy = self._busy
                if busy == 0 and not poller.is_alive():
                    return
                if self.aborting.is_set() or self.clock() - drain_started >= self.c.grace_s:
                    self.aborting.set()
                    return
            elif self.finished.is_set():
                with self._lock:
                    if self._busy == 0:
                        return
            time.sleep(0.05)

    def _shutdown(self, poller: threading.Thread) -> None:
        self.draining.set()
        with self._lock:
            self._slots_changed.notify_all()
        if self.aborting.is_set():
            # Stop running jobs now; their threads release the messages (visibility 0).
            with self._lock:
                running = list(self._running.values())
            for r in running:
                r.cancel.set()
            deadline = self.clock() + 15
            while self.clock() < deadline:
                with self._lock:
                    if self._busy == 0:
                        break
                time.sleep(0.05)
            # A handler cannot be killed: release what is still running; the job thread dies with us.
            with self._lock:
                stuck = list(self._running.values())
            for r in stuck:
                self._release(r, 0, "shutdown")
        # The poller returns within one long poll and releases what it received meanwhile.
        poller.join(timeout=1 if self.aborting.is_set() else self.c.wait_time_s + 10)
        for _ in range(self.c.concurrency * 2):
            self._work.put(None)
        self._deletes.put(None)
        self._delete_done.wait(timeout=30)
        if self.protector:
            self.protector.set_busy(False)

    # ------------------------------------------------------------------ polling

    def _wanted(self) -> int:
        """How many messages to ask for: free slots (≤ 10), waiting briefly to fill a batch.

        A job holds its slot from receipt until its command exits; its upload and delete then go
        on beside the next job (up to ``concurrency`` of them), so a slot never waits for a
        round trip to S3 — and no message is ever received without a slot to run it at once.
        """
        target_cap = 10
        if self.c.max_jobs is not None:
            target_cap = min(target_cap, self.c.max_jobs - self._dispatched)
        with self._lock:
            deadline = self.clock() + self.c.batch_linger_s
            while not self.draining.is_set():
                free = min(self.c.concurrency - self._in_slot, 2 * self.c.concurrency - self._busy)
                target = min(target_cap, self.c.concurrency)
                if free >= target or (free > 0 and self.clock() >= deadline):
                    return min(free, target_cap)
                self._slots_changed.wait(timeout=0.05 if free > 0 else 0.5)
        return 0

    def _poll_loop(self) -> None:
        backoff = 0.5
        while not self.draining.is_set():
            if self.c.max_jobs is not None and self._dispatched >= self.c.max_jobs:
                self.finished.set()
                return
            want = self._wanted()
            if want <= 0:
                continue
            wait_s = self.c.wait_time_s
            if self.c.exit_when_idle_s is not None:
                idle_left = self.c.exit_when_idle_s - (self.clock() - self._last_activity)
                wait_s = max(0, min(wait_s, int(idle_left + 0.999)))
            try:
                response = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=want, WaitTimeSeconds=wait_s,
                    VisibilityTimeout=self.visibility_timeout_s,
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"])
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001
                if aws.is_fatal(exc):
                    self.fatal = exc
                    return
                self.log("error", during="receive", error=aws.describe(exc), retry_in_s=round(backoff, 1))
                self.draining.wait(backoff)
                backoff = min(30.0, backoff * 2)
                if self._idle_long_enough():
                    return
                continue
            messages = response.get("Messages", [])
            if self.draining.is_set():
                for m in messages:
                    self._change_visibility(m["ReceiptHandle"], 0, key=None)
                    self.stats.released += 1
                return
            if not messages:
                if self._idle_long_enough():
                    return
                if wait_s == 0:
                    # Short polling answers at once; don't turn an empty queue into a request storm.
                    self.draining.wait(0.2)
                continue
            with self._lock:
                self._busy += len(messages)
                self._in_slot += len(messages)
                self._dispatched += len(messages)
                self._last_activity = self.clock()
            if self.protector:
                self.protector.set_busy(True)
            for m in messages:
                self.stats.received += 1
                self._work.put(m)

    def _idle_long_enough(self) -> bool:
        """--exit-when-idle: no job running and no message for that long (errors count as none)."""
        with self._lock:
            idle = self._busy == 0
        if idle and self.c.exit_when_idle_s is not None and self.clock() - self._last_activity >= self.c.exit_when_idle_s:
            self.log("idle", seconds=self.c.exit_when_idle_s)
            self.finished.set()
            return True
        return False

    # ------------------------------------------------------------------ one job

    def _job_loop(self) -> None:
        while True:
            m = self._work.get()
            if m is None:
                return
            attempt = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            now = self.clock()
            r = _Running(message_id=m["MessageId"], receipt=m["ReceiptHandle"], attempt=attempt,
                         received_at=now, extended_at=now)
            try:
                self._handle(m, r)
            except Exception as exc:  # noqa: BLE001 - a job never takes the worker down
                self.log("error", during="job", error=aws.describe(exc))
            finally:
                self._free_slot(r)
                with self._lock:
                    self._running.pop(m["MessageId"], None)
                    self._busy -= 1
                    self._last_activity = self.clock()
                    idle = self._busy == 0
                    self._slots_changed.notify_all()
                if idle and self.protector:
                    self.protector.set_busy(False)

    def _free_slot(self, r: _Running) -> None:
        with self._lock:
            if not r.slot_freed:
                r.slot_freed = True
                self._in_slot -= 1
                self._slots_changed.notify_all()

    def _handle(self, m: dict, r: _Running) -> None:
        attempt = r.attempt
        try:
            job = message.decode(m.get("Body", ""))
            message.authorize(job, self.c.allowed)
            output_key = job.output_key(self.c.extension)
            message.check_key(output_key, label="output key")
        except MessageError as exc:
            self._reject(m, r, str(exc))
            return
        r.key = job.input_key
        with self._lock:
            self._running[r.message_id] = r
        if self.aborting.is_set():
            self._release(r, 0, "shutdown")
            return
        self.log("received", key=job.input_key, attempt=attempt, batch=job.batch_id)
        started = self.clock()
        if attempt > 1 and self._already_done(job, output_key):
            self._finish(r, "skipped", reason="output exists for this input version", started=started)
            return
        job_dir = tempfile.mkdtemp(prefix=f"job-{os.getpid()}-", dir=self.c.work_dir)  # mode 0700
        try:
            self._run_job(job, output_key, r, job_dir, started)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _run_job(self, job: Job, output_key: str, r: _Running, job_dir: str, started: float) -> None:
        in_dir, out_dir = os.path.join(job_dir, "in"), os.path.join(job_dir, "out")
        os.mkdir(in_dir)
        os.mkdir(out_dir)
        input_path = os.path.join(in_dir, message.safe_local_name(job.relative_name))
        output_path = os.path.join(out_dir, message.safe_local_name(job.relative_name, self.c.extension))
        try:
            head = get_to_file(self.s3, job.bucket, job.input_key, input_path, if_match=job.etag)
        except Exception as exc:  # noqa: BLE001
            code = aws.error_code(exc)
            if code in ("PreconditionFailed", "412"):
                # The object was replaced after this job was sent; the newer upload has a job of its own.
                self._finish(r, "skipped", reason="input changed since the job was sent", started=started)
                return
            if code in ("NoSuchKey", "404"):
                reason = "input object is missing"
            elif code in ("AccessDenied", "403"):
                # Without s3:ListBucket on the input prefix, S3 answers 403 for a missing key too.
                reason = "input object is missing or not readable (403)"
            else:
                reason = f"download failed: {aws.describe(exc)}"
            self._fail(job, r, RunResult(False, reason=reason), started)
            return
        if job.version_id and head.get("VersionId") and head["VersionId"] != job.version_id:
            # A versioned bucket: the current version is not the one this job was sent for.
            self._finish(r, "skipped", reason="input changed since the job was sent", started=started)
            return
        input_etag = (job.etag or head.get("ETag") or "").strip('"')
        self.log("started", key=job.input_key, attempt=r.attempt)
        result = self.runner.run(input_path, output_path, cwd=job_dir, timeout_s=self.c.job_timeout_s,
                                 cancel=r.cancel)
        self._free_slot(r)  # the upload goes on beside the next job
        if result.cancelled or (self.aborting.is_set() and not result.ok):
            self._release(r, 0, "shutdown")
            return
        if not result.ok:
            self._fail(job, r, result, started)
            return
        if not os.path.lexists(output_path):
            self._fail(job, r, RunResult(False, exit_code=0, reason="the command exited 0 but wrote no output",
                                         stderr_tail=result.stderr_tail), started)
            return
        if os.path.islink(output_path):
            self._fail(job, r, RunResult(False, reason="the output is a symlink; refusing to follow it"), started)
            return
        metadata = {META_INPUT_ETAG: input_etag}
        if job.batch_id:
            metadata[META_BATCH] = job.batch_id
        try:
            outcome = self._upload_output(job.bucket, output_key, output_path, metadata)
        except Exception as exc:  # noqa: BLE001
            self._fail(job, r, RunResult(False, reason=f"upload failed: {aws.describe(exc)}"), started)
            return
        self._finish(r, "done" if outcome != "duplicate" else "skipped", started=started,
                     output=output_key, reason=None if outcome != "duplicate" else "a duplicate delivery wrote it first")

    # ------------------------------------------------------------------ outputs

    def _upload_output(self, bucket: str, output_key: str, output_path: str, metadata: dict) -> str:
        """Upload a file, or every file of a directory under ``output_key/``. Create-only writes
        (If-None-Match) make a concurrent duplicate a cheap no-op; "duplicate" if all were."""
        if os.path.isdir(output_path):
            outcomes = []
            for root, dirs, files in os.walk(output_path):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(root, name)
                    if os.path.islink(path):
                        continue
                    rel = os.path.relpath(path, output_path).replace(os.sep, "/")
                    key = f"{output_key}/{rel}"
                    message.check_key(key, label="output key")
                    outcomes.append(self._put_once(bucket, key, path, metadata))
            if not outcomes:
                raise IOError("the command wrote an empty output directory")
            return "duplicate" if all(o == "duplicate" for o in outcomes) else "written"
        return self._put_once(bucket, output_key, output_path, metadata)

    def _put_once(self, bucket: str, key: str, path: str, metadata: dict) -> str:
        try:
            put_file(self.s3, path, bucket, key, config=self.c.transfer, metadata=metadata, if_none_match=True)
            return "written"
        except Exception as exc:  # noqa: BLE001
            if aws.error_code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise
        # The key exists: the same input version means a duplicate; an older one is replaced,
        # but only if it is still the object we looked at (If-Match).
        head = self.s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(META_INPUT_ETAG) == metadata[META_INPUT_ETAG]:
            return "duplicate"
        put_file(self.s3, path, bucket, key, config=self.c.transfer, metadata=metadata, if_match=head["ETag"])
        return "written"

    def _already_done(self, job: Job, output_key: str) -> bool:
        """On a redelivery only: does an output for this very input version exist?"""
        try:
            want = (job.etag or self.s3.head_object(Bucket=job.bucket, Key=job.input_key)["ETag"]).strip('"')
            try:
                head = self.s3.head_object(Bucket=job.bucket, Key=output_key)
            except Exception as exc:  # noqa: BLE001
                # 403 too: the worker may not list the whole bucket, and S3 then hides a missing key
                # behind AccessDenied (HEAD has no s3:prefix). The listing below is allowed.
                if aws.error_code(exc) not in ("404", "NoSuchKey", "NotFound", "403", "AccessDenied"):
                    raise
                listing = self.s3.list_objects_v2(Bucket=job.bucket, Prefix=output_key + "/", MaxKeys=1)
                if not listing.get("Contents"):
                    return False
                head = self.s3.head_object(Bucket=job.bucket, Key=listing["Contents"][0]["Key"])
            return head.get("Metadata", {}).get(META_INPUT_ETAG) == want
        except Exception:  # noqa: BLE001 - when in doubt, run the job (outputs are create-only)
            return False

    # ------------------------------------------------------------------ endings

    def _finish(self, r: _Running, event: str, *, started: float, reason: str | None = None,
                output: str | None = None) -> None:
        with self._lock:
            self._running.pop(r.message_id, None)
        self._deletes.put(r)
        duration = self.clock() - started
        if event == "done":
            self.stats.done += 1
        else:
            self.stats.skipped += 1
        self.log(event, key=r.key, attempt=r.attempt, duration_s=round(duration, 3), output=output, reason=reason)
        self._metric(event, duration)

    def retry_delay_s(self, attempt: int) -> int:
        """Exponential backoff from the receive count, with ±20 % jitter, capped."""
        base = min(self.c.retry_max_s, self.c.retry_base_s * 2 ** max(0, attempt - 1))
        return int(min(MAX_VISIBILITY_S - 1, max(0, base * random.uniform(0.8, 1.2))))

    def _fail(self, job: Job, r: _Running, result: RunResult, started: float) -> None:
        with self._lock:
            self._running.pop(r.message_id, None)
        self.stats.failed += 1
        duration = self.clock() - started
        final = self.max_receive_count is not None and r.attempt >= self.max_receive_count
        delay = 0 if final else self.retry_delay_s(r.attempt)
        self.log("failed", key=job.input_key, attempt=r.attempt, duration_s=round(duration, 3),
                 reason=result.reason, exit_code=result.exit_code,
                 next=("dead-letter queue" if final else f"retry in {delay}s"))
        if final:
            self._record_error(job, r, result)
        # Visibility 0 on the last attempt: the next receive moves it to the DLQ (SQS redrive).
        self._change_visibility(r.receipt, delay, key=job.input_key)
        self._metric("failed", duration)

    def _record_error(self, job: Job, r: _Running, result: RunResult) -> None:
        key = message.error_key(self.c.errors_prefix, job.batch_id, job.relative_name)
        body = json.dumps({"input_key": job.input_key, "batch_id": job.batch_id, "attempts": r.attempt,
                           "exit_code": result.exit_code, "reason": result.reason,
                           "stderr_tail": result.stderr_tail, "message_id": r.message_id,
                           "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, ensure_ascii=False)
        try:
            self.s3.put_object(Bucket=job.bucket, Key=key, Body=body.encode("utf-8"),
                               ContentType="application/json")
        except Exception as exc:  # noqa: BLE001 - the DLQ still gets the message
            self.log("warning", key=job.input_key, reason=f"could not record the failure: {aws.describe(exc)}")

    def _reject(self, m: dict, r: _Running, reason: str) -> None:
        """A message that can never succeed: straight to the dead-letter queue, S3 untouched."""
        self.stats.rejected += 1
        self.log("rejected", message_id=r.message_id, attempt=r.attempt, reason=reason)
        if self.dlq_url is None:
            self._change_visibility(r.receipt, int(self.c.retry_max_s), key=None)
            return
        try:
            self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=m.get("Body") or "(empty)",
                                  MessageAttributes={"filejobs-reject-reason": {
                                      "DataType": "String", "StringValue": reason[:1000]}})
        except Exception as exc:  # noqa: BLE001 - leave it to SQS's redrive after maxReceiveCount
            self.log("warning", message_id=r.message_id, reason=f"could not move to the DLQ: {aws.describe(exc)}")
            self._change_visibility(r.receipt, self.retry_delay_s(r.attempt), key=None)
            return
        self._deletes.put(r)

    def _release(self, r: _Running, delay: int, why: str) -> None:
        with self._lock:
            self._running.pop(r.message_id, None)
        self.stats.released += 1
        self.log("released", key=r.key, attempt=r.attempt, reason=why)
        self._change_visibility(r.receipt, delay, key=r.key)

    def _change_visibility(self, receipt: str, seconds: int, *, key) -> None:
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt,
                                               VisibilityTimeout=int(seconds))
        except Exception as exc:  # noqa: BLE001 - the message reappears after its timeout anyway
            self.log("warning", key=key, reason=f"could not change visibility: {aws.describe(exc)}")

    def _metric(self, event: str, duration: float) -> None:
        names = {"done": "JobsDone", "skipped": "JobsSkipped", "failed": "JobsFailed"}
        self.log.metric(names.get(event, "Jobs"), duration_s=duration)

    # ------------------------------------------------------------------ heartbeat

    def _heartbeat_loop(self) -> None:
        tick = min(1.0, self.heartbeat_s / 4)
        while not self._delete_done.is_set():
            time.sleep(tick)
            now = self.clock()
            with self._lock:
                due = [r for r in self._running.values() if now - r.extended_at >= self.heartbeat_s]
            for i in range(0, len(due), 10):
                self._extend(due[i:i + 10], now)

    def _extend(self, batch: list[_Running], now: float) -> None:
        entries = []
        for r in batch:
            left = MAX_VISIBILITY_S - (now - r.received_at)
            timeout = int(min(self.visibility_timeout_s, left))
            if timeout <= 0:
                continue
            entries.append({"Id": str(len(entries)), "ReceiptHandle": r.receipt, "VisibilityTimeout": timeout})
        if not entries:
            return
        try:
            response = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as exc:  # noqa: BLE001 - try again next tick; the deadline has margin
            self.log("warning", during="heartbeat", reason=aws.describe(exc))
            return
        failed = {f["Id"] for f in response.get("Failed", [])}
        for i, r in enumerate(batch[:len(entries)]):
            if str(i) in failed:
                self.log("warning", key=r.key, reason="heartbeat refused (message no longer ours)")
                continue
            r.extended_at = now
            self.stats.heartbeats += 1
            self.log("heartbeat", key=r.key, attempt=r.attempt, running_s=round(now - r.received_at, 1),
                     visibility_s=entries[i]["VisibilityTimeout"])

    # ------------------------------------------------------------------ deleter

    def _delete_loop(self) -> None:
        """Batch deletes: a batch goes out when it has 10 entries, when no other job is running
        that could add to it, or after ``delete_max_linger_s`` (well inside any visibility timeout)."""
        pending: list[_Running] = []
        first_at = 0.0
        max_linger = min(1.0, self.visibility_timeout_s / 10)
        while True:
            try:
                item = self._deletes.get(timeout=0.02 if pending else None)
            except queue_mod.Empty:
                item = False
            if item is None:
                while pending:
                    self._delete_batch(pending[:10])
                    pending = pending[10:]
                break
            if item is not False:
                if not pending:
                    first_at = self.clock()
                pending.append(item)
            if not pending:
                continue
            with self._lock:
                others_running = self._busy > len(pending)
            if len(pending) >= 10 or (item is False and (not others_running or self.clock() - first_at >= max_linger)):
                self._delete_batch(pending[:10])
                pending = pending[10:]
                first_at = self.clock()
        self._delete_done.set()

    def _delete_batch(self, batch: list[_Running]) -> None:
        todo = dict(enumerate(batch))
        for attempt in range(5):
            try:
                response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": r.receipt} for i, r in todo.items()])
            except Exception as exc:  # noqa: BLE001
                if aws.is_fatal(exc):
                    self.fatal = self.fatal or exc
                    return
                self.log("warning", during="delete", reason=aws.describe(exc))
                time.sleep(min(5, 0.2 * 2 ** attempt))
                continue
            for ok in response.get("Successful", []):
                todo.pop(int(ok["Id"]), None)
            retry = {}
            for f in response.get("Failed", []):
                r = todo.get(int(f["Id"]))
                if r is None:
                    continue
                if f.get("SenderFault"):
                    # Usually the receipt expired and the message was redelivered: that duplicate
                    # finds the output and is skipped.
                    self.log("warning", key=r.key, reason=f"delete failed: {f.get('Code')}")
                else:
                    retry[int(f["Id"])] = r
            todo = retry
            if not todo:
                return
            time.sleep(min(5, 0.2 * 2 ** attempt))
        for r in todo.values():
            self.log("warning", key=r.key, reason="delete kept failing; the redelivery will be skipped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_heartbeat(heartbeat_s: float, visibility_timeout_s: int) -> None:
    """A heartbeat must come well before the visibility timeout runs out (a request can take
    seconds under throttling): at most half of it."""
    if heartbeat_s <= 0 or heartbeat_s * 2 > visibility_timeout_s:
        raise FatalWorkerError(
            f"heartbeat interval {heartbeat_s:g}s is not safely below the visibility timeout "
            f"{visibility_timeout_s}s (it must be at most half of it)")


def _queue_url_from_arn(arn: str, sibling_url: str) -> str:
    """arn:aws:sqs:REGION:ACCOUNT:NAME → the URL, built beside the main queue's (same endpoint)."""
    parts = arn.split(":")
    account, name = parts[4], parts[5]
    base = sibling_url.rsplit("/", 2)[0]
    return f"{base}/{account}/{name}"
