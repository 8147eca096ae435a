"""EC2 specifics against a fake instance metadata service on 127.0.0.1 (IMDSv2 only: a token PUT,
then GETs that carry it) and moto's Auto Scaling: the instance id, the notices that end an instance
(Spot interruption, rebalance recommendation, Auto Scaling termination), completing the lifecycle
action, and scale-in protection while busy."""

import json
import threading
import time

import pytest
from botocore.stub import Stubber

from testing.imds import FakeImds
from filejobs.ec2 import (REBALANCE, SPOT_INTERRUPTION, TERMINATING, Imds, InstanceProtector, NoticeWatcher,
                          complete_lifecycle_action, instance_id)


@pytest.fixture
def imds():
    with FakeImds() as fake:
        yield fake


def test_the_instance_id_comes_from_imdsv2_with_a_session_token(imds):
    assert instance_id(endpoint=imds.url) == "i-0123456789abcdef0"
    assert imds.seen[0][:2] == ("PUT", "/latest/api/token") and imds.seen[0][2]
    assert imds.seen[1] == ("GET", "/latest/meta-data/instance-id", "token-1")


def test_the_token_is_reused_then_renewed_when_refused(imds):
    client = Imds(imds.url)
    assert client.get("instance-id") == client.get("instance-id")
    assert [s[0] for s in imds.seen] == ["PUT", "GET", "GET"]
    imds.revoke()  # as if it had expired
    assert client.get("instance-id") == "i-0123456789abcdef0"
    assert [s[0] for s in imds.seen[3:]] == ["GET", "PUT", "GET"]
    assert client.get("no/such/item") is None


def watcher(imds, now=1_000_000.0):
    return NoticeWatcher(Imds(imds.url), drain_timeout_s=180, wall_clock=lambda: now)


def test_no_notice_while_the_instance_is_in_service(imds):
    w = watcher(imds)
    assert w.poll() is None
    paths = {p for _, p, _ in imds.seen}
    assert {"/latest/meta-data/spot/instance-action", "/latest/meta-data/autoscaling/target-lifecycle-state",
            "/latest/meta-data/events/recommendations/rebalance"} <= paths


def test_a_spot_interruption_is_reported_once_with_its_deadline(imds):
    w = watcher(imds)
    imds.items["spot/instance-action"] = json.dumps({"action": "terminate", "time": "2026-12-04T16:02:00Z"})
    notice = w.poll()
    assert notice.kind == SPOT_INTERRUPTION
    assert notice.deadline == 1796400120.0  # 2026-12-04T16:02:00Z
    assert w.poll() is None  # reported once


def test_termination_by_the_group_gives_the_hook_timeout_as_deadline(imds):
    w = watcher(imds, now=5000.0)
    imds.items["autoscaling/target-lifecycle-state"] = "Terminated"
    notice = w.poll()
    assert (notice.kind, notice.deadline) == (TERMINATING, 5180.0)
    assert w.poll() is None


def test_a_rebalance_recommendation_then_an_interruption_are_both_reported(imds):
    w = watcher(imds)
    imds.items["events/recommendations/rebalance"] = json.dumps({"noticeTime": "2026-12-04T16:00:00Z"})
    first = w.poll()
    assert (first.kind, first.deadline) == (REBALANCE, None)
    assert w.poll() is None
    imds.items["autoscaling/target-lifecycle-state"] = "Terminated"  # capacity rebalancing replaces it
    assert w.poll().kind == TERMINATING
    imds.items["spot/instance-action"] = json.dumps({"action": "terminate", "time": "2026-12-04T16:02:00Z"})
    assert w.poll().kind == SPOT_INTERRUPTION  # more urgent: reported again
    assert w.poll() is None


def test_the_watch_thread_reports_a_notice_and_stops(imds):
    got, stop = [], threading.Event()
    arrived = threading.Event()
    w = watcher(imds)

    def on_notice(notice):
        got.append(notice)
        arrived.set()

    thread = w.watch(on_notice, interval_s=0.01, stop=stop)
    imds.items["autoscaling/target-lifecycle-state"] = "Terminated"
    assert arrived.wait(5)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and [n.kind for n in got] == [TERMINATING]


def test_the_watch_thread_survives_an_unreachable_metadata_service():
    logged, stop = [], threading.Event()
    w = NoticeWatcher(Imds("http://127.0.0.1:9", timeout_s=0.2), drain_timeout_s=60)
    thread = w.watch(lambda n: None, interval_s=0.01, stop=stop, log=lambda *a, **k: logged.append(k))
    deadline = time.monotonic() + 5
    while not logged and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(5)
    assert logged and "instance metadata" in logged[0]["reason"]


# --------------------------------------------------------------------------- the lifecycle action


def test_completing_the_lifecycle_action_names_the_group_hook_and_instance(mocked):
    autoscaling = mocked.session.client("autoscaling")
    expected = {"AutoScalingGroupName": "fj-workers", "LifecycleHookName": "filejobs-drain",
                "InstanceId": "i-0123456789abcdef0", "LifecycleActionResult": "CONTINUE"}
    # moto does not implement CompleteLifecycleAction: the request is checked against the API model.
    with Stubber(autoscaling) as stub:
        stub.add_response("complete_lifecycle_action", {}, expected)
        stub.add_client_error("complete_lifecycle_action", "ValidationError",
                              "No active Lifecycle Action found with instance ID i-0123456789abcdef0",
                              expected_params=expected)
        stub.add_client_error("complete_lifecycle_action", "AccessDenied", "no", expected_params=expected)
        assert complete_lifecycle_action(autoscaling, group="fj-workers", hook="filejobs-drain",
                                         instance="i-0123456789abcdef0") is True
        assert complete_lifecycle_action(autoscaling, group="fj-workers", hook="filejobs-drain",
                                         instance="i-0123456789abcdef0") is False
        with pytest.raises(Exception, match="AccessDenied"):
            complete_lifecycle_action(autoscaling, group="fj-workers", hook="filejobs-drain",
                                      instance="i-0123456789abcdef0")
        stub.assert_no_pending_responses()


# --------------------------------------------------------------------------- scale-in protection


def asg_with_instance(mocked):
    ec2 = mocked.session.client("ec2")
    autoscaling = mocked.session.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="workers-lt", LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                            "InstanceType": "t3.micro"})
    autoscaling.create_auto_scaling_group(AutoScalingGroupName="workers", MinSize=0, MaxSize=2, DesiredCapacity=2,
                                          LaunchTemplate={"LaunchTemplateName": "workers-lt"}, VPCZoneIdentifier=subnet)
    ids = [i["InstanceId"] for i in autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]["Instances"]]
    return autoscaling, ids


def protected(autoscaling, instance):
    return autoscaling.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"][0][
        "ProtectedFromScaleIn"]


def wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_busy_worker_is_protected_from_scale_in_and_survives_it(mocked):
    autoscaling, (busy, idle) = asg_with_instance(mocked)
    protector = InstanceProtector(autoscaling, busy, "workers", idle_grace_s=0.2)
    protector.set_busy(True)
    assert wait_for(lambda: protected(autoscaling, busy))
    assert not protected(autoscaling, idle)
    autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=0)
    left = [i["InstanceId"] for i in autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]["Instances"]]
    assert left == [busy]


def test_without_a_group_name_the_protector_looks_it_up(mocked):
    autoscaling, (instance, _) = asg_with_instance(mocked)
    assert InstanceProtector(autoscaling, instance).group == "workers"


def test_protection_is_cleared_after_a_short_idle_spell(mocked):
    autoscaling, (instance, _) = asg_with_instance(mocked)
    protector = InstanceProtector(autoscaling, instance, "workers", idle_grace_s=0.3)
    protector.set_busy(True)
    assert wait_for(lambda: protected(autoscaling, instance))
    protector.set_busy(False)
    assert wait_for(lambda: not protected(autoscaling, instance))


def test_a_slow_call_from_the_background_never_lands_after_the_final_one(mocked):
    """The background thread's SetInstanceProtection(True) is still in flight when the worker
    exits and asks for False now: the final state must be unprotected."""
    autoscaling, (instance, _) = asg_with_instance(mocked)
    entered, release = threading.Event(), threading.Event()
    calls = []

    class Slow:
        def set_instance_protection(self, **params):
            calls.append(params["ProtectedFromScaleIn"])
            if params["ProtectedFromScaleIn"]:
                entered.set()
                release.wait(5)
            return autoscaling.set_instance_protection(**params)

    protector = InstanceProtector(Slow(), instance, "workers", idle_grace_s=0.1)
    protector.set_busy(True)
    assert entered.wait(5)
    final = threading.Thread(target=protector.set_busy, args=(False,), kwargs={"now": True})
    final.start()
    time.sleep(0.1)  # the final call waits for the one in flight
    release.set()
    final.join(5)
    assert calls == [True, False] and not protected(autoscaling, instance)
