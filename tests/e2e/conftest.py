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

import json
import os
import urllib.error
import urllib.request

import pytest

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


def endpoint_kind(url: str) -> str:
    """moto, localstack or other, from what the endpoint answers."""
    for kind, path, check in (("localstack", "/_localstack/health", lambda body: "services" in json.loads(body)),
                              ("moto", "/moto-api/data.json", lambda body: isinstance(json.loads(body), dict))):
        try:
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=5) as answer:
                if answer.status == 200 and check(answer.read()):
                    return kind
        except (urllib.error.URLError, ValueError, OSError):
            continue
    return "other"


@pytest.fixture(scope="session")
def endpoint(request):
    """$FILEJOBS_TEST_ENDPOINT if set, else our own moto server."""
    return os.environ.get(ENV) or request.getfixturevalue("moto_endpoint")


@pytest.fixture(scope="session")
def kind(endpoint):
    return endpoint_kind(endpoint)


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
