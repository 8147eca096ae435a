"""Fixtures shared by the infra tests."""

from __future__ import annotations

import os
import sys

import pytest

from filejobs.ops import artifact
from testing.helpers import once_per_run


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    """The worker artifact, built once per run (by the first xdist worker to need it) from the
    installed package. Downloaded wheels are cached under the virtualenv, keyed by the lock's hash,
    so a rerun needs no network."""
    cache = os.path.join(sys.prefix, "filejobs-wheel-cache")
    return once_per_run(tmp_path_factory, "wheelhouse", lambda: artifact.build_wheelhouse(
        str(tmp_path_factory.mktemp("dist")), cache_dir=cache))
