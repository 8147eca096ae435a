"""`jobctl deploy` against moto's CloudFormation: the plan, the calls and their order, the change set
on a rerun, the artifact upload, and each failure as one line with its exit status.

moto creates this stack (and skips its scaling policies, alarms and bucket/queue policies, which
tests/infra/test_template.py covers from the template). What moto cannot do is answered by the test
through botocore's hooks (testing.awsstub), each place saying why: moto cannot execute an UPDATE of
this stack (it sees every List parameter as changed and then fails to re-create the Auto Scaling
group), never rolls back, and never denies access. Other moto differences the code allows for: a
stack made by executing a CREATE change set has no Outputs in moto (so a new stack is made with
CreateStack, after its plan is shown, and only updates go through change sets); DescribeStacks gives
an SSM-typed parameter's value without ResolvedValue, and a List parameter as Python's repr.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from filejobs.ops import cfn
from filejobs.ops.template import load_template
from testing.awsstub import error
from testing.helpers import REGION, ROOT, cli_runner
from testing.opsenv import error_line, ops_env, write_artifact

STACK = "fj"
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse")
KEY = "code/filejobs-9.9.9-wheelhouse.tar.gz"


@pytest.fixture
def env():
    with ops_env() as e:
        yield e


@pytest.fixture
def archive(tmp_path):
    return write_artifact(str(tmp_path / "filejobs-9.9.9-wheelhouse.tar.gz"))


def deploy(env, archive, *args, input=None):
    return env.jobctl("deploy", STACK, "--artifact", archive, *args, input=input)


def stack_of(env) -> dict:
    return env.plain["cloudformation"].describe_stacks(StackName=STACK)["Stacks"][0]


def default_network(env) -> tuple[str, list[str]]:
    ec2 = env.plain["ec2"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                            {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return vpc, [s["SubnetId"] for s in sorted(subnets, key=lambda s: s["AvailabilityZone"])]


# --------------------------------------------------------------------------- create


def test_a_new_stack_is_shown_created_in_the_default_vpc_and_given_its_artifact(env, archive):
    result = deploy(env, archive, "--yes", "--max-size", "6", "--command", "convert -resize 50%",
                    "--packages", "ImageMagick")
    assert result.exit_code == 0, result.stderr
    vpc, subnets = default_network(env)
    assert f"VpcId = {vpc}" in result.stderr and "MaxSize = 6" in result.stderr and f"CodeKey = {KEY}" in result.stderr
    assert "WorkerGroup" in result.stderr and "CREATE_COMPLETE" in result.stderr  # the plan, then the events
    names = env.calls.names()
    order = ["cloudformation:DescribeStacks", "ec2:DescribeVpcs", "ec2:DescribeSubnets", "cloudformation:CreateStack",
             "cloudformation:DescribeStackEvents", "s3:HeadObject", "s3:PutObject"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order), names
    (create,) = env.calls.of("cloudformation", "CreateStack")
    params = {p["ParameterKey"]: p["ParameterValue"] for p in create["Parameters"]}
    assert (params["VpcId"], params["Subnets"].split(","), params["CodeKey"]) == (vpc, subnets, KEY)
    assert (params["MaxSize"], params["Command"], params["QuietMinutes"]) == ("6", "convert -resize 50%", "5")
    assert create["Capabilities"] == ["CAPABILITY_IAM"]
    # The shipped template, sent as compact JSON: the YAML file is over CloudFormation's inline limit.
    assert json.loads(create["TemplateBody"]) == load_template()
    assert len(create["TemplateBody"].encode()) <= cfn.TEMPLATE_BODY_LIMIT < os.path.getsize(
        os.path.join(ROOT, "filejobs/infra/stack.yaml"))
    out = cfn.outputs(stack_of(env))
    head = env.plain["s3"].head_object(Bucket=out["BucketName"], Key=KEY)
    assert head["Metadata"]["sha256"] and head["ContentLength"] == os.path.getsize(archive)
    group = env.plain["autoscaling"].describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{STACK}-workers"])["AutoScalingGroups"][0]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 6, 0)


def test_what_it_prints_is_how_to_use_the_stack(env, archive):
    result = deploy(env, archive, "--yes", "--output-extension", ".png", "--slots-per-instance", "4",
                    "--command", "convert -resize 50%")
    assert result.exit_code == 0, result.stderr
    out = cfn.outputs(stack_of(env))
    bucket, queue = out["BucketName"], out["QueueUrl"]
    assert f"sendjobs DIR {bucket} input/ output/ {queue} {REGION}" in result.stdout
    assert (f"getjobs --concurrency 4 --bucket {bucket} --input-prefix input/ --output-prefix output/ "
            f"--job-timeout 3600 --grace 120 WORK_DIR .png {queue} {REGION} convert -resize 50%") in result.stdout
    assert f"jobctl status {bucket} --ext .png --region {REGION}" in result.stdout
    assert out["DashboardUrl"] in result.stdout and f"jobctl destroy {STACK} --region {REGION}" in result.stdout
    info = json.loads(deploy(env, archive, "--yes", "--json").stdout)
    assert (info["action"], info["bucket"], info["queue_url"], info["artifact_uploaded"]) == (
        "unchanged", bucket, queue, False)


def test_nothing_is_created_without_a_yes(env, archive):
    result = deploy(env, archive, input="n\n")
    assert result.exit_code == 1 and "not confirmed: nothing was created" in error_line(result)
    assert "cloudformation:CreateStack" not in env.calls.names()
    assert deploy(env, archive, input="y\n").exit_code == 0  # the question, answered yes
    assert stack_of(env)["StackStatus"] == "CREATE_COMPLETE"


def test_subnets_without_a_vpc_give_their_vpc(env, archive):
    ec2 = env.plain["ec2"]
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    assert deploy(env, archive, "--yes", "--subnets", subnet).exit_code == 0
    (create,) = env.calls.of("cloudformation", "CreateStack")
    params = {p["ParameterKey"]: p["ParameterValue"] for p in create["Parameters"]}
    assert (params["VpcId"], params["Subnets"]) == (vpc, subnet)
    assert "ec2:DescribeVpcs" not in env.calls.names()


def test_a_region_without_a_default_vpc_is_one_line(env, archive):
    env.calls.answer("ec2", "DescribeVpcs", lambda p: {"Vpcs": []})
    result = deploy(env, archive, "--yes")
    assert result.exit_code == 1
    assert "has no default VPC: pass --vpc-id and --subnets" in error_line(result)


def test_a_parameter_cloudformation_would_refuse_is_a_usage_error_before_any_call(env, archive):
    for args, why in ((("--max-size", "0"), "below the minimum 1"), (("--command", "rm -rf /; x"), "no shell"),
                      (("--grace-seconds", "45"), "is not one of")):
        result = deploy(env, archive, *args)
        assert result.exit_code == 2 and why in result.stderr, result.stderr
    assert env.calls.calls == []


# --------------------------------------------------------------------------- rerun and update


def test_a_rerun_with_no_change_says_so_and_changes_nothing(env, archive):
    assert deploy(env, archive, "--yes").exit_code == 0
    before = len(env.calls.calls)
    result = deploy(env, archive, "--yes")
    assert result.exit_code == 0 and f"stack {STACK} is up to date: no change" in result.stderr
    assert "is up to date" in result.stderr.split("no change", 1)[1]  # the artifact too: same bytes
    names = env.calls.names()[before:]
    assert "cloudformation:CreateChangeSet" in names
    for changing in ("cloudformation:ExecuteChangeSet", "cloudformation:CreateStack", "s3:PutObject"):
        assert changing not in names
    assert env.plain["cloudformation"].list_change_sets(StackName=STACK)["Summaries"] == []  # deleted again


def test_cloudformation_saying_nothing_changed_is_no_change(env, archive):
    """On AWS an identical request gives a change set that FAILED with this reason (moto instead
    accepts it with no change, which the previous test covers)."""
    assert deploy(env, archive, "--yes").exit_code == 0
    reason = ("The submitted information didn't contain changes. Submit different information to create a "
              "change set.")
    env.calls.answer("cloudformation", "DescribeChangeSet", lambda p: {
        "ChangeSetId": p["ChangeSetName"], "Status": "FAILED", "StatusReason": reason, "Changes": []})
    result = deploy(env, archive, "--yes")
    assert result.exit_code == 0 and "up to date: no change" in result.stderr
    assert "cloudformation:DeleteChangeSet" in env.calls.names()
    assert "cloudformation:ExecuteChangeSet" not in env.calls.names()


def execute_in_place_of_moto(env, final_status: str, events: list | None = None):
    """moto cannot execute an UPDATE change set of this stack (see the module's docstring): record
    the ExecuteChangeSet and answer DescribeStacks with the stack in ``final_status``."""
    real = env.plain["cloudformation"]
    executed = []

    def describe(params):
        stack = copy.deepcopy(real.describe_stacks(StackName=params["StackName"])["Stacks"][0])
        if executed:
            stack["StackStatus"] = final_status
        return {"Stacks": [stack]}

    env.calls.answer("cloudformation", "ExecuteChangeSet", lambda p: executed.append(p) or {})
    env.calls.answer("cloudformation", "DescribeStacks", describe)
    if events is not None:
        env.calls.answer("cloudformation", "DescribeStackEvents", lambda p: {"StackEvents": events if executed else []})
    return executed


def test_a_changed_parameter_is_a_change_set_shown_then_applied(env, archive):
    assert deploy(env, archive, "--yes", "--max-size", "6").exit_code == 0
    vpc, subnets = default_network(env)
    executed = execute_in_place_of_moto(env, "UPDATE_COMPLETE")
    before = len(env.calls.calls)
    result = deploy(env, archive, "--max-size", "8", input="y\n")
    assert result.exit_code == 0, result.stderr
    assert "parameter MaxSize: '6' -> '8'" in result.stderr and "apply these changes to fj?" in result.stderr
    names = env.calls.names()[before:]
    assert names.index("cloudformation:CreateChangeSet") < names.index("cloudformation:DescribeChangeSet") \
        < names.index("cloudformation:ExecuteChangeSet")
    (change_set,) = env.calls.of("cloudformation", "CreateChangeSet")
    params = {p["ParameterKey"]: p.get("ParameterValue") for p in change_set["Parameters"]}
    # The new value; every other parameter as DescribeStacks gives it (not the template's default).
    # (moto renders a List parameter as Python's repr of a list, AWS as "a,b": either is sent back as is.)
    previous = cfn.parameters(env.plain["cloudformation"].describe_stacks(StackName=STACK)["Stacks"][0])
    assert (params["MaxSize"], params["VpcId"], params["Subnets"], params["CodeKey"]) == (
        "8", vpc, previous["Subnets"], KEY)
    assert all(subnet in params["Subnets"] for subnet in subnets)
    assert change_set["ChangeSetType"] == "UPDATE" and change_set["Capabilities"] == ["CAPABILITY_IAM"]
    assert executed and executed[0]["ChangeSetName"].startswith("arn:aws:cloudformation:")
    # What CloudFormation will change is what it computed (moto computes no resource changes for an update).
    shown = env.plain["cloudformation"].describe_change_set(ChangeSetName=executed[0]["ChangeSetName"])
    assert {p["ParameterKey"]: p["ParameterValue"] for p in shown["Parameters"]}["MaxSize"] == "8"


def test_a_declined_change_set_is_deleted_and_nothing_changes(env, archive):
    assert deploy(env, archive, "--yes").exit_code == 0
    result = deploy(env, archive, "--max-size", "9", input="n\n")
    assert result.exit_code == 1 and "not confirmed: nothing was changed" in error_line(result)
    assert "cloudformation:DeleteChangeSet" in env.calls.names()
    assert "cloudformation:ExecuteChangeSet" not in env.calls.names()
    assert cfn.parameters(stack_of(env))["MaxSize"] == "4"


def test_a_new_version_uploads_its_artifact_before_the_update_runs(env, archive, tmp_path):
    assert deploy(env, archive, "--yes").exit_code == 0
    newer = write_artifact(str(tmp_path / "filejobs-9.9.10-wheelhouse.tar.gz"), b"newer wheels")
    execute_in_place_of_moto(env, "UPDATE_COMPLETE")
    before = len(env.calls.calls)
    result = env.jobctl("deploy", STACK, "--artifact", newer, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "parameter CodeKey: 'code/filejobs-9.9.9-wheelhouse.tar.gz' -> 'code/filejobs-9.9.10-wheelhouse.tar.gz'" \
        in result.stderr
    names = env.calls.names()[before:]
    assert names.index("s3:PutObject") < names.index("cloudformation:ExecuteChangeSet")  # no instance boots without it


# --------------------------------------------------------------------------- failures, one line each


def test_no_credentials_is_one_line_exit_3(archive, monkeypatch, tmp_path):
    """The real path, no moto: botocore finds no credentials before sending anything."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup on 169.254.169.254
    
    from filejobs import cli

    result = cli_runner().invoke(cli.cli, ["deploy", STACK, "--artifact", archive, "--yes", "--region", REGION],
                                prog_name="jobctl")
    assert result.exit_code == 3
    assert "no AWS credentials found" in error_line(result)


DENIED = ("User: arn:aws:iam::123456789012:user/ci is not authorized to perform: cloudformation:CreateStack on "
          "resource: arn:aws:cloudformation:us-east-1:123456789012:stack/fj/* because no identity-based policy "
          "allows the cloudformation:CreateStack action")


def test_a_missing_permission_names_the_action_exit_4(env, archive):
    env.calls.answer("cloudformation", "CreateStack", lambda p: error("AccessDenied", DENIED, 403))
    result = deploy(env, archive, "--yes")
    assert result.exit_code == 4
    assert "missing permission cloudformation:CreateStack" in error_line(result)


def test_a_denied_s3_call_names_its_iam_action_exit_4(env, archive):
    """S3 says only "Access Denied": the action comes from the operation (HeadObject is s3:GetObject)."""
    assert deploy(env, archive, "--yes").exit_code == 0
    env.calls.answer("s3", "HeadObject", lambda p: error("403", "Forbidden", 403))
    result = deploy(env, archive, "--yes")
    assert result.exit_code == 4 and "missing permission s3:GetObject" in error_line(result)


def event(logical: str, status: str, reason: str = "", kind: str = "AWS::IAM::Role", n: int = 0) -> dict:
    return {"EventId": f"{logical}-{status}-{n}", "StackName": STACK, "LogicalResourceId": logical,
            "ResourceType": kind, "ResourceStatus": status, "ResourceStatusReason": reason,
            "Timestamp": datetime(2026, 12, 4, 12, 0, n, tzinfo=timezone.utc)}


ROLE_FAILED = ("Resource handler returned message: \"User: arn:aws:iam::123456789012:user/ci is not authorized "
               "to perform: iam:CreateRole\" (HandlerErrorCode: AccessDenied)")


def test_a_rollback_names_the_first_failing_resource_and_why_exit_5(env, archive):
    """moto never rolls back: CreateStack and what follows are answered as AWS does when the role fails."""
    stack_id = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{STACK}/0a1b2c3d-0000-1111-2222-333344445555"
    created = []
    events = [event(STACK, "ROLLBACK_COMPLETE", kind="AWS::CloudFormation::Stack", n=9),
              event("Queue", "DELETE_COMPLETE", kind="AWS::SQS::Queue", n=8),
              event(STACK, "ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [WorkerRole].",
                    kind="AWS::CloudFormation::Stack", n=7),
              event("Queue", "CREATE_FAILED", "Resource creation cancelled", kind="AWS::SQS::Queue", n=6),
              event("WorkerRole", "CREATE_FAILED", ROLE_FAILED, n=5),
              event("WorkerRole", "CREATE_IN_PROGRESS", n=4),
              event(STACK, "CREATE_IN_PROGRESS", "User Initiated", kind="AWS::CloudFormation::Stack", n=1)]

    def describe(params):
        if not created:
            return error("ValidationError", f"Stack with id {STACK} does not exist")
        return {"Stacks": [{"StackName": STACK, "StackId": stack_id, "StackStatus": "ROLLBACK_COMPLETE",
                            "CreationTime": datetime(2026, 12, 4, tzinfo=timezone.utc)}]}

    env.calls.answer("cloudformation", "CreateStack", lambda p: created.append(p) or {"StackId": stack_id})
    env.calls.answer("cloudformation", "DescribeStacks", describe)
    env.calls.answer("cloudformation", "DescribeStackEvents", lambda p: {"StackEvents": events})
    result = deploy(env, archive, "--yes")
    assert result.exit_code == 5
    line = error_line(result)
    assert "stack fj was not created (ROLLBACK_COMPLETE): WorkerRole (AWS::IAM::Role):" in line
    assert "not authorized to perform: iam:CreateRole" in line and "'jobctl destroy fj'" in line
    assert "12:00:05  CREATE_FAILED" in result.stderr  # the live view showed the events, oldest first
    assert "s3:PutObject" not in env.calls.names()


def test_a_failed_update_is_rolled_back_and_says_why_exit_5(env, archive):
    assert deploy(env, archive, "--yes").exit_code == 0
    failed = [event("UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", kind="AWS::CloudFormation::Stack", n=3),
              event("WorkerGroup", "UPDATE_FAILED", "You have requested more vCPU capacity than your current "
                    "vCPU limit of 32 allows", kind="AWS::AutoScaling::AutoScalingGroup", n=2)]
    execute_in_place_of_moto(env, "UPDATE_ROLLBACK_COMPLETE", failed)
    result = deploy(env, archive, "--yes", "--max-size", "200")
    assert result.exit_code == 5
    line = error_line(result)
    assert "the update of stack fj failed and was rolled back (UPDATE_ROLLBACK_COMPLETE)" in line
    assert "WorkerGroup (AWS::AutoScaling::AutoScalingGroup): You have requested more vCPU capacity" in line


@pytest.mark.parametrize("status,says", [
    ("UPDATE_IN_PROGRESS", "wait until it is done"),
    ("ROLLBACK_COMPLETE", "remove it with 'jobctl destroy fj'"),
    ("UPDATE_ROLLBACK_FAILED", "continue-update-rollback"),
])
def test_a_stack_that_cannot_be_updated_is_one_line_exit_6(env, archive, status, says):
    env.calls.answer("cloudformation", "DescribeStacks", lambda p: {"Stacks": [{
        "StackName": STACK, "StackId": f"arn:aws:cloudformation:{REGION}:123456789012:stack/{STACK}/x",
        "StackStatus": status, "CreationTime": datetime(2026, 12, 4, tzinfo=timezone.utc)}]})
    result = deploy(env, archive, "--yes")
    assert result.exit_code == 6
    assert status in error_line(result) and says in error_line(result)
    assert env.calls.names() == ["cloudformation:DescribeStacks"]


def test_without_pyyaml_deploy_says_what_to_install_and_status_still_works():
    """PyYAML is in the deploy extra only: the worker's install has no PyYAML."""
    code = ("import sys; sys.modules['yaml'] = None; sys.argv = ['jobctl'] + sys.argv[1:]; "
            "from filejobs.cli import main; main()")
    run = lambda *args: subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,  # noqa: E731
                                       cwd=ROOT, env={**os.environ, "AWS_REGION": REGION})
    deploy_run = run("deploy", STACK)
    assert deploy_run.returncode == 1
    assert deploy_run.stderr.strip() == ("jobctl: error: reading the CloudFormation template needs PyYAML: "
                                         "pip install 'filejobs[deploy]'")
    assert run("status", "--help").returncode == 0
    assert run("--help").returncode == 0 and "deploy" in run("--help").stdout
