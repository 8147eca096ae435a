"""Run a Python CLI (sendjobs.py, getjobs.py, a baseline) with every botocore client it creates
counted and, optionally, slowed down by a fixed per-request delay.

    BENCH_COUNTS_FILE=/tmp/c.json BENCH_DELAY_MS=30 python bench/instrument.py sendjobs.py ARGS...

The tool itself is not changed: ``botocore.session.Session.create_client`` is wrapped so each new
client gets ``filejobs.aws.CallRecorder`` (API calls via ``before-call``, HTTP requests via
``before-send``) and the delay hook of ``bench/latency.py``. At exit the counts, plus the times of
the first request and of the last completed call (the "active window", free of interpreter
start-up), are written as JSON to ``$BENCH_COUNTS_FILE``.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The measured script's folder comes first, so a candidate checkout elsewhere (FILEJOBS_ROOT in
# run_all.py) is the filejobs that gets imported, CallRecorder included.
if len(sys.argv) > 1:
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
sys.path.insert(1, HERE)
sys.path.append(ROOT)

import botocore.session  # noqa: E402

from testing.recorder import CallRecorder  # noqa: E402
from latency import add_delay  # noqa: E402

_recorder = CallRecorder()
_window = {"first_send": None, "last_call": None}
_lock = threading.Lock()
_delay_s = float(os.environ.get("BENCH_DELAY_MS", "0") or 0) / 1000.0
_original_create_client = botocore.session.Session.create_client


def _on_send(**_):
    now = time.monotonic()
    with _lock:
        if _window["first_send"] is None:
            _window["first_send"] = now


def _on_after_call(**_):
    now = time.monotonic()
    with _lock:
        _window["last_call"] = now


def _create_client(self, *args, **kwargs):
    client = _original_create_client(self, *args, **kwargs)
    _recorder.attach(client)
    client.meta.events.register("before-send.*.*", _on_send)
    client.meta.events.register("after-call.*.*", _on_after_call)
    add_delay(client, _delay_s)  # registered last: counted first, then delayed
    return client


def _dump():
    path = os.environ.get("BENCH_COUNTS_FILE")
    if not path:
        return
    first, last = _window["first_send"], _window["last_call"]
    data = {"requests": _recorder.requests, "calls": _recorder.total_calls(),
            "by_operation": dict(sorted(_recorder.by_operation.items())),
            "active_s": (last - first) if first is not None and last is not None else None,
            "delay_ms": _delay_s * 1000}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: instrument.py SCRIPT [ARGS...]")
    botocore.session.Session.create_client = _create_client
    atexit.register(_dump)
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
