"""Run a Python CLI (sendjobs.py, getjobs.py, a baseline) with every botocore client it creates
counted and, optionally, slowed down by a fixed per-request delay.

    BENCH_COUNTS_FILE=/tmp/c.json BENCH_DELAY_MS=30 python bench/instrument.py sendjobs.py ARGS...

The tool itself is not changed: ``counting.install()`` wraps botocore's client factory (see
counting.py); each process writes ``$BENCH_COUNTS_FILE.<pid>`` at exit and ``counting.merge``
adds them up. Processes the tool starts with the same environment (PYTHONPATH = bench/) are
counted too, through ``sitecustomize.py``.
"""

from __future__ import annotations

import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The measured script's folder comes first, so a candidate checkout elsewhere (FILEJOBS_ROOT in
# run_all.py) is the filejobs that gets imported.
if len(sys.argv) > 1:
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
sys.path.insert(1, HERE)

import counting  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: instrument.py SCRIPT [ARGS...]")
    counting.install()
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
