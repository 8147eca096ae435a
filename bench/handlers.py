"""Trivial in-process job handlers for the getjobs benchmarks (``--handler handlers:copy`` with
``PYTHONPATH=bench``). The same function is used by the candidate and by both baselines."""

from __future__ import annotations

import shutil


def copy(input_path: str, output_path: str) -> None:
    """The output is the input (streamed; memory stays flat for a 1 GiB file)."""
    shutil.copyfile(input_path, output_path)
