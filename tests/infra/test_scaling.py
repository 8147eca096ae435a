"""The scaling rules of infra/stack.yaml, replayed minute by minute (filejobs.scaling), and scale-in
protection of a busy instance against moto's Auto Scaling.

CloudWatch never evaluates alarms in moto, so the rules are read from the template itself and
replayed by ``filejobs.scaling.simulate``; what moto does implement (instance protection, desired
capacity, simple scaling policies) is checked against moto.
"""

from __future__ import annotations

import math
import os
import random
import time

import boto3
import pytest

from filejobs.ops import scaling
from testing.helpers import ROOT
from filejobs.ops.scaling import Sample

TEMPLATE = os.path.join(ROOT, "filejobs", "infra", "stack.yaml")
REGION = "us-east-1"


@pytest.fixture(scope="module")
def template():
    return scaling.load_template(TEMPLATE)


def model(template, **parameters):
    return scaling.load_model(template, parameters)


def run(m, samples, capacity=0):
    return scaling.simulate(m, samples, capacity=capacity)


def test_the_model_is_the_templates(template):
    m = model(template, MaxSize=7, QuietMinutes=4, MessagesPerInstance=25)
    assert (m.min_size, m.max_size) == (0, 7)
    assert set(m.alarms) == {"BacklogAlarm", "QueueIdleAlarm", "DeadLetterAlarm", "OldestJobAlarm"}
    assert m.alarms["BacklogAlarm"].expression.text == "CEIL(visible / 25) - FILL(desired, 0)"
    assert m.alarms["QueueIdleAlarm"].evaluation_periods == 4
    assert m.alarms["QueueIdleAlarm"].datapoints_to_alarm == 4
    assert m.alarms["BacklogAlarm"].actions == ["ScaleOutPolicy"]
    assert m.alarms["QueueIdleAlarm"].actions == ["ScaleInPolicy"]


# --------------------------------------------------------------------------- scale out


def test_first_visible_message_starts_a_worker(template):
    m = model(template)
    minutes = run(m, [Sample(visible=0)] * 3 + [Sample(visible=1)])
    assert [x.capacity_after for x in minutes] == [0, 0, 0, 1]
    assert minutes[-1].in_alarm == ("BacklogAlarm",)
    assert minutes[-1].chosen == "ScaleOutPolicy"


@pytest.mark.parametrize("backlog", [1, 5, 10, 11, 35, 99, 100, 101, 250, 1000, 100000])
@pytest.mark.parametrize("per_instance,max_size", [(10, 20), (1, 50), (7, 1000), (1, 1000)])
def test_capacity_follows_the_backlog_without_overshooting(template, backlog, per_instance, max_size):
    """While nothing is consumed yet (instances booting), the group grows every minute toward
    ceil(visible / MessagesPerInstance), capped at MaxSize, never above it and never down."""
    m = model(template, MessagesPerInstance=per_instance, MaxSize=max_size)
    target = min(max_size, math.ceil(backlog / per_instance))
    minutes = run(m, [Sample(visible=backlog)] * 12)
    caps = [x.capacity_after for x in minutes]
    assert caps[-1] == target
    assert all(c <= target for c in caps)
    assert caps == sorted(caps)
    # Each minute at least halves the shortfall (steps of 1, 2, 4 ... 512): fast for any backlog.
    assert caps.index(target) <= math.ceil(math.log2(target))


def test_more_backlog_means_more_workers(template):
    m = model(template, MessagesPerInstance=10, MaxSize=100)
    final = [run(m, [Sample(visible=b)] * 10)[-1].capacity_after for b in (1, 20, 50, 200, 500)]
    assert final == [1, 2, 5, 20, 50]


def test_a_growing_backlog_adds_workers_to_a_running_group(template):
    m = model(template, MessagesPerInstance=10, MaxSize=50)
    minutes = run(m, [Sample(visible=30, in_flight=10)] * 3 + [Sample(visible=200, in_flight=30)] * 4, capacity=3)
    assert minutes[2].capacity_after == 3  # 30 visible / 10 = 3: enough
    assert minutes[-1].capacity_after == 20


def test_scale_out_never_removes_workers(template):
    """Fewer visible jobs than the group can take is not a reason to shrink: only the idle rule
    scales in."""
    m = model(template, MessagesPerInstance=10, MaxSize=20)
    minutes = run(m, [Sample(visible=5, in_flight=40)] * 10, capacity=8)
    assert all(x.capacity_after == 8 for x in minutes)
    assert all("ScaleOutPolicy" not in x.policies_run for x in minutes)


# --------------------------------------------------------------------------- scale in


def test_never_scales_in_while_jobs_are_in_flight(template):
    m = model(template, QuietMinutes=3)
    # Nothing visible for an hour, but always one job running (a long job, or the last ones).
    minutes = run(m, [Sample(visible=0, in_flight=1)] * 60, capacity=4)
    assert {x.capacity_after for x in minutes} == {4}
    assert all("QueueIdleAlarm" not in x.in_alarm for x in minutes)


def test_returns_to_zero_after_quiet_minutes(template):
    k = 5
    m = model(template, QuietMinutes=k)
    busy = [Sample(visible=20, in_flight=10)] * 3 + [Sample(visible=0, in_flight=6)] * 2
    minutes = run(m, busy + [Sample(visible=0, in_flight=0)] * (k + 2), capacity=3)
    caps = [x.capacity_after for x in minutes]
    first_quiet = len(busy)
    assert caps[first_quiet + k - 2] == 3  # k-1 quiet minutes: still up
    assert caps[first_quiet + k - 1] == 0  # the k-th quiet minute: to zero
    assert minutes[first_quiet + k - 1].chosen == "ScaleInPolicy"


def test_one_busy_minute_restarts_the_quiet_count(template):
    k = 4
    m = model(template, QuietMinutes=k)
    quiet, blip = Sample(visible=0, in_flight=0), Sample(visible=0, in_flight=1)
    caps = [x.capacity_after for x in run(m, [quiet] * (k - 1) + [blip] + [quiet] * (k - 1), capacity=2)]
    assert set(caps) == {2}
    assert run(m, [quiet] * (k - 1) + [blip] + [quiet] * k, capacity=2)[-1].capacity_after == 0


def test_missing_metrics_never_scale_in(template):
    m = model(template, QuietMinutes=2)
    gap = Sample(visible=None, in_flight=None)
    assert {x.capacity_after for x in run(m, [gap] * 30, capacity=3)} == {3}


@pytest.mark.parametrize("seed", range(20))
def test_random_traffic_respects_both_rules(template, seed):
    """Property check over random traffic: capacity only drops after K quiet minutes, only to 0,
    and never exceeds what the visible backlog asks for unless the group was already larger."""
    rng = random.Random(seed)
    k = rng.randint(1, 8)
    per = rng.choice([1, 5, 10])
    max_size = rng.randint(1, 30)
    m = model(template, QuietMinutes=k, MessagesPerInstance=per, MaxSize=max_size)
    samples = []
    for _ in range(120):
        if rng.random() < 0.3:
            samples.append(Sample(visible=0, in_flight=0))
        else:
            samples.append(Sample(visible=rng.choice([0, 0, 1, 3, 30, 300]), in_flight=rng.choice([0, 1, 10])))
    minutes = run(m, samples)
    for i, x in enumerate(minutes):
        window = samples[max(0, i - k + 1):i + 1]
        if x.capacity_after < x.capacity_before:
            assert x.capacity_after == 0
            assert len(window) == k and all(s.visible == 0 and s.in_flight == 0 for s in window)
        if x.capacity_after > x.capacity_before:
            assert x.capacity_after <= min(max_size, math.ceil(samples[i].visible / per))


def test_a_whole_batch(template):
    """0 → workers on the first jobs, grow with the backlog, drain, wait K quiet minutes → 0."""
    m = model(template, MessagesPerInstance=10, MaxSize=10, QuietMinutes=3)
    samples = ([Sample(visible=1)] + [Sample(visible=500)] * 3 + [Sample(visible=200, in_flight=80)] * 3
               + [Sample(visible=0, in_flight=12)] * 2 + [Sample()] * 4)
    caps = [x.capacity_after for x in run(m, samples)]
    assert caps == [1, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0, 0]


# --------------------------------------------------------------------------- alarms for people


def test_dead_letters_and_old_jobs_notify(template):
    m = model(template, MaxMessageAgeSeconds=600)
    minutes = run(m, [Sample(dead_letters=1)] + [Sample(visible=3, in_flight=3, oldest_age_s=900, capacity=1)] * 5)
    assert "DeadLetterAlarm" in minutes[0].notifications
    assert "OldestJobAlarm" not in minutes[3].in_alarm  # 4 of 5 minutes over the limit
    assert "OldestJobAlarm" in minutes[5].notifications


# --------------------------------------------------------------------------- the expression evaluator


def test_expression_evaluator():
    e = scaling.Expression("CEIL(visible / 10) - FILL(desired, 0)")
    assert e.ids() == {"visible", "desired"}
    assert e.evaluate({"visible": 11, "desired": None}) == 2
    assert e.evaluate({"visible": None, "desired": 1}) is None
    assert scaling.Expression("visible + inflight").evaluate({"visible": 2, "inflight": 3}) == 5
    assert scaling.Expression("-a * (b + 2) / 4").evaluate({"a": 2, "b": 2}) == -2
    assert scaling.Expression("MAX([a, b, 3])").evaluate({"a": 1, "b": None}) == 3
    assert scaling.Expression("a / b").evaluate({"a": 1, "b": 0}) is None
    for bad in ("RATE(m1)", "a +", "a $ b", "(a"):
        with pytest.raises(scaling.ExpressionError):
            scaling.Expression(bad)


def test_step_bounds_follow_aws_rules():
    p = scaling.ScalingPolicy("p", "StepScaling", "ChangeInCapacity", steps=[
        scaling.StepAdjustment(0, 1, 1), scaling.StepAdjustment(1, None, 5), scaling.StepAdjustment(None, 0, -1)])
    assert p.new_capacity(2, 0) == 3  # the lower bound is inclusive above the threshold
    assert p.new_capacity(2, 1) == 7
    assert p.new_capacity(2, -0.5) == 1  # below it the upper bound is inclusive


# --------------------------------------------------------------------------- moto: protection


def _group(session, desired: int):
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.2.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="workers", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3.micro",
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}})
    autoscaling = session.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="workers", MinSize=0, MaxSize=4, DesiredCapacity=desired, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateName": "workers", "Version": "$Latest"},
        NewInstancesProtectedFromScaleIn=False)
    return autoscaling


def _instances(autoscaling) -> dict[str, bool]:
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]
    return {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group["Instances"]}


def _wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_busy_protected_instance_survives_scale_in_to_zero():
    """The worker's own InstanceProtector marks its instance while a job runs; scaling the group to
    zero (the scale-in policy, as the idle alarm would run it) removes only the idle instance. Once
    the worker is idle again its instance goes on the next scale-in."""
    from moto import mock_aws

    from filejobs.ec2 import InstanceProtector

    with mock_aws():
        session = boto3.Session(region_name=REGION)
        autoscaling = _group(session, desired=2)
        busy, idle = sorted(_instances(autoscaling))
        protector = InstanceProtector(autoscaling, busy, idle_grace_s=0.1)
        assert protector.group == "workers"  # found through DescribeAutoScalingInstances
        protector.set_busy(True)  # what the worker does when it receives a job
        assert _wait_for(lambda: _instances(autoscaling)[busy] is True)

        # The template's scale-in policy (SimpleScaling, ExactCapacity 0), run as the idle alarm does.
        autoscaling.put_scaling_policy(AutoScalingGroupName="workers", PolicyName="scale-in",
                                       PolicyType="SimpleScaling", AdjustmentType="ExactCapacity",
                                       ScalingAdjustment=0, Cooldown=60)
        autoscaling.execute_policy(AutoScalingGroupName="workers", PolicyName="scale-in", HonorCooldown=False)
        assert _instances(autoscaling) == {busy: True}
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]
        assert group["DesiredCapacity"] == 0
        ec2 = session.client("ec2")
        state = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=[busy, idle])[
            "Reservations"] for i in r["Instances"]}
        assert state == {busy: "running", idle: "terminated"}

        # The job ends; the worker clears protection (on its main thread at shutdown it does so at
        # once); the next scale-in takes the instance.
        protector.set_busy(False)
        protector.sync()
        assert _instances(autoscaling) == {busy: False}
        autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=0)
        assert _instances(autoscaling) == {}


def test_set_desired_capacity_and_update_group_respect_protection_too():
    from moto import mock_aws

    with mock_aws():
        session = boto3.Session(region_name=REGION)
        autoscaling = _group(session, desired=3)
        ids = sorted(_instances(autoscaling))
        autoscaling.set_instance_protection(InstanceIds=ids[:2], AutoScalingGroupName="workers",
                                            ProtectedFromScaleIn=True)
        autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=1)
        assert sorted(_instances(autoscaling)) == ids[:2]
        autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MinSize=0, DesiredCapacity=0)
        assert sorted(_instances(autoscaling)) == ids[:2]
