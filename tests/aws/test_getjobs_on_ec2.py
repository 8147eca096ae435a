"""getjobs' EC2 options as user data sets them (--protect-instance --watch-notices --autoscaling-group
--lifecycle-hook), through the CLI against moto and a fake IMDSv2 on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import getjobs
from filejobs import aws
from testing.helpers import REGION, cli_runner
from testing.autoscaling import instance_in_a_group
from testing.imds import FakeImds
from testing.recorder import CallRecorder


@pytest.fixture
def imds(monkeypatch):
    with FakeImds() as fake:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.url)
        yield fake


@pytest.fixture
def recorder(monkeypatch):
    """Every API call of the clients getjobs makes, the Auto Scaling one included."""
    recorder, make = CallRecorder(), aws.Clients.client

    def client(self, service, **kwargs):
        made = make(self, service, **kwargs)
        recorder.attach(made)
        return made

    monkeypatch.setattr(aws.Clients, "client", client)
    return recorder


def run(*args):
    result = cli_runner().invoke(getjobs.cli, [str(a) for a in args], prog_name="getjobs")
    return result, result.stderr.strip().splitlines()


@pytest.mark.parametrize("options", [
    ["--lifecycle-hook", "filejobs-drain", "--watch-notices"],
    ["--lifecycle-hook", "filejobs-drain", "--autoscaling-group", "workers"],
])
def test_a_lifecycle_hook_needs_the_notices_and_the_group_name(tmp_path, options):
    result, lines = run(*options, tmp_path, ".out", "q", REGION, "cp")
    assert result.exit_code == 2 and len(lines) == 1
    assert lines[0].startswith("getjobs: error: --lifecycle-hook needs --watch-notices and --autoscaling-group")


def test_watching_notices_off_ec2_is_one_line_and_exit_1(tmp_path, monkeypatch, mocked):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    result, lines = run("--watch-notices", tmp_path, ".out", "q", REGION, "cp")
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("getjobs: error: --watch-notices: ")


def test_on_a_spot_notice_getjobs_drains_completes_the_lifecycle_action_and_exits_0(
        tmp_path, mocked, make_resources, imds, recorder):
    res = make_resources(mocked)
    imds.items["instance-id"] = instance_in_a_group(mocked.session, "workers")
    in_two_minutes = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=2)
    imds.items["spot/instance-action"] = json.dumps({"action": "terminate",
                                                     "time": in_two_minutes.strftime("%Y-%m-%dT%H:%M:%SZ")})
    result, lines = run("--protect-instance", "--watch-notices", "--autoscaling-group", "workers",
                        "--lifecycle-hook", "filejobs-drain", "--wait-time", "0", "--log-format", "json",
                        tmp_path / "work", ".out", res.queue_url, REGION, "cp")
    assert result.exit_code == 0, result.stderr  # systemd's Restart=on-failure leaves it stopped
    events = [json.loads(line) for line in lines]
    (stopping,) = [e for e in events if e["event"] == "stopping"]
    assert (stopping["mode"], stopping["kind"]) == ("notice", "spot-interruption")
    ops = recorder.by_operation
    # The group's name came with the options: no DescribeAutoScalingInstances (IAM grants it only on *).
    assert "autoscaling:DescribeAutoScalingInstances" not in ops
    assert ops["autoscaling:SetInstanceProtection"] == 1 and ops["autoscaling:CompleteLifecycleAction"] == 1
    # moto does not implement CompleteLifecycleAction (tests/aws/test_worker_notices.py checks the
    # call against the API model): a failed completion is a warning, the group goes on at the hook's timeout.
    assert any("could not complete the lifecycle action" in e.get("reason", "") for e in events)
