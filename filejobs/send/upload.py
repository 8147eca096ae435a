"""Uploading one planned file, and the upload threads of one process.

``upload_step`` is the whole per-file decision (reuse an earlier run's object, or PUT the file)
with its outcome as data, so the same code runs in sendjobs' own threads and in its upload
processes (procs.py), which send the outcome back. ``UploadThreads`` is the in-process pool.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .. import aws, message
from ..transfer import FileChanged, TransferConfig, put_file
from .plan import SEND_ONLY, Step


@dataclass(frozen=True)
class Target:
    """Where the files go: what an upload needs to know of the run."""

    bucket: str
    input_prefix: str
    transfer: TransferConfig


@dataclass(frozen=True)
class Outcome:
    """How one step ended: ``etag`` set = the object is in S3 (``put``: this run uploaded it);
    else ``reason`` names why the file failed, and ``fatal`` says the whole run must stop."""

    etag: str | None = None
    put: bool = False
    reason: str | None = None
    fatal: bool = False
    #: Not attempted: the run was stopping (Ctrl-C or a fatal error elsewhere).
    skipped: bool = False
    #: The exception behind a fatal outcome, in the process that saw it (never sent between processes).
    error: BaseException | None = None


SKIPPED = Outcome(skipped=True)


def upload_step(s3, target: Target, step: Step) -> Outcome:
    """Make ``step``'s file be in S3: reuse the object an interrupted run left if S3 still holds
    that version, else upload it. Never raises for one file's trouble; fatal errors (bucket gone,
    access denied) come back as a fatal outcome."""
    f = step.file
    key = message.input_key(target.input_prefix, f.rel)
    if step.action == SEND_ONLY and _still_in_s3(s3, target.bucket, key, step):
        return Outcome(etag=step.etag)
    try:
        result = put_file(s3, f.path, target.bucket, key, config=target.transfer, size=f.size, mtime_ns=f.mtime_ns)
    except Exception as exc:  # noqa: BLE001 - classified there
        return failed(exc, target.bucket)
    return Outcome(etag=result.etag, put=True)


def failed(exc: BaseException, bucket: str) -> Outcome:
    """The outcome of an upload that raised ``exc``: one line naming why, fatal or not."""
    if isinstance(exc, FileChanged):
        return Outcome(reason="changed while it was uploaded; rerun to send the new version")
    if isinstance(exc, OSError):
        return Outcome(reason=f"cannot read: {exc.strerror or exc}")
    return Outcome(reason=aws.describe(exc, bucket=bucket), fatal=aws.is_fatal(exc), error=exc)


def _still_in_s3(s3, bucket: str, key: str, step: Step) -> bool:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - any doubt means upload again
        return False
    return head.get("ETag") == step.etag and head.get("ContentLength") == step.file.size


class UploadThreads:
    """``threads`` threads running ``work(step)`` on the steps ``put`` hands them, in order.

    The hand-off is a deque under one lock with hysteresis: ``put`` blocks once ``2 × threads``
    steps wait, and is woken only when they are down to ``threads``, so the walker wakes once per
    ``threads`` files instead of once per file (each wake is a context switch and a GIL hand-off).
    """

    def __init__(self, threads: int, work: Callable[[Step], None], *, stopping: Callable[[], bool],
                 name: str = "upload"):
        self.work = work
        self.stopping = stopping
        self._high, self._low = 2 * threads, threads
        self._steps: deque[Step] = deque()
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._idle = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"{name}-{i}") for i in range(threads)]
        for t in self._threads:
            t.start()

    def put(self, step: Step) -> bool:
        """Queue ``step``; False (not queued) once the run is stopping."""
        with self._lock:
            while len(self._steps) >= self._high:
                if self.stopping():
                    return False
                self._has_room.wait(0.2)
            self._steps.append(step)
            if self._idle:
                self._has_work.notify()
        return True

    def close(self) -> None:
        """Return once every queued step was worked on (or dropped by ``work`` when stopping)."""
        with self._lock:
            self._closed = True
            self._has_work.notify_all()
        for t in self._threads:
            t.join()

    def _next(self) -> Step | None:
        with self._lock:
            while not self._steps and not self._closed:
                self._idle += 1
                self._has_work.wait()
                self._idle -= 1
            if not self._steps:
                return None
            step = self._steps.popleft()
            if len(self._steps) == self._low:
                self._has_room.notify()
            return step

    def _run(self) -> None:
        while (step := self._next()) is not None:
            self.work(step)
