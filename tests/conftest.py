"""Shared fixtures.

Two kinds of tests, never mixed in one process state (moto's ``mock_aws`` wipes an in-process
server): unit tests use ``mock_aws`` through the ``mocked`` fixture; end-to-end tests run the CLIs
as subprocesses against a moto server that runs in its own process (``jobctl local``), or against
the endpoint in ``$FILEJOBS_TEST_ENDPOINT`` (tests/e2e/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from filejobs import aws  # noqa: E402
from filejobs.ops import resources  # noqa: E402
from testing.helpers import REGION, ROOT, isolate_aws, unique  # noqa: E402
from testing import helpers

helpers.share_botocore_models()


#: Tiers from slowest to fastest per test (measured: an e2e test runs CLIs as subprocesses on a
#: server, a unit test takes milliseconds).
_TIER_ORDER = {"e2e": 1, "infra": 2, "aws": 3, "unit": 4}


#: Module-scoped fixtures that cost a second or more of CPU and cannot be handed from one process to
#: another (they hold live clients): their tests go into one worker's hand, so only that worker
#: builds them (dealt round-robin, each worker built its own).
_SHARED_FIXTURES = ("deployed",)


def pytest_collection_modifyitems(config, items):
    """Slowest first, dealt out like cards. pytest-xdist's worksteal scheduler gives each of W
    workers one contiguous slice of the collection at the start (and later moves only queued
    tests): sorted by cost alone, the first slice held every slow test and one worker ran them all
    one after the other (108 s while the others were done at 93 s). Dealt round-robin into W
    slices, every worker starts with its share of the slow tests, heaviest first. The tests of a
    fixture in ``_SHARED_FIXTURES`` are kept in one hand."""
    def cost(item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        parts = item.nodeid.split("/")
        return _TIER_ORDER.get(parts[1] if len(parts) > 2 else "", 5)

    ordered = sorted(items, key=cost)
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    sizes, left = [], len(ordered)
    for i in range(workers):  # xdist's first deal: node i of W takes len(pending) // (W - i) off the front
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    hands: list[list] = [[] for _ in range(workers)]
    hand_of: dict[str, int] = {}
    turn = 0
    for item in ordered:
        shared = next((name for name in _SHARED_FIXTURES if name in getattr(item, "fixturenames", ())), None)
        if shared in hand_of and len(hands[hand_of[shared]]) < sizes[hand_of[shared]]:
            hands[hand_of[shared]].append(item)
            continue
        while len(hands[turn % workers]) >= sizes[turn % workers]:
            turn += 1
        hands[turn % workers].append(item)
        if shared:
            hand_of[shared] = turn % workers
        turn += 1
    items[:] = [item for hand in hands for item in hand]


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch, tmp_path):
    isolate_aws(monkeypatch, tmp_path)


# --------------------------------------------------------------------------- mock_aws (unit)


@pytest.fixture
def mocked(monkeypatch):
    """boto3 clients inside moto's mock_aws, as the tools' injected ``Clients``."""
    from moto import mock_aws

    # mock_aws intercepts botocore in this process; the AWS CRT's native client would go past it.
    monkeypatch.setenv("FILEJOBS_UPLOADER", "botocore")
    with mock_aws():
        session = helpers.session(REGION)
        yield aws.Clients(s3=session.client("s3", config=aws.client_config()),
                          sqs=session.client("sqs", config=aws.client_config()), session=session,
                          target=aws.Target(region=REGION))


@pytest.fixture
def make_resources():
    """Create a bucket, queue and DLQ with the project's own set-up code; unique names."""

    def make(clients, *, max_receive_count: int = 3, visibility_timeout_s: int = 30):
        return resources.create_all(clients.s3, clients.sqs, bucket=unique("b"), queue=unique("q"), region=REGION,
                                    settings=resources.QueueSettings(visibility_timeout_s=visibility_timeout_s,
                                                                     max_receive_count=max_receive_count))

    return make


# --------------------------------------------------------------------------- moto server (e2e)


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server in its own process, started by our own ``jobctl local`` (127.0.0.1, free port)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
           "MOTO_EC2_LOAD_DEFAULT_AMIS": helpers.MOTO_EC2_LOAD_DEFAULT_AMIS}
    proc = subprocess.Popen([sys.executable, "-m", "filejobs.cli", "local"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("export AWS_ENDPOINT_URL="), line
    url = line.split("=", 1)[1]
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def endpoint(moto_endpoint):
    """The endpoint the tests talk to: moto here; tests/e2e/conftest.py lets $FILEJOBS_TEST_ENDPOINT
    replace it for the end-to-end tests."""
    return moto_endpoint


@pytest.fixture
def server(endpoint, monkeypatch):
    """Clients for the endpoint, and the environment a CLI subprocess needs to reach it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    clients = aws.make_clients(aws.Target(region=REGION, endpoint_url=endpoint))
    clients.env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                   "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION,
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_CONFIG_FILE": os.environ["AWS_CONFIG_FILE"],
                   "AWS_SHARED_CREDENTIALS_FILE": os.environ["AWS_SHARED_CREDENTIALS_FILE"],
                   "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"], "PYTHONUNBUFFERED": "1"}
    return clients
