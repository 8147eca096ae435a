"""Bench only: with the bench environment (PYTHONPATH = bench/, BENCH_COUNTS_FILE set), every
Python process counts its AWS requests and applies the latency model (counting.py)."""

import os

if os.environ.get("BENCH_COUNTS_FILE"):
    import counting

    counting.install()

