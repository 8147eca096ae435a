"""The upload side of a Pipeline over the AWS CRT (filejobs.crt): small files (up to
``in_memory_max``, 1 MiB) go up as CRT requests, up to ``concurrency`` at once, with no thread per
upload; their outcomes arrive on CRT threads and enter ``Pipeline.finished`` like any other
upload's. Larger files and resumed ones (a HEAD first) go to upload threads through transfer.py:
the CRT holds a body in memory to checksum it before its headers go out, so only files that
transfer.py would also read whole are given to it (memory stays ``concurrency`` × 1 MiB).
If S3 answers that the bucket must be reached another way (another region's endpoint), that file
and every later one go through botocore, which follows such redirects."""

from __future__ import annotations

import os
import threading
from collections import deque

from .. import aws, crt, message
from ..crt import CrtPutter
from ..transfer import FileChanged
from .plan import SEND_ONLY, Step
from .upload import SKIPPED, Outcome, UploadThreads, failed, upload_step


class CrtUploads:
    """``put``/``close`` for a Pipeline. Up to ``concurrency`` CRT requests run at once; as one
    ends, its completion starts the next waiting step, so the walker is not woken per file: it
    refills the waiting steps once they are down to half (as in UploadThreads)."""

    def __init__(self, pipeline, putter: CrtPutter, *, concurrency: int):
        self.pipeline = pipeline
        self.putter = putter
        self.limit = concurrency
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._running = 0  # requests the CRT holds
        self._unreported = 0  # steps started whose outcome the pipeline has not had yet
        self._waiting: deque[Step] = deque()
        self._walker_waits = False
        self._crt_refused = False
        self._helpers = UploadThreads(concurrency, self._upload_here, stopping=lambda: pipeline.stopping,
                                      name="upload-botocore")

    def put(self, step: Step) -> bool:
        f = step.file
        if step.action == SEND_ONLY or f.size > self.pipeline.target.transfer.in_memory_max or self._crt_refused:
            return self._helpers.put(step)
        with self._lock:
            while len(self._waiting) >= self.limit:
                if self.pipeline.stopping:
                    return False
                self._walker_waits = True
                self._room.wait(0.2)
            start = self._running < self.limit
            if start:
                self._running += 1
                self._unreported += 1
            else:
                self._waiting.append(step)
        if start:
            self._start(step)
        return True

    def close(self) -> None:
        """Return once every step ended: started ones finish, waiting ones are dropped if stopping."""
        with self._lock:
            while self._unreported or self._waiting:
                self._room.wait(0.2)
        self._helpers.close()
        self.putter.close()

    def _start(self, step: Step) -> None:
        f, target = step.file, self.pipeline.target
        try:
            self.putter.put(f.path, target.bucket, message.input_key(target.input_prefix, f.rel), size=f.size,
                            on_done=lambda etag, error: self._done(step, etag, error))
        except Exception as exc:  # noqa: BLE001 - refused before it started (a file that is gone): its outcome
            self._done(step, None, exc)

    def _upload_here(self, step: Step) -> None:
        p = self.pipeline
        p.finished(step, SKIPPED if p.stopping else upload_step(p.dest.s3, p.target, step))

    def _done(self, step: Step, etag: str | None, error: BaseException | None) -> None:
        """Runs on a CRT thread as a request ends: start the next waiting step, then report this one."""
        dropped = []
        with self._lock:
            if self.pipeline.stopping:
                dropped, self._waiting = list(self._waiting), deque()
            following = self._waiting.popleft() if self._waiting else None
            if following is None:
                self._running -= 1
            else:
                self._unreported += 1
            if self._walker_waits and len(self._waiting) <= self.limit // 2:
                self._walker_waits = False
                self._room.notify_all()
        if following is not None:
            self._start(following)
        try:
            for skipped in dropped:
                self.pipeline.finished(skipped, SKIPPED)
            if error is not None and aws.error_code(error) in crt.ELSEWHERE:
                self._crt_refused = True
                self._helpers.put(step)
            else:
                self.pipeline.finished(step, self._outcome(step, etag, error))
        finally:
            with self._lock:
                self._unreported -= 1
                if not (self._unreported or self._waiting):
                    self._room.notify_all()  # close() waits for this

    def _outcome(self, step: Step, etag: str | None, error: BaseException | None) -> Outcome:
        f = step.file
        try:  # vanished or unreadable: say so in the OS's words rather than the CRT's
            with open(f.path, "rb") as fh:
                after = os.fstat(fh.fileno())
        except OSError as exc:
            return failed(exc, self.pipeline.target.bucket)
        if error is not None:
            return failed(error, self.pipeline.target.bucket)
        if after.st_size != f.size or after.st_mtime_ns != f.mtime_ns:
            return failed(FileChanged(f.path), self.pipeline.target.bucket)
        if not etag:
            return Outcome(reason="S3 accepted the upload but sent no ETag; rerun to send it again")
        return Outcome(etag=etag, put=True)
