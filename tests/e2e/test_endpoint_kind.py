"""How the e2e tests tell endpoints apart when $FILEJOBS_TEST_ENDPOINT names one (tests/e2e/conftest.py)."""

import os
import socket
import subprocess
import sys

from testing.helpers import ROOT, endpoint_kind


def test_a_fresh_moto_server_is_known_as_moto_and_a_closed_port_as_other():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "filejobs.cli", "local"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip().split("=", 1)[1]
        assert endpoint_kind(url) == "moto"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert endpoint_kind(f"http://127.0.0.1:{closed}") == "other"
