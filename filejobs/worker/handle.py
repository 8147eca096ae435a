"""One message's job: decode -> download -> run -> upload, in a private folder. Makes no SQS
call: it returns an ``Outcome`` and ``settle`` does what that means for the message.

Outputs are written create-only (``If-None-Match: *``) with the input's ETag as metadata, so a
duplicate delivery's write is a no-op and a redelivery can see that the job was already done:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Callable

from .. import aws, message
from ..events import EventLog
from ..message import Job, MessageError
from ..transfer import get_to_file, put_file
from .config import WorkerConfig
from .inflight import Inflight, Lease
from .outcome import Outcome

META_INPUT_ETAG = "filejobs-input-etag"
META_BATCH = "filejobs-batch"


class Handler:
    def __init__(self, config: WorkerConfig, s3, runner, inflight: Inflight, *, log: EventLog,
                 clock: Callable[[], float] = time.monotonic):
        self.c = config
        self.s3 = s3
        self.runner = runner
        self.inflight = inflight
        self.log = log
        self.clock = clock

    def handle(self, lease: Lease) -> Outcome:
        """What became of ``lease``'s job; never raises (an unexpected error is a failure)."""
        try:
            job = message.decode(lease.body)
            message.authorize(job, self.c.allowed)
            output_key = job.output_key(self.c.extension)
            message.check_key(output_key, label="output key")
        except MessageError as exc:
            return Outcome.rejected(str(exc))
        lease.job = job
        if lease.cancel.is_set():
            return Outcome.cancelled()
        self.log("received", key=job.input_key, attempt=lease.attempt, batch=job.batch_id)
        started = self.clock()
        try:
            outcome = self._run(job, output_key, lease)
        except Exception as exc:  # noqa: BLE001 - a job never takes the worker down
            self.log("error", during="job", error=aws.describe(exc))
            outcome = Outcome.failed(f"internal error: {aws.describe(exc)}")
        return outcome.timed(self.clock() - started)

    def _run(self, job: Job, output_key: str, lease: Lease) -> Outcome:
        if lease.attempt > 1 and self._already_done(job, output_key):
            return Outcome.duplicate("output exists for this input version")
        job_dir = tempfile.mkdtemp(prefix=f"job-{os.getpid()}-", dir=self.c.work_dir)  # mode 0700
        try:
            return self._in_folder(job, output_key, lease, job_dir)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _in_folder(self, job: Job, output_key: str, lease: Lease, job_dir: str) -> Outcome:
        in_dir, out_dir = os.path.join(job_dir, "in"), os.path.join(job_dir, "out")
        os.mkdir(in_dir)
        os.mkdir(out_dir)
        input_path = os.path.join(in_dir, message.safe_local_name(job.relative_name))
        output_path = os.path.join(out_dir, message.safe_local_name(job.relative_name, self.c.extension))
        fetched = self._download(job, input_path)
        if isinstance(fetched, Outcome):
            return fetched
        self.log("started", key=job.input_key, attempt=lease.attempt)
        result = self.runner.run(input_path, output_path, cwd=job_dir, timeout_s=self.c.job_timeout_s,
                                 cancel=lease.cancel)
        self.inflight.free_slot(lease)  # the upload goes on beside the next job
        if result.cancelled or (lease.cancel.is_set() and not result.ok):
            return Outcome.cancelled()
        if not result.ok:
            return Outcome.failed(result.reason, exit_code=result.exit_code, stderr_tail=result.stderr_tail)
        if not os.path.lexists(output_path):
            return Outcome.failed("the command exited 0 but wrote no output", exit_code=0,
                                  stderr_tail=result.stderr_tail)
        if os.path.islink(output_path):
            return Outcome.failed("the output is a symlink; refusing to follow it")
        metadata = {META_INPUT_ETAG: (job.etag or fetched.get("ETag") or "").strip('"')}
        if job.batch_id:
            metadata[META_BATCH] = job.batch_id
        try:
            written = self._upload(job.bucket, output_key, output_path, metadata)
        except Exception as exc:  # noqa: BLE001
            return Outcome.failed(f"upload failed: {aws.describe(exc)}")
        if not written:
            return Outcome.duplicate("a duplicate delivery wrote it first", output=output_key)
        return Outcome.done(output_key)

    def _download(self, job: Job, input_path: str) -> dict | Outcome:
        """The input's headers once it is at ``input_path``, or why the job ends here."""
        try:
            head = get_to_file(self.s3, job.bucket, job.input_key, input_path, if_match=job.etag)
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

    def _upload(self, bucket: str, output_key: str, output_path: str, metadata: dict) -> bool:
        """Upload a file, or every file of a directory under ``output_key/``; False when every
        write found the same input version's output already there (a duplicate delivery)."""
        if not os.path.isdir(output_path):
            return self._put_once(bucket, output_key, output_path, metadata)
        written = []
        for root, dirs, files in os.walk(output_path):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                if os.path.islink(path):
                    continue
                key = f"{output_key}/{os.path.relpath(path, output_path).replace(os.sep, '/')}"
                message.check_key(key, label="output key")
                written.append(self._put_once(bucket, key, path, metadata))
        if not written:
            raise IOError("the command wrote an empty output directory")
        return any(written)

    def _put_once(self, bucket: str, key: str, path: str, metadata: dict) -> bool:
        try:
            put_file(self.s3, path, bucket, key, config=self.c.transfer, metadata=metadata, if_none_match=True)
            return True
        except Exception as exc:  # noqa: BLE001
            if not aws.is_precondition_failed(exc):
                raise
        # The key exists: the same input version means a duplicate; an older one is replaced,
        # but only if it is still the object we looked at (If-Match).
        head = self.s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(META_INPUT_ETAG) == metadata[META_INPUT_ETAG]:
            return False
        put_file(self.s3, path, bucket, key, config=self.c.transfer, metadata=metadata, if_match=head["ETag"])
        return True

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
        shutil.rmtree(entry.path, ignore_errors=True)
        log("cleaned", folder=entry.name, reason="left by a worker that is no longer running")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
