"""Request counting and the latency model for every botocore client of a process (bench only).

``install()`` wraps ``botocore.session.Session.create_client`` so each new client gets
``testing.recorder.CallRecorder`` (API calls, HTTP requests) and the delay hook of ``latency.py``;
at exit the process writes its counts, and the times of its first request and last completed call,
to ``$BENCH_COUNTS_FILE.<pid>``. ``sitecustomize.py`` installs it in every Python process started
with the bench environment (``PYTHONPATH`` = bench/), so a tool's helper processes (sendjobs'
upload processes) are counted and slowed down like the tool itself; ``merge`` adds them up.
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_installed = False


def install() -> None:
    global _installed
    if _installed or not os.environ.get("BENCH_COUNTS_FILE"):
        return
    _installed = True
    # The harness's own checkout provides testing/ (appended: the measured checkout's filejobs,
    # first on sys.path once the tool's script runs, is the one that gets imported).
    sys.path.append(os.path.dirname(HERE))
    import botocore.session

    from latency import add_delay
    from testing.recorder import CallRecorder

    recorder = CallRecorder()
    window = {"first_send": None, "last_call": None}
    lock = threading.Lock()
    delay_s = float(os.environ.get("BENCH_DELAY_MS", "0") or 0) / 1000.0
    original = botocore.session.Session.create_client

    def on_send(**_):
        now = time.monotonic()
        with lock:
            if window["first_send"] is None:
                window["first_send"] = now

    def on_after_call(**_):
        now = time.monotonic()
        with lock:
            window["last_call"] = now

    def create_client(self, *args, **kwargs):
        client = original(self, *args, **kwargs)
        recorder.attach(client)
        client.meta.events.register("before-send.*.*", on_send)
        client.meta.events.register("after-call.*.*", on_after_call)
        add_delay(client, delay_s)  # registered last: counted first, then delayed
        return client

    def dump():
        if not recorder.requests and not recorder.by_operation:
            return
        data = {"requests": recorder.requests, "calls": recorder.total_calls(),
                "by_operation": recorder.by_operation, **window, "delay_ms": delay_s * 1000}
        with open(f"{os.environ['BENCH_COUNTS_FILE']}.{os.getpid()}", "w", encoding="utf-8") as fh:
            json.dump(data, fh)

    botocore.session.Session.create_client = create_client
    _count_crt(recorder, lock, window, delay_s)
    atexit.register(dump)


def _count_crt(recorder, lock, window, delay_s: float) -> None:
    """The same for requests made through the AWS CRT (sendjobs --uploader crt), if installed: one
    count per ``make_request`` (the CRT's own retries are not seen), and the delay before it is
    made, by one scheduler thread (the CRT is asynchronous: nothing may sleep on its threads)."""
    try:
        from awscrt.s3 import S3Client
    except ImportError:
        return
    original = S3Client.make_request
    later = _Later() if delay_s > 0 else None

    def make_request(self, **kwargs):
        now = time.monotonic()
        with lock:
            recorder.requests += 1
            name = f"s3:{kwargs['type'].name} (crt)"
            recorder.by_operation[name] = recorder.by_operation.get(name, 0) + 1
            if window["first_send"] is None:
                window["first_send"] = now
        done = kwargs.get("on_done")

        def on_done(**kw):
            with lock:
                window["last_call"] = time.monotonic()
            if done:
                done(**kw)

        kwargs["on_done"] = on_done
        if later is None:
            return original(self, **kwargs)
        return later.call(now + delay_s, lambda: original(self, **kwargs))

    S3Client.make_request = make_request


class _Later:
    """Runs functions at their time on one thread; ``call`` returns a stand-in for the result
    that forwards ``cancel()`` once it exists."""

    def __init__(self):
        import heapq

        self._heapq = heapq
        self._due: list = []
        self._cv = threading.Condition()
        self._count = 0
        threading.Thread(target=self._run, daemon=True, name="bench-latency").start()

    def call(self, at: float, fn):
        handle = _Handle()
        with self._cv:
            self._count += 1
            self._heapq.heappush(self._due, (at, self._count, fn, handle))
            self._cv.notify()
        return handle

    def _run(self):
        while True:
            with self._cv:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._cv.wait(max(0.0, self._due[0][0] - time.monotonic()) if self._due else None)
                _, _, fn, handle = self._heapq.heappop(self._due)
            handle.set(fn())


class _Handle:
    def __init__(self):
        self.real = None
        self.cancelled = False

    def set(self, real):
        self.real = real
        if self.cancelled:
            real.cancel()

    def cancel(self):
        self.cancelled = True
        if self.real is not None:
            self.real.cancel()


def merge(counts_file: str) -> dict | None:
    """The counts of every process that wrote one, added up; the active window spans them all."""
    parts = []
    for path in glob.glob(glob.escape(counts_file) + ".*"):
        with open(path, encoding="utf-8") as fh:
            parts.append(json.load(fh))
        os.unlink(path)
    if not parts:
        return None
    ops: dict[str, int] = {}
    for p in parts:
        for op, n in p["by_operation"].items():
            ops[op] = ops.get(op, 0) + n
    firsts = [p["first_send"] for p in parts if p["first_send"] is not None]
    lasts = [p["last_call"] for p in parts if p["last_call"] is not None]
    return {"requests": sum(p["requests"] for p in parts), "calls": sum(p["calls"] for p in parts),
            "by_operation": dict(sorted(ops.items())), "processes": len(parts),
            "active_s": (max(lasts) - min(firsts)) if firsts and lasts else None, "delay_ms": parts[0]["delay_ms"]}
