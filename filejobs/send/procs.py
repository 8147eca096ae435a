"""sendjobs' uploads in several processes, so a many-core machine is not held to one core by the GIL.

One process (sendjobs itself) walks the directory, keeps the journal and sends the SQS batches;
``processes`` upload processes (uploader.py) each run ``concurrency / processes`` upload threads,
started once the run has shown it is large (LateProcesses).
Steps go to them in chunks over a private pipe, outcomes come back the same way and enter the
pipeline exactly as an in-process upload's would (``Pipeline.finished``), so batching, the
journal, resume and the "enqueued only after its upload" rule are the same code.

Credentials are the parent's, passed down the pipe and again whenever the parent's session
refreshes them: an MFA prompt, an SSO login or a role session happens once, in the parent.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import threading

import filejobs

from .pipeline import upload_threads
from .plan import Step
from .upload import SKIPPED, Outcome
from .uploader import Init

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(filejobs.__file__)))
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from filejobs.send.uploader import serve; "
          "serve(int(sys.argv[2]), int(sys.argv[3]))")


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a container's
    cpuset), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_processes(cpu_count: int | None) -> int:
    """Upload processes for a machine with ``cpu_count`` cores. Two cores or fewer: none besides
    sendjobs itself (measured, bench/README: a second process costs more CPU than it gains
    there). Beyond: one per two cores (``cpu_count`` counts hyper-threads, and sendjobs' own
    process needs a core for the walk, the journal and SQS), at most 4 (about what that one
    process can feed: it spends ≈0.3 ms per file, each upload process ≈1 ms)."""
    cpus = cpu_count or 1
    return 1 if cpus <= 3 else min(cpus // 2, 4)


class Child:
    """One upload process: its pipe ends and the steps it holds (seq → step)."""

    def __init__(self, index: int, init: Init):
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        # Its stdout goes to our stderr: nothing it prints may mix with sendjobs' results.
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, _ROOT, str(child_r), str(child_w)],
                                     pass_fds=(child_r, child_w), stdin=subprocess.DEVNULL, stdout=2)
        os.close(child_r)
        os.close(child_w)
        self.index = index
        self.alive = True
        self.requests = open(parent_w, "wb")
        self.answers = open(parent_r, "rb")
        self.held: dict[int, Step] = {}
        self.send(("init", init))

    def send(self, message) -> None:
        pickle.dump(message, self.requests, protocol=pickle.HIGHEST_PROTOCOL)
        self.requests.flush()


class LateProcesses:
    """Uploads in this process's threads until the run has shown it is large (``start_after``
    steps), then in upload processes: a run of a few files, or of one large one, pays neither
    their start-up (≈0.25 s of CPU each) nor their memory (≈55 MiB each)."""

    def __init__(self, pipeline, *, processes: int, clients, start_after: int):
        self.here = upload_threads(pipeline)
        self.start = lambda: UploadProcesses(pipeline, processes=processes, clients=clients)
        self.start_after = start_after
        self.there: UploadProcesses | None = None
        self.submitted = 0

    def put(self, step: Step) -> bool:
        self.submitted += 1
        if self.there is None and self.submitted > self.start_after:
            self.there = self.start()
        return (self.there or self.here).put(step)

    def close(self) -> None:
        if self.there is not None:
            self.there.close()
        self.here.close()


class UploadProcesses:
    """The upload side of a Pipeline (``put``/``close``) over ``processes`` child processes."""

    def __init__(self, pipeline, *, processes: int, clients):
        c = pipeline.config
        self.pipeline = pipeline
        self.session = clients.session
        self.threads = max(1, -(-c.concurrency // processes))
        #: Steps one child holds at most: its threads' work and as much again waiting.
        self.window = 2 * self.threads
        self.chunk = max(1, self.threads // 2)
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._waiting: list[tuple[int, Step]] = []
        self._seq = itertools.count()
        self._closing = False
        self._credentials = self._current_credentials()
        init = Init(aws_target=clients.target, region=clients.s3.meta.region_name, credentials=self._credentials,
                    target=pipeline.target, threads=self.threads)
        self.children = [Child(i, init) for i in range(processes)]
        self._readers = [threading.Thread(target=self._read, args=(ch,), daemon=True, name=f"uploads-{ch.index}")
                         for ch in self.children]
        for t in self._readers:
            t.start()

    def put(self, step: Step) -> bool:
        with self._lock:
            while len(self._waiting) >= self.chunk and not self._free():
                if self.pipeline.stopping:
                    return False
                self._room.wait(0.2)
            self._waiting.append((next(self._seq), step))
            self._dispatch()
        return True

    def close(self) -> None:
        """Hand on what waits (or drop it when stopping), let every child finish, wait for them."""
        with self._lock:
            while self._waiting and not self.pipeline.stopping:
                self._dispatch()
                if self._waiting:
                    self._room.wait(0.2)
            dropped, self._waiting = self._waiting, []
            self._closing = True
            for ch in self.children:
                self._tell(ch, ("stop",) if self.pipeline.stopping else ("close",))
        for _, step in dropped:
            self.pipeline.finished(step, SKIPPED)
        for t in self._readers:
            t.join()
        for ch in self.children:
            ch.proc.wait()
            ch.answers.close()
            try:
                ch.requests.close()
            except OSError:  # it died with requests unread
                pass

    # -- under the lock -------------------------------------------------------------------------

    def _free(self) -> bool:
        return any(len(ch.held) < self.window for ch in self.children if ch.alive)

    def _dispatch(self) -> None:
        """Send waiting steps to the least busy children: at once to a child with idle threads,
        else in chunks (one pipe message, one wake of the child, per chunk)."""
        live = [ch for ch in self.children if ch.alive]
        while self._waiting and live:
            ch = min(live, key=lambda c: len(c.held))
            free = self.window - len(ch.held)
            if free <= 0 or (len(ch.held) >= self.threads and len(self._waiting) < self.chunk):
                return
            items, self._waiting = self._waiting[:free], self._waiting[free:]
            ch.held.update(items)
            self._refresh_credentials()
            self._tell(ch, ("steps", items))

    def _tell(self, ch: Child, message) -> None:
        try:
            ch.send(message)
        except OSError:  # it died: its reader reports that
            pass

    def _current_credentials(self) -> tuple | None:
        credentials = self.session.get_credentials() if self.session else None
        return tuple(credentials.get_frozen_credentials()) if credentials else None

    def _refresh_credentials(self) -> None:
        # Cheap unless the session is due to refresh (botocore does that here, in the parent).
        now = self._current_credentials()
        if now != self._credentials:
            self._credentials = now
            for ch in self.children:
                self._tell(ch, ("credentials", now))

    # -- one thread per child -------------------------------------------------------------------

    def _read(self, ch: Child) -> None:
        try:
            while True:
                message = pickle.load(ch.answers)
                if message[0] == "bye":
                    return
                self._finished(ch, message[1])
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        # It ended without saying goodbye: whatever it held is unknown, so the run stops.
        with self._lock:
            ch.alive = False
            lost = list(ch.held.values())
            ch.held.clear()
            self._room.notify()
        code = ch.proc.wait()
        self._finished_lost(lost, code)

    def _finished(self, ch: Child, done: list[tuple[int, Outcome]]) -> None:
        with self._lock:
            steps = [(ch.held.pop(seq), outcome) for seq, outcome in done]
        for step, outcome in steps:
            self.pipeline.finished(step, outcome)
        with self._lock:
            if not self._closing:
                self._dispatch()
            self._room.notify()

    def _finished_lost(self, lost: list[Step], code: int) -> None:
        if lost or not self._closing:
            self.pipeline.stop_run(f"an upload process ended unexpectedly (exit status {code}); "
                                        "rerun the same command to resume")
        for step in lost:
            self.pipeline.finished(step, SKIPPED)
