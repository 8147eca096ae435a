"""One message's jobs: read -> (per job) download -> run -> upload, in a private folder
(folders.py). Makes no SQS call: it returns an ``Outcome`` and ``settle`` does what that means for
the message.

What a body asks for is ``intake.read``'s decision (pure); here each job is only done. A message
with several jobs (an S3 event may batch records) settles once: done when every job is done,
duplicate or stale; if one fails, the message is released and its redelivery skips the jobs that are
done (their outputs exist for the same input version).

Outputs are written create-only (``If-None-Match: *``) with the input's ETag as metadata, so a
duplicate delivery's write is a no-op and a redelivery can see that the job was already done:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
"""

from __future__ import annotations

import enum
import os
import stat
import time
from typing import Callable

from .. import aws, intake, message
from ..command import JobContext
from ..events import EventLog
from ..intake import Ask
from ..message import Job
from .config import WorkerConfig
from .folders import Folders, remove
from .inflight import Inflight, Lease
from .outcome import Kind, Outcome
from .transfers import Transfers

META_INPUT_ETAG = "filejobs-input-etag"
META_BATCH = "filejobs-batch"
#: Rounds of "the output changed while we replaced it" before the job fails and is retried.
REPLACE_ROUNDS = 3


class Write(enum.Enum):
    WRITTEN = "written"
    DUPLICATE = "duplicate"  # the same input version's output was already there
    STALE = "stale"  # the output belongs to a newer input version: left alone


class Handler:
    def __init__(self, config: WorkerConfig, s3, runner, inflight: Inflight, *, log: EventLog,
                 clock: Callable[[], float] = time.monotonic, folders: Folders | None = None,
                 transfers: Transfers | None = None):
        """``transfers``: how inputs and outputs move (botocore through transfer.py by default)."""
        self.c = config
        self.s3 = s3
        self.transfers = transfers or Transfers(s3, config=config.transfer)
        self.runner = runner
        self.inflight = inflight
        self.log = log
        self.clock = clock
        self.folders = folders or Folders(config.work_dir, log=log)

    def close(self) -> None:
        """Remove the job folders (the worker is stopping)."""
        self.folders.close()
        self.transfers.close()

    def handle(self, lease: Lease) -> Outcome:
        """What became of ``lease``'s jobs; never raises (an unexpected error is a failure)."""
        request = intake.read(lease.body, allowed=self.c.allowed, extension=self.c.extension)
        if request.ask is Ask.REJECTED:
            return Outcome.rejected(request.reason)
        if request.ask is Ask.NOTHING:
            return Outcome.ignored(request.reason)
        lease.job = request.jobs[0]
        if lease.cancel.is_set():
            return Outcome.cancelled()
        if request.reason:
            self.log("ignored", message_id=lease.message_id, reason=request.reason)
        started = self.clock()
        ends: list[tuple[Job, Outcome]] = []
        for n, job in enumerate(request.jobs, 1):
            lease.job = job
            outcome = self._guarded(job, lease, last=n == len(request.jobs))
            if outcome.kind is Kind.CANCELLED:
                return outcome.timed(self.clock() - started)
            if len(request.jobs) > 1:
                self.log("record", key=job.input_key, result=outcome.kind.value, output=outcome.output,
                         reason=outcome.reason or None)
            ends.append((job, outcome))
        lease.job, outcome = combine(ends)
        return outcome.timed(self.clock() - started)

    def _guarded(self, job: Job, lease: Lease, *, last: bool) -> Outcome:
        if lease.cancel.is_set():
            return Outcome.cancelled()
        self.log("received", key=job.input_key, attempt=lease.attempt, batch=job.batch_id)
        try:
            return self._run(job, job.output_key(self.c.extension), lease, last=last)
        except Exception as exc:  # noqa: BLE001 - a job never takes the worker down
            self.log("error", during="job", error=aws.describe(exc))
            return Outcome.failed(f"internal error: {aws.describe(exc)}")

    def _run(self, job: Job, output_key: str, lease: Lease, *, last: bool) -> Outcome:
        if lease.attempt > 1 and self._already_done(job, output_key):
            return Outcome.duplicate("output exists for this input version")
        with self.folders.job() as job_dir:  # held until the upload is over
            return self._in_folder(job, output_key, lease, job_dir, last=last)

    def _in_folder(self, job: Job, output_key: str, lease: Lease, job_dir: str, *, last: bool) -> Outcome:
        in_dir, out_dir = os.path.join(job_dir, "in"), os.path.join(job_dir, "out")
        input_path = os.path.join(in_dir, message.safe_local_name(job.relative_name))
        output_path = os.path.join(out_dir, message.safe_local_name(job.relative_name, self.c.extension))
        fetched = self._download(job, input_path)
        if isinstance(fetched, Outcome):
            return fetched
        self.log("started", key=job.input_key, attempt=lease.attempt)
        context = JobContext(bucket=job.bucket, input_key=job.input_key, output_key=output_key,
                             batch_id=job.batch_id, attempt=lease.attempt, message_id=lease.message_id)
        result = self.runner.run(input_path, output_path, cwd=job_dir, timeout_s=self.c.job_timeout_s,
                                 cancel=lease.cancel, context=context)
        if last:
            self.inflight.free_slot(lease)  # the upload goes on beside the next job
        if result.cancelled or (lease.cancel.is_set() and not result.ok):
            return Outcome.cancelled()
        if not result.ok:
            return Outcome.failed(result.reason, exit_code=result.exit_code, stderr_tail=result.stderr_tail)
        problem, info = _inspect_output(output_path)
        if problem:
            return Outcome.failed(problem, exit_code=0, stderr_tail=result.stderr_tail)
        metadata = {META_INPUT_ETAG: (job.etag or fetched.get("ETag") or "").strip('"')}
        if job.batch_id:
            metadata[META_BATCH] = job.batch_id
        try:
            written = self._upload(job, output_key, output_path, metadata, info)
        except Exception as exc:  # noqa: BLE001
            return Outcome.failed(f"upload failed: {aws.describe(exc)}")
        if written is Write.DUPLICATE:
            return Outcome.duplicate("a duplicate delivery wrote it first", output=output_key)
        if written is Write.STALE:
            return Outcome.stale("a newer version of the input replaced it; its output is kept")
        return Outcome.done(output_key)

    def _download(self, job: Job, input_path: str) -> dict | Outcome:
        """The input's headers once it is at ``input_path``, or why the job ends here."""
        try:
            head = self.transfers.get(job.bucket, job.input_key, input_path, if_match=job.etag, size=job.size)
        except Exception as exc:  # noqa: BLE001
            if aws.is_precondition_failed(exc):
                # The object was replaced after this job was sent; the newer upload has a job of its own.
                return Outcome.stale()
            if aws.is_not_found(exc):
                return Outcome.failed("input object is missing")
            if aws.is_denied(exc):
                # Without s3:ListBucket on the input prefix, S3 answers 403 for a missing key too.
                return Outcome.failed("input object is missing or not readable (403)")
            return Outcome.failed(f"download failed: {aws.describe(exc)}")
        if job.version_id and head.get("VersionId") and head["VersionId"] != job.version_id:
            # A versioned bucket: the current version is not the one this job was sent for.
            return Outcome.stale()
        return head

    # ------------------------------------------------------------------ outputs

    def _upload(self, job: Job, output_key: str, output_path: str, metadata: dict, info: os.stat_result) -> Write:
        """Upload a file, or every file of a directory under ``output_key/``. DUPLICATE when every
        write found the same input version's output already there; STALE as soon as one found the
        output of a newer input version (nothing more is written then)."""
        if not stat.S_ISDIR(info.st_mode):
            return self._put_once(job, output_key, output_path, metadata, size=info.st_size)
        written = []
        for key, path in _directory_files(output_key, output_path):
            message.check_key(key, label="output key")
            outcome = self._put_once(job, key, path, metadata)
            if outcome is Write.STALE:
                return outcome
            written.append(outcome)
        return Write.WRITTEN if Write.WRITTEN in written else Write.DUPLICATE

    def _put_once(self, job: Job, key: str, path: str, metadata: dict, *, size: int | None = None) -> Write:
        """Create ``key``; if it exists, replace it only with the output of the input's *current*
        version. Two jobs for two versions of one input can finish in any order: the older one,
        finishing last, must not overwrite the newer one's output (it is stale, and skipped)."""
        mine = metadata[META_INPUT_ETAG]
        try:
            self.transfers.put(path, job.bucket, key, metadata=metadata, if_none_match=True, size=size)
            return Write.WRITTEN
        except Exception as exc:  # noqa: BLE001
            if not aws.is_precondition_failed(exc):
                raise
        for _ in range(REPLACE_ROUNDS):
            head = self.s3.head_object(Bucket=job.bucket, Key=key)
            if head.get("Metadata", {}).get(META_INPUT_ETAG) == mine:
                return Write.DUPLICATE
            if not self._input_is_current(job, mine):
                return Write.STALE
            try:
                # If-Match: only the output we looked at; a newer job's write in between wins.
                self.transfers.put(path, job.bucket, key, metadata=metadata, if_match=head["ETag"], size=size)
                return Write.WRITTEN
            except Exception as exc:  # noqa: BLE001
                if not aws.is_precondition_failed(exc):
                    raise
        raise IOError(f"the output {message.printable(key)} kept changing while it was being replaced")

    def _input_is_current(self, job: Job, etag: str) -> bool:
        """Is this job's input version still the input's current one? A deleted input is not."""
        try:
            head = self.s3.head_object(Bucket=job.bucket, Key=job.input_key)
        except Exception as exc:  # noqa: BLE001
            if aws.is_not_found(exc):
                return False
            raise
        if job.version_id and head.get("VersionId") and head["VersionId"] != job.version_id:
            return False
        return head.get("ETag", "").strip('"') == etag

    def _already_done(self, job: Job, output_key: str) -> bool:
        """On a redelivery only: does an output for this very input version exist?"""
        try:
            want = (job.etag or self.s3.head_object(Bucket=job.bucket, Key=job.input_key)["ETag"]).strip('"')
            try:
                head = self.s3.head_object(Bucket=job.bucket, Key=output_key)
            except Exception as exc:  # noqa: BLE001
                # 403 too: the worker may not list the whole bucket, and S3 then hides a missing key
                # behind AccessDenied (HEAD has no s3:prefix). The listing below is allowed.
                if not (aws.is_not_found(exc) or aws.is_denied(exc)):
                    raise
                listing = self.s3.list_objects_v2(Bucket=job.bucket, Prefix=output_key + "/", MaxKeys=1)
                if not listing.get("Contents"):
                    return False
                head = self.s3.head_object(Bucket=job.bucket, Key=listing["Contents"][0]["Key"])
            return head.get("Metadata", {}).get(META_INPUT_ETAG) == want
        except Exception:  # noqa: BLE001 - when in doubt, run the job (outputs are create-only)
            return False


def combine(ends: list[tuple[Job, Outcome]]) -> tuple[Job, Outcome]:
    """One message's outcome from its jobs' (in order), and the job it is about: the first failure
    if any (its message is retried; the done ones are duplicates then), else done if one was."""
    failed = [(job, o) for job, o in ends if o.kind is Kind.FAILED]
    if failed:
        job, first = failed[0]
        if len(ends) == 1:
            return job, first
        why = f"{len(failed)} of {len(ends)} jobs failed, first {message.printable(job.input_key)}: {first.reason}"
        return job, Outcome.failed(why, exit_code=first.exit_code, stderr_tail=first.stderr_tail)
    done = [(job, o) for job, o in ends if o.kind is Kind.DONE]
    return done[0] if done else ends[0]


def _inspect_output(output_path: str) -> tuple[str | None, os.stat_result | None]:
    """Why a command that exited 0 left nothing to upload (None if it did), and what it left: one
    ``lstat`` (a symlink is never followed)."""
    try:
        info = os.lstat(output_path)
    except FileNotFoundError:
        return "the command exited 0 but wrote no output", None
    if stat.S_ISLNK(info.st_mode):
        return "the output is a symlink; refusing to follow it", None
    if stat.S_ISDIR(info.st_mode):
        if not any(True for _ in _directory_files("", output_path)):
            return "the command wrote no file in its output directory", None
    elif not stat.S_ISREG(info.st_mode):
        return "the output is not a regular file or a directory", None
    return None, info


def _directory_files(output_key: str, folder: str):
    """(key, path) of each regular file below ``folder`` (symlinks are never followed), sorted."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if not os.path.islink(path):
                yield f"{output_key}/{os.path.relpath(path, folder).replace(os.sep, '/')}", path


def remove_stale_job_dirs(work_dir: str, log: EventLog) -> None:
    """Folders left by a worker that was killed (SIGKILL, OOM): ``job-<pid>-…`` whose process is
    gone. Several workers may share WORK_DIR, so only dead owners' folders are removed."""
    for entry in os.scandir(work_dir):
        parts = entry.name.split("-", 2)
        if len(parts) != 3 or parts[0] != "job" or not parts[1].isdigit() or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _alive(pid):
            continue
        remove(entry.path)
        log("cleaned", folder=entry.name, reason="left by a worker that is no longer running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
