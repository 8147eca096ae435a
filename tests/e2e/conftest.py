"""The end-to-end tests against any endpoint: moto by default, or the one in ``$FILEJOBS_TEST_ENDPOINT``
(LocalStack, fauxqs, a MinIO + SQS pair…), e.g. under LocalStack::

    testing/with-localstack.sh -- sh -c 'FILEJOBS_TEST_ENDPOINT=$AWS_ENDPOINT_URL .venv/bin/python -m pytest tests/e2e'

The variable has no ``AWS_`` prefix because every test starts from an environment without
``AWS_*`` variables (``isolate_aws``); it is read once per session. The endpoint must serve S3 and
SQS in us-east-1 and accept any credentials. Bucket and queue names are unique per test, so an
endpoint's state can outlive the run.

What an endpoint cannot do is declared, not guessed: a test marked ``@pytest.mark.needs("feature")``
is skipped, with the reason, on an endpoint known to lack the feature (``LACKS``). The kind of
endpoint is found by asking it (``/_localstack/health``, ``/moto-api/``).
"""

from __future__ import annotations

import os

import pytest

from testing.helpers import endpoint_kind

ENV = "FILEJOBS_TEST_ENDPOINT"

#: kind of endpoint -> feature -> why it lacks it.
LACKS = {
    "moto": {"move_tasks": "moto does not implement StartMessageMoveTask/ListMessageMoveTasks"},
    "localstack": {},
    "other": {},
}


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(feature): skipped on an endpoint known to lack the feature "
                                       "(tests/e2e/conftest.py LACKS)")


@pytest.fixture(scope="session")
def endpoint(request):
    """$FILEJOBS_TEST_ENDPOINT if set, else our own moto server."""
    return os.environ.get(ENV) or request.getfixturevalue("moto_endpoint")


@pytest.fixture(scope="session")
def kind(endpoint):
    """Our own server is moto; only an endpoint from $FILEJOBS_TEST_ENDPOINT is asked. (Asking our
    server late in a busy run could time out: /moto-api/data.json dumps every resource the
    session made, and a timeout read as "other" ran a moto-lacking test on moto.)"""
    return endpoint_kind(endpoint) if os.environ.get(ENV) else "moto"


@pytest.fixture(scope="session")
def lacks(kind) -> dict:
    """What the endpoint cannot do: feature -> why (for a test that takes another way there)."""
    return LACKS[kind]


@pytest.fixture(autouse=True)
def _skip_what_the_endpoint_lacks(request):
    marks = list(request.node.iter_markers("needs"))
    if not marks:
        return
    kind = request.getfixturevalue("kind")
    for mark in marks:
        for feature in mark.args:
            if feature in LACKS[kind]:
                pytest.skip(f"{kind}: {LACKS[kind][feature]}")
