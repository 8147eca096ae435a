"""The embedded endpoint (filejobs/local.py): moto's SQS clock and its service lookup made cheap, with
the same answers.

Run in a child process: the shim replaces moto's helpers for the whole process, and this one also
runs mock_aws tests."""

import subprocess
import sys

from testing.helpers import ROOT

CHECK = """
from datetime import datetime
from moto.core import utils
from moto.sqs import models
from filejobs.local import LocalEndpoint

assert models.unix_time is utils.unix_time
LocalEndpoint()
LocalEndpoint()  # twice: not wrapped twice
assert models.unix_time is not utils.unix_time and models.unix_time.filejobs_shim
assert abs(models.unix_time() - utils.unix_time()) < 0.5
assert abs(models.unix_time_millis() - utils.unix_time_millis()) < 500
when = datetime(2026, 12, 5, 1, 2, 3)
assert models.unix_time(when) == utils.unix_time(when) and models.unix_time_millis(when) == utils.unix_time_millis(when)
print("ok")
"""


def test_moto_sqs_gets_now_from_time_time_and_the_same_answers_as_its_own_clock():
    got = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == "ok", got.stderr


LOOKUPS = """
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import create_backend_app
from filejobs.local import LocalEndpoint

plain = DomainDispatcherApplication(create_backend_app)
hosts = ["s3.us-east-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com", "my-bucket.s3.amazonaws.com",
         "monitoring.us-east-1.amazonaws.com", "autoscaling.us-east-1.amazonaws.com", "moto_api", None,
         "nothing.example.com"]
expected = {host: plain.get_backend_for_host(host) for host in hosts}
LocalEndpoint()
LocalEndpoint()  # twice: not wrapped twice
assert DomainDispatcherApplication.get_backend_for_host.filejobs_shim
app = DomainDispatcherApplication(create_backend_app)
for _ in range(2):  # the first answer is looked up, the second remembered: both are moto's own
    assert {host: app.get_backend_for_host(host) for host in hosts} == expected
assert expected["s3.us-east-1.amazonaws.com"] == "s3" and expected["sqs.eu-west-1.amazonaws.com"] == "sqs"
print("ok")
"""


def test_moto_finds_the_service_of_a_host_name_once_with_the_same_answer():
    got = subprocess.run([sys.executable, "-c", LOOKUPS], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == "ok", got.stderr
