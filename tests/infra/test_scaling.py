"""The scaling rules of the shipped template, replayed minute by minute (filejobs.ops.replay), and
scale-in protection against moto's Auto Scaling.

CloudWatch never evaluates alarms in moto, so the rules are read from the template itself
(``scaling.load_model()``) and replayed: from queue metrics (``simulate``), and with a simulated
fleet that runs a workload (``run``: instances, slots, protection, lifecycle drain, Spot). What
moto does implement (instance protection, desired capacity) is checked against moto.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random

import pytest

from filejobs.ops import replay, scaling
from filejobs.ops.replay import Fleet, Sample, Workload
from filejobs.ops.template import load_template
from testing import helpers

REGION = "us-east-1"


@pytest.fixture(scope="module")
def template():
    return load_template()


def model(template, **parameters):
    return scaling.load_model(template, parameters)


def run(m, samples, capacity=0, **kwargs):
    return replay.simulate(m, samples, capacity=capacity, **kwargs)


def with_warmup(m, seconds):
    return dataclasses.replace(m, group=dataclasses.replace(m.group, default_warmup_s=seconds))


def test_the_model_is_the_shipped_templates(template):
    m = scaling.load_model(parameters={"MaxSize": 7, "QuietMinutes": 4, "MessagesPerInstance": 25,
                                       "SlotsPerInstance": 3, "GraceSeconds": "300"})
    assert (m.min_size, m.max_size, m.group_name) == (0, 7, "filejobs-workers")
    assert set(m.alarms) == {"BacklogAlarm", "SurplusAlarm", "DeadLetterAlarm", "OldestJobAlarm", "BootFailureAlarm"}
    assert m.alarms["BacklogAlarm"].expression.text == "CEIL(visible / 25) - FILL(FILL(desired, REPEAT), 0)"
    surplus = m.alarms["SurplusAlarm"]
    assert surplus.expression.text == "FILL(FILL(desired, REPEAT), 0) - MAX([running, backlog])"
    assert {k: e.text for k, e in surplus.intermediates.items()} == {
        "running": "CEIL((visible + inflight) / 3)", "backlog": "CEIL(visible / 25)"}
    assert (m.alarms["SurplusAlarm"].evaluation_periods, m.alarms["SurplusAlarm"].datapoints_to_alarm) == (4, 4)
    assert m.alarms["BacklogAlarm"].actions == ["ScaleOutPolicy"] and m.alarms["SurplusAlarm"].actions == ["ScaleInPolicy"]
    # The same number drives the workers' concurrency (user data) and the scale-in math.
    assert (m.worker.slots, m.worker.grace_s, m.worker.job_timeout_s) == (3, 300.0, 3600.0)
    assert m.group.drain_timeout_s == 360  # the lifecycle hook: grace + 60 s
    assert (m.group.on_demand_base, m.group.on_demand_percent, m.group.capacity_rebalance) == (0, 0, True)


# --------------------------------------------------------------------------- scale out (metrics replay)


def test_first_visible_message_starts_a_worker(template):
    minutes = run(model(template), [Sample(visible=0)] * 3 + [Sample(visible=1)])
    assert [x.capacity_after for x in minutes] == [0, 0, 0, 1]
    assert minutes[-1].in_alarm == ("BacklogAlarm",) and minutes[-1].chosen == "ScaleOutPolicy"


@pytest.mark.parametrize("backlog", [1, 5, 10, 11, 35, 99, 100, 101, 250, 1000, 100000])
@pytest.mark.parametrize("per_instance,max_size", [(10, 20), (1, 50), (7, 1000), (1, 1000)])
def test_capacity_follows_the_backlog_without_overshooting(template, backlog, per_instance, max_size):
    """With fresh metrics and no warm-up, the group grows every minute toward ceil(visible / M),
    capped at MaxSize, never above it and never down, at least halving the shortfall each minute."""
    m = with_warmup(model(template, MessagesPerInstance=per_instance, MaxSize=max_size), 0)
    target = min(max_size, math.ceil(backlog / per_instance))
    caps = [x.capacity_after for x in run(m, [Sample(visible=backlog)] * 12)]
    assert caps[-1] == target and all(c <= target for c in caps) and caps == sorted(caps)
    assert caps.index(target) <= math.ceil(math.log2(target))


def test_warm_up_drops_steps_when_metrics_are_fresh(template):
    """Finding 4: with the template's 120 s warm-up, instances launched in the last two minutes are
    not current capacity for step scaling, while the shortfall already subtracts them: the next step
    is dropped until they warm up. 3,000 waiting jobs, 10 per instance: 300 instances."""
    m = model(template, MaxSize=1000)
    assert m.warmup_s(m.policies["ScaleOutPolicy"]) == 120
    slow = [x.capacity_after for x in run(m, [Sample(visible=3000)] * 8)]
    fast = [x.capacity_after for x in run(with_warmup(m, 0), [Sample(visible=3000)] * 8)]
    assert fast[:4] == [256, 288, 296, 300]
    assert slow[:6] == [256, 256, 288, 288, 296, 296]  # one step every two minutes


def test_a_missing_desired_capacity_repeats_the_last_one(template):
    """Finding 8: group metrics are best effort. A gap in GroupDesiredCapacity must not count as 0
    (that would add a whole group's worth of instances): FILL(desired, REPEAT) uses the last value."""
    m = with_warmup(model(template, MaxSize=100), 0)
    samples = [Sample(visible=200)] * 3 + [Sample(visible=200, desired_missing=True)] * 3
    caps = [x.capacity_after for x in run(m, samples)]
    assert caps == [16, 20, 20, 20, 20, 20]
    zero_filled = copy.deepcopy(m)
    zero_filled.alarms["BacklogAlarm"].expression = scaling.Expression("CEIL(visible / 10) - FILL(desired, 0)")
    assert [x.capacity_after for x in run(zero_filled, samples)] == [16, 20, 20, 36, 52, 68]  # what the fix avoids


def test_scale_out_never_removes_workers(template):
    m = model(template, MessagesPerInstance=10, MaxSize=20)
    minutes = run(m, [Sample(visible=5, in_flight=40)] * 10, capacity=8)
    assert all(x.capacity_after == 8 for x in minutes) and all("ScaleOutPolicy" not in x.policies_run for x in minutes)


# --------------------------------------------------------------------------- scale in (metrics replay)


def test_partial_scale_in_toward_what_the_jobs_need(template):
    """Finding 2: 40 instances, 2 slots each, 6 jobs left in flight: after QuietMinutes minutes of
    surplus the group shrinks toward ceil(6 / 2) = 3, never below it."""
    k = 3
    m = model(template, QuietMinutes=k, SlotsPerInstance=2, MaxSize=50)
    caps = [x.capacity_after for x in run(m, [Sample(visible=0, in_flight=6)] * 10, capacity=40)]
    assert caps[:k - 1] == [40] * (k - 1)
    assert caps[k - 1] == 8 and caps[k] == 4 and caps[-1] == 3


def test_one_busy_minute_restarts_the_quiet_count(template):
    k = 4
    m = model(template, QuietMinutes=k)
    quiet, busy = Sample(visible=0, in_flight=0), Sample(visible=0, in_flight=4)
    caps = [x.capacity_after for x in run(m, [quiet] * (k - 1) + [busy] + [quiet] * (k - 1), capacity=2)]
    assert set(caps) == {2}
    assert run(m, [quiet] * (k - 1) + [busy] + [quiet] * k, capacity=2)[-1].capacity_after == 0


def test_missing_queue_metrics_never_scale_in(template):
    gap = Sample(visible=None, in_flight=None)
    assert {x.capacity_after for x in run(model(template, QuietMinutes=2), [gap] * 30, capacity=3)} == {3}


@pytest.mark.parametrize("seed", range(20))
def test_random_traffic_respects_both_rules(template, seed):
    """Capacity drops only after K minutes in which it exceeded what the jobs needed, and never
    below what they need now; it grows only up to what the visible backlog asks for. Whatever
    MessagesPerInstance and SlotsPerInstance are, the two rules never pull against each other."""
    rng = random.Random(seed)
    k, slots = rng.randint(1, 6), rng.choice([1, 2, 4])
    per, max_size = rng.choice([1, slots, 10, 25]), rng.randint(1, 30)
    m = with_warmup(model(template, QuietMinutes=k, MessagesPerInstance=per, MaxSize=max_size,
                          SlotsPerInstance=slots), 0)
    samples = [Sample(visible=rng.choice([0, 0, 1, 3, 30, 300]), in_flight=rng.choice([0, 1, 10]))
               for _ in range(120)]
    need = [max(math.ceil((s.visible + s.in_flight) / slots), math.ceil(s.visible / per)) for s in samples]
    minutes = run(m, samples)
    for i, x in enumerate(minutes):
        if x.capacity_after < x.capacity_before:
            assert i >= k - 1
            assert all(minutes[j].capacity_before > need[j] for j in range(i - k + 1, i + 1))
            assert x.capacity_after >= need[i]
        if x.capacity_after > x.capacity_before:
            assert x.capacity_after <= min(max_size, math.ceil(samples[i].visible / per))


def test_dead_letters_old_jobs_and_boot_failures_notify(template):
    m = model(template, MaxMessageAgeSeconds=600)
    minutes = run(m, [Sample(dead_letters=1)] + [Sample(visible=3, in_flight=3, oldest_age_s=900, capacity=1)] * 5)
    assert "DeadLetterAlarm" in minutes[0].notifications
    assert "OldestJobAlarm" not in minutes[3].in_alarm and "OldestJobAlarm" in minutes[5].notifications
    rules = scaling.Rules(m)
    assert rules.step(0, {"boot_failures": 1}, desired=1).notifications == ("BootFailureAlarm",)


# --------------------------------------------------------------------------- the fleet replay


def old_rule(template, quiet_minutes: int) -> dict:
    """The template before partial scale-in: to zero only once visible + in flight had been 0 for
    QuietMinutes minutes (SimpleScaling ExactCapacity 0), nothing in between."""
    t = copy.deepcopy(template)
    res = t["Resources"]
    del res["SurplusAlarm"], res["ScaleInPolicy"]
    res["ScaleInPolicy"] = {"Type": "AWS::AutoScaling::ScalingPolicy", "Properties": {
        "AutoScalingGroupName": {"Ref": "WorkerGroup"}, "PolicyType": "SimpleScaling",
        "AdjustmentType": "ExactCapacity", "ScalingAdjustment": 0, "Cooldown": "60"}}
    metric = lambda name: {"Namespace": "AWS/SQS", "MetricName": name,  # noqa: E731
                           "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}]}
    res["QueueIdleAlarm"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "ComparisonOperator": "LessThanOrEqualToThreshold", "Threshold": 0, "EvaluationPeriods": quiet_minutes,
        "DatapointsToAlarm": quiet_minutes, "TreatMissingData": "notBreaching",
        "AlarmActions": [{"Ref": "ScaleInPolicy"}], "Metrics": [
            {"Id": "outstanding", "Expression": "visible + inflight", "ReturnData": True},
            {"Id": "visible", "ReturnData": False, "MetricStat": {
                "Metric": metric("ApproximateNumberOfMessagesVisible"), "Period": 60, "Stat": "Maximum"}},
            {"Id": "inflight", "ReturnData": False, "MetricStat": {
                "Metric": metric("ApproximateNumberOfMessagesNotVisible"), "Period": 60, "Stat": "Maximum"}}]}}
    return t


BURST = Workload.of(1000, 60)
STRAGGLER = Workload.of(1000, 60).plus(3600)
FIGURES = {}  # filled by the test below, printed in its failure message and in the note


@pytest.mark.parametrize("name,workload", [("a", BURST), ("b", STRAGGLER)])
def test_instance_minutes_before_and_after_partial_scale_in(template, name, workload):
    """1,000 x 60 s jobs on MaxSize 50 (a), and the same plus one 60-minute job (b). Before: the old
    to-zero rule (QuietMinutes 10, its default then). After: the shipped template. The straggler
    no longer holds 50 instances for an hour; no busy instance is ever terminated."""
    params = {"MaxSize": 50, "JobTimeout": 7200}
    before = replay.run(scaling.load_model(old_rule(template, 10), params), workload)
    after = replay.run(scaling.load_model(template, params), workload)
    FIGURES[name] = (round(before.instance_minutes), round(after.instance_minutes))
    for result in (before, after):
        assert (result.jobs_lost, result.busy_terminated, result.jobs_cut) == (0, 0, 0), result.as_dict()
        assert result.peak_instances == 50 and result.empty_s is not None
    if name == "a":
        assert after.instance_minutes <= before.instance_minutes
        assert 850 <= after.instance_minutes <= 1000, FIGURES
    else:
        assert before.instance_minutes > 50 * 60, FIGURES  # 50 instances for the straggler's hour
        assert after.instance_minutes < 1100, FIGURES
        assert after.instance_minutes < before.instance_minutes / 3, FIGURES
        # Only the straggler's instance stays up; it goes once its job is done.
        tail = [row for row in after.series if row.minute > 30 and row.minute < 60]
        assert {row.instances for row in tail} == {1} and {row.busy for row in tail} == {1}


def test_a_run_is_repeatable_with_its_seed(template):
    m = scaling.load_model(template, {"MaxSize": 20})
    w = Workload.of(300, (20, 90), seed=3)
    a, b = replay.run(m, w, Fleet(seed=5, spot_rate_per_hour=2)), replay.run(m, w, Fleet(seed=5, spot_rate_per_hour=2))
    assert a.as_dict() == b.as_dict() and a.series == b.series


def test_protection_keeps_busy_instances_through_every_scale_in(template):
    """Random workloads with long and short jobs at a steady rate: scale-in removes instances many
    times, and never one that runs a job."""
    m = scaling.load_model(template, {"MaxSize": 30, "QuietMinutes": 2, "SlotsPerInstance": 2})
    removed = 0
    for seed in range(6):
        durations = [random.Random(seed + i).choice([30, 60, 600, 1800]) for i in range(400)]
        result = replay.run(m, Workload.of(400, durations, rate_per_min=40), Fleet(seed=seed))
        removed += sum(max(0, a.instances - b.instances) for a, b in zip(result.series, result.series[1:]))
        assert (result.busy_terminated, result.jobs_cut, result.jobs_lost) == (0, 0, 0), result.as_dict()
    assert removed > 50  # scale-in really happened, often


def test_the_termination_hook_covers_the_protection_race(template):
    """Protection takes effect only after ReceiveMessage returns. Stretch that window to 30 s: scale-in
    then picks instances that have just taken a job. With the lifecycle hook they drain and release
    the job (visibility 0), nothing is cut; without it the jobs are cut and come back only after the
    visibility timeout."""
    m = scaling.load_model(template, {"MaxSize": 30, "QuietMinutes": 1, "SlotsPerInstance": 1,
                                      "MessagesPerInstance": 1})
    work = Workload.of(600, [random.Random(i).choice([20, 45, 300]) for i in range(600)], rate_per_min=10)
    hooked = replay.run(m, work, Fleet(protect_lag_s=30, seed=1))
    bare = replay.run(m, work, Fleet(protect_lag_s=30, seed=1, lifecycle_hook=False))
    assert hooked.busy_terminated > 0 and bare.busy_terminated > 0  # the race happened in both
    assert hooked.jobs_cut == 0 and hooked.jobs_lost == 0 and hooked.jobs_released > 0
    assert bare.jobs_cut > 0 and bare.jobs_lost == 0  # recovered, but only after the visibility timeout


def test_spot_interruptions_drain_and_lose_nothing(template):
    """Two-minute notices: the worker stops taking jobs, lets those that can finish in time finish,
    releases the others; the group replaces the instance. 5-minute jobs cannot finish: released."""
    m = scaling.load_model(template, {"MaxSize": 10})
    notices = ((600.0, 3), (900.0, 2), (1500.0, 4))
    short = replay.run(m, Workload.of(400, 40), Fleet(spot_notices=notices, seed=2))
    long = replay.run(m, Workload.of(120, 300), Fleet(spot_notices=notices, seed=2))
    for result in (short, long):
        assert result.interruptions == 9 and result.jobs_lost == 0 and result.jobs_cut == 0, result.as_dict()
        assert result.busy_terminated == 0
    assert long.jobs_released >= 9 and short.jobs_released == 0  # 40 s jobs finish inside the notice
    assert max(r.instances for r in long.series) <= 10 + 9  # replacements, not a runaway group


def test_random_spot_interruptions_with_an_on_demand_base(template):
    m = scaling.load_model(template, {"MaxSize": 12, "OnDemandBaseCapacity": 2})
    result = replay.run(m, Workload.of(1500, (30, 120), seed=4), Fleet(spot_rate_per_hour=3, seed=4))
    assert result.interruptions > 0 and result.jobs_lost == 0 and result.jobs_cut == 0 and result.busy_terminated == 0


def test_missing_desired_datapoints_do_not_inflate_the_fleet(template):
    m = scaling.load_model(template, {"MaxSize": 200})
    gaps = replay.run(m, Workload.of(2000, 120), Fleet(missing_desired=frozenset({3, 4, 5})))
    assert gaps.peak_instances <= 200 and max(r.desired for r in gaps.series) == 200
    assert gaps.jobs_lost == 0 and gaps.busy_terminated == 0


def test_more_jobs_never_drain_sooner(template):
    m = scaling.load_model(template, {"MaxSize": 10})
    drained = [replay.run(m, Workload.of(n, 45)).drained_s for n in (50, 100, 200, 400)]
    assert drained == sorted(drained)


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
        LaunchTemplate={"LaunchTemplateName": "workers", "Version": "$Latest"}, NewInstancesProtectedFromScaleIn=False)
    return autoscaling


def _instances(autoscaling) -> dict[str, bool]:
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]
    return {i["InstanceId"]: i["ProtectedFromScaleIn"] for i in group["Instances"]}


def test_a_partial_scale_in_removes_only_unprotected_instances():
    """What the replay assumes, on moto: lowering the desired capacity terminates unprotected
    instances only; with too few of them the desired capacity still drops and the protected ones
    stay until their protection is cleared."""
    from moto import mock_aws

    with mock_aws():
        autoscaling = _group(helpers.session(REGION), desired=4)
        ids = sorted(_instances(autoscaling))
        autoscaling.set_instance_protection(InstanceIds=ids[:2], AutoScalingGroupName="workers",
                                            ProtectedFromScaleIn=True)
        autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=3)
        assert sorted(_instances(autoscaling)) != ids and set(ids[:2]) <= set(_instances(autoscaling))
        autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=1)
        assert sorted(_instances(autoscaling)) == ids[:2]
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]
        assert group["DesiredCapacity"] == 1


def test_the_replay_and_the_artifact_builder_need_neither_boto3_nor_yaml_to_import():
    """They ship for `jobctl simulate`/`deploy`; PyYAML is loaded only when a template is read."""
    import subprocess
    import sys

    code = ("import sys, filejobs.ops.scaling, filejobs.ops.replay, filejobs.ops.fleet, filejobs.ops.metricmath, "
            "filejobs.ops.template, filejobs.ops.artifact; "
            "print(sorted(m for m in ('boto3', 'botocore', 'yaml', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
