"""`jobctl destroy` against a stack `jobctl deploy` made in moto: the teardown's order, that nothing is
deleted before the workers are drained (unless --force), that only a bucket the stack created is
emptied and deleted, and that a rerun after an interruption finishes the job.

moto's CloudFormation skips the alarms, so the test creates them with boto3 and lists them among the
stack's resources (answering ListStackResources). moto has no lifecycle hooks and terminates an
instance at once; the drain the hook gives a busy worker is played by the fake clock's sleeps (the
worker finishes its job and deletes its message, or the instance waits in Terminating:Wait).
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from filejobs.ops import cfn
from filejobs.ops.template import load_template
from testing.awsstub import error
from testing.helpers import REGION
from testing.opsenv import error_line, ops_env, write_artifact

STACK = "fj"
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse")
DESTRUCTIVE = ("sqs:PurgeQueue", "s3:DeleteObjects", "s3:AbortMultipartUpload", "s3:DeleteBucket",
               "cloudformation:DeleteStack")


@pytest.fixture
def env(tmp_path):
    with ops_env() as e:
        try:
            e.plain["cloudwatch"].disable_alarm_actions(AlarmNames=["none"])
        except NotImplementedError:  # moto before 5.2 (what Python 3.9 gets)
            pytest.skip("this moto does not implement CloudWatch DisableAlarmActions, which destroy calls")
        archive = write_artifact(str(tmp_path / "filejobs-9.9.9-wheelhouse.tar.gz"))
        assert e.jobctl("deploy", STACK, "--artifact", archive, "--yes").exit_code == 0
        e.stack = e.plain["cloudformation"].describe_stacks(StackName=STACK)["Stacks"][0]
        e.out = cfn.outputs(e.stack)
        e.alarms = with_alarms(e)
        e.calls.calls.clear()
        yield e


def with_alarms(env) -> list[str]:
    """The stack's five alarms, created as CloudFormation would name them, listed among its resources."""
    cloudwatch, real = env.plain["cloudwatch"], env.plain["cloudformation"]
    names = [f"{STACK}-{a}-ABC123" for a in ("BacklogAlarm", "SurplusAlarm", "DeadLetterAlarm", "OldestJobAlarm",
                                             "BootFailureAlarm")]
    for name in names:
        cloudwatch.put_metric_alarm(AlarmName=name, MetricName="ApproximateNumberOfMessagesVisible",
                                    Namespace="AWS/SQS", Statistic="Maximum", Period=60, EvaluationPeriods=1,
                                    Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
                                    AlarmActions=["arn:aws:sns:us-east-1:123456789012:topic"])

    def list_resources(params):
        page = copy.deepcopy(real.list_stack_resources(**params))
        page["StackResourceSummaries"] += [
            {"LogicalResourceId": n.split("-")[1], "PhysicalResourceId": n, "ResourceType": "AWS::CloudWatch::Alarm",
             "ResourceStatus": "CREATE_COMPLETE", "LastUpdatedTimestamp": datetime(2026, 12, 4, tzinfo=timezone.utc)}
            for n in names]
        return page

    env.calls.answer("cloudformation", "ListStackResources", list_resources)
    return names


def fill(env, *, instances: int = 3, busy: int = 1, waiting: int = 4, running: int = 1) -> list[dict]:
    """Inputs and outputs in the bucket and an unfinished upload; jobs waiting and running; instances
    in the group, ``busy`` of them protected (running a job). The running jobs' messages are returned."""
    s3, sqs, autoscaling = env.plain["s3"], env.plain["sqs"], env.plain["autoscaling"]
    bucket, queue = env.out["BucketName"], env.out["QueueUrl"]
    for key in ("input/a.txt", "input/b c.txt", "output/a.txt.out", "errors/batch/x.json"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"data")
    s3.create_multipart_upload(Bucket=bucket, Key="input/huge.bin")
    for i in range(waiting + running):
        sqs.send_message(QueueUrl=queue, MessageBody=f'{{"job": {i}}}')
    held = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=running, VisibilityTimeout=600)["Messages"] \
        if running else []
    group = env.out["AutoScalingGroupName"]
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=4,
                                          DesiredCapacity=instances)
    ids = sorted(i["InstanceId"] for i in autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"])
    if busy:
        autoscaling.set_instance_protection(AutoScalingGroupName=group, InstanceIds=ids[:busy],
                                            ProtectedFromScaleIn=True)
    return held


def worker_finishes(env, held: list[dict], at_sleep: int):
    """The busy worker's job ends at the ``at_sleep``-th sleep: its output is written, then its message
    deleted (through the recorded client, so it appears in the call order)."""
    def on_sleep(n):
        if n == at_sleep:
            env.plain["s3"].put_object(Bucket=env.out["BucketName"], Key="output/late.out", Body=b"x")
            for m in held:
                env.clients["sqs"].delete_message(QueueUrl=env.out["QueueUrl"], ReceiptHandle=m["ReceiptHandle"])
    env.clock.on_sleep = on_sleep


def bucket_exists(env, bucket: str) -> bool:
    return any(b["Name"] == bucket for b in env.plain["s3"].list_buckets()["Buckets"])


def stack_exists(env) -> bool:
    return cfn.describe_stack(env.plain["cloudformation"], STACK) is not None


# --------------------------------------------------------------------------- the order


def test_teardown_stops_work_drains_then_purges_empties_and_deletes_in_that_order(env):
    held = fill(env)
    worker_finishes(env, held, at_sleep=3)
    result = env.jobctl("destroy", STACK, input="y\n")
    assert result.exit_code == 0, result.stderr
    plan = result.stderr.split("delete stack fj and all of the above?")[0]
    assert "group fj-workers: 3 instances, 1 busy" in plan and "4 waiting, 1 in flight" in plan
    assert f"bucket {env.out['BucketName']}: 5 objects (versions included): emptied and deleted" in plan  # and the artifact
    names = env.calls.names()
    first = lambda name: names.index(name)  # noqa: E731
    assert first("cloudwatch:DisableAlarmActions") < first("autoscaling:UpdateAutoScalingGroup") \
        < first("autoscaling:TerminateInstanceInAutoScalingGroup") < first("sqs:DeleteMessage")
    # Nothing is deleted before the worker's job is done (its message deleted) ...
    assert all(first(name) > first("sqs:DeleteMessage") for name in DESTRUCTIVE), names
    # ... then the queues, the bucket (before the stack, which still names it), the stack.
    assert first("sqs:PurgeQueue") < first("s3:DeleteObjects") < first("s3:AbortMultipartUpload") \
        < first("s3:DeleteBucket") < first("cloudformation:DeleteStack")
    assert sorted(env.calls.of("cloudwatch", "DisableAlarmActions")[0]["AlarmNames"]) == sorted(env.alarms)
    assert env.calls.of("autoscaling", "UpdateAutoScalingGroup")[0] == {
        "AutoScalingGroupName": "fj-workers", "MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0}
    # The busy instance went through the group (its termination hook drains it), not EC2.
    (terminate,) = env.calls.of("autoscaling", "TerminateInstanceInAutoScalingGroup")
    assert terminate["ShouldDecrementDesiredCapacity"] is False
    assert len(env.calls.of("sqs", "PurgeQueue")) == 2
    assert not bucket_exists(env, env.out["BucketName"]) and not stack_exists(env)
    assert f"destroyed fj; bucket {env.out['BucketName']} deleted" in result.stdout
    alarms = env.plain["cloudwatch"].describe_alarms(AlarmNames=env.alarms)["MetricAlarms"]
    assert {a["ActionsEnabled"] for a in alarms} == {False}


def test_an_instance_held_by_its_termination_hook_is_waited_for(env):
    """The hook keeps a terminating instance in Terminating:Wait while its worker drains (moto has no
    hooks: DescribeAutoScalingGroups is answered so for two polls)."""
    fill(env, instances=1, busy=1, running=0)
    real = env.plain["autoscaling"]

    def describe(params):
        page = copy.deepcopy(real.describe_auto_scaling_groups(**params))
        if env.calls.of("autoscaling", "TerminateInstanceInAutoScalingGroup") and len(env.clock.sleeps) < 2:
            page["AutoScalingGroups"][0]["Instances"] = [{"InstanceId": "i-0draining", "LifecycleState":
                                                          "Terminating:Wait", "ProtectedFromScaleIn": True}]
        return page

    env.calls.answer("autoscaling", "DescribeAutoScalingGroups", describe)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "1 instances (1 Terminating:Wait), 0 jobs in flight" in result.stderr
    assert env.clock.sleeps == [10.0, 10.0]
    assert not stack_exists(env)


def test_workers_that_do_not_drain_in_time_stop_the_teardown_before_anything_is_deleted(env):
    fill(env)
    result = env.jobctl("destroy", STACK, "--yes", "--timeout", "60")
    assert result.exit_code == 7
    line = error_line(result)
    assert "still draining after 60 s" in line and "1 jobs in flight" in line and "add --force" in line
    assert not any(name in env.calls.names() for name in DESTRUCTIVE)
    assert stack_exists(env) and bucket_exists(env, env.out["BucketName"])
    assert sum(env.clock.sleeps) >= 60
    # --force does not wait: the rest goes at once.
    result = env.jobctl("destroy", STACK, "--yes", "--force")
    assert result.exit_code == 0 and "--force: not waiting for" in result.stderr
    assert not stack_exists(env) and not bucket_exists(env, env.out["BucketName"])


def test_the_default_limit_is_the_stacks_grace_and_visibility(env):
    fill(env)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 7 and "still draining after 360 s" in error_line(result)  # 120 + 120 + 120


def test_declining_changes_nothing(env):
    fill(env)
    result = env.jobctl("destroy", STACK, input="n\n")
    assert result.exit_code == 1 and "not confirmed: nothing was changed" in error_line(result)
    assert not any(n.split(":")[1].startswith(("Update", "Disable", "Terminate", "Purge", "Delete"))
                   for n in env.calls.names())


# --------------------------------------------------------------------------- the bucket


def test_keep_bucket_keeps_it_and_its_data(env):
    fill(env, instances=0, busy=0, running=0)
    result = env.jobctl("destroy", STACK, "--yes", "--keep-bucket")
    assert result.exit_code == 0, result.stderr
    bucket = env.out["BucketName"]
    assert not stack_exists(env) and bucket_exists(env, bucket)  # DeletionPolicy: Retain
    keys = [o["Key"] for o in env.plain["s3"].list_objects_v2(Bucket=bucket)["Contents"]]
    assert "input/a.txt" in keys and "output/a.txt.out" in keys
    assert not [c for c in env.calls.calls if c[0] == "s3" and c[1] in ("DeleteObjects", "DeleteBucket")]
    assert f"bucket {bucket} kept" in result.stdout


def test_a_bucket_the_stack_did_not_create_is_never_emptied(env):
    """A Bucket resource whose name is not the template's filejobs-<stack id> (imported into the stack)."""
    s3 = env.plain["s3"]
    s3.create_bucket(Bucket="someone-elses-data")
    s3.put_object(Bucket="someone-elses-data", Key="precious.txt", Body=b"keep me")
    real = env.plain["cloudformation"]

    def list_resources(params):
        page = copy.deepcopy(real.list_stack_resources(**params))
        for r in page["StackResourceSummaries"]:
            if r.get("LogicalResourceId") == "Bucket":
                r["PhysicalResourceId"] = "someone-elses-data"
        return page

    env.calls.answer("cloudformation", "ListStackResources", list_resources)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "bucket someone-elses-data: not created by this stack: kept" in result.stderr
    assert s3.get_object(Bucket="someone-elses-data", Key="precious.txt")["Body"].read() == b"keep me"
    assert not [p for s, op, p in env.calls.calls if s == "s3" and p.get("Bucket") == "someone-elses-data"]


def test_keep_bucket_refuses_a_stack_whose_template_would_delete_it(env):
    """A stack deployed from an older template (DeletionPolicy Delete) would lose the bucket with it."""
    old = load_template()
    old["Resources"]["Bucket"]["DeletionPolicy"] = "Delete"
    real = env.plain["cloudformation"]
    env.calls.answer("cloudformation", "GetTemplate", lambda p: {"TemplateBody": old})
    result = env.jobctl("destroy", STACK, "--yes", "--keep-bucket")
    assert result.exit_code == 6
    assert "deployed from a template that deletes its bucket" in error_line(result)
    assert real.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert "autoscaling:UpdateAutoScalingGroup" not in env.calls.names()


def test_the_bucket_a_plain_delete_stack_left_behind_is_removed(env):
    """DeletionPolicy Retain: `aws cloudformation delete-stack` keeps the bucket; destroy finds it
    through the deleted stack's resources."""
    fill(env, instances=0, busy=0, running=0)
    env.plain["cloudformation"].delete_stack(StackName=STACK)
    bucket = env.out["BucketName"]
    assert bucket_exists(env, bucket)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "is already deleted; its bucket" in result.stderr and not bucket_exists(env, bucket)
    again = env.jobctl("destroy", STACK, "--yes")
    assert again.exit_code == 0 and "nothing to destroy" in again.stderr


# --------------------------------------------------------------------------- reruns and failures


def test_a_rerun_after_an_interruption_finishes_the_job(env):
    fill(env, instances=2, busy=0, running=0)

    def interrupted(params):
        raise KeyboardInterrupt

    env.calls.answer("cloudformation", "DeleteStack", interrupted)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert stack_exists(env) and not bucket_exists(env, env.out["BucketName"])  # stopped just before the stack
    env.calls.answer("cloudformation", "DeleteStack", None)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 0, result.stderr
    assert not stack_exists(env)
    assert "nothing to destroy" in env.jobctl("destroy", STACK, "--yes").stderr


def test_a_stack_that_fails_to_delete_says_which_resource_and_why_exit_5(env):
    real = env.plain["cloudformation"]
    failed = {"EventId": "e1", "StackName": STACK, "LogicalResourceId": "WorkerSecurityGroup",
              "ResourceType": "AWS::EC2::SecurityGroup", "ResourceStatus": "DELETE_FAILED",
              "ResourceStatusReason": "resource sg-1 has a dependent object",
              "Timestamp": datetime(2026, 12, 4, 12, 0, 1, tzinfo=timezone.utc)}
    deleting = []

    def describe(params):
        stack = copy.deepcopy(real.describe_stacks(**params)["Stacks"][0])
        if deleting:
            stack["StackStatus"] = "DELETE_FAILED"
        return {"Stacks": [stack]}

    env.calls.answer("cloudformation", "DeleteStack", lambda p: deleting.append(p) or {})
    env.calls.answer("cloudformation", "DescribeStacks", describe)
    env.calls.answer("cloudformation", "DescribeStackEvents", lambda p: {"StackEvents": [failed] if deleting else []})
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 5
    assert "WorkerSecurityGroup (AWS::EC2::SecurityGroup): resource sg-1 has a dependent object" in error_line(result)


def test_a_stack_in_progress_is_left_alone_exit_6(env):
    real = env.plain["cloudformation"]

    def describe(params):
        stack = copy.deepcopy(real.describe_stacks(**params)["Stacks"][0])
        stack["StackStatus"] = "UPDATE_IN_PROGRESS"
        return {"Stacks": [stack]}

    env.calls.answer("cloudformation", "DescribeStacks", describe)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 6 and "is UPDATE_IN_PROGRESS: wait until it is done" in error_line(result)
    assert env.calls.names() == ["cloudformation:DescribeStacks"]


def test_a_missing_permission_names_the_action_exit_4(env):
    fill(env, instances=0, busy=0, running=0)
    denied = ("User: arn:aws:iam::123456789012:user/ops is not authorized to perform: "
              "autoscaling:UpdateAutoScalingGroup on resource: arn:aws:autoscaling:us-east-1:123456789012:"
              "autoScalingGroup:*:autoScalingGroupName/fj-workers because no identity-based policy allows it")
    env.calls.answer("autoscaling", "UpdateAutoScalingGroup", lambda p: error("AccessDenied", denied, 403))
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 4
    assert "missing permission autoscaling:UpdateAutoScalingGroup" in error_line(result)
    assert bucket_exists(env, env.out["BucketName"]) and stack_exists(env)


def test_no_stack_is_nothing_to_destroy(env):
    result = env.jobctl("destroy", "never-made", "--yes")
    assert result.exit_code == 0 and f"stack never-made does not exist in {REGION}: nothing to destroy" in result.stderr


def test_what_a_failed_creation_left_is_removed(env):
    """After a rollback (moto never rolls back: ListStackResources and DescribeStacks are answered as
    AWS has them then) the stack is ROLLBACK_COMPLETE, its resources DELETE_COMPLETE except the
    bucket, retained (DELETE_SKIPPED): destroy deletes that bucket and the stack, nothing else."""
    real = env.plain["cloudformation"]

    def list_resources(params):
        page = copy.deepcopy(real.list_stack_resources(**params))
        for r in page["StackResourceSummaries"]:
            r["ResourceStatus"] = "DELETE_SKIPPED" if r.get("LogicalResourceId") == "Bucket" else "DELETE_COMPLETE"
        return page

    def describe(params):
        stack = copy.deepcopy(real.describe_stacks(**params)["Stacks"][0])
        if stack["StackStatus"] == "CREATE_COMPLETE":
            stack["StackStatus"] = "ROLLBACK_COMPLETE"
        return {"Stacks": [stack]}

    env.calls.answer("cloudformation", "ListStackResources", list_resources)
    env.calls.answer("cloudformation", "DescribeStacks", describe)
    result = env.jobctl("destroy", STACK, "--yes")
    assert result.exit_code == 0, result.stderr
    names = env.calls.names()
    for untouched in ("cloudwatch:DisableAlarmActions", "autoscaling:UpdateAutoScalingGroup", "sqs:PurgeQueue"):
        assert untouched not in names
    assert not bucket_exists(env, env.out["BucketName"]) and "cloudformation:DeleteStack" in names
