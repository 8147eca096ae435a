"""filejobs/infra/stack.yaml: lint, the template read as an operator would run it, a deployment into
moto's CloudFormation (one per module), and the parts moto skips (alarms, scaling policies, bucket
and queue policies, lifecycle hooks, bucket notifications) created or applied with boto3 from the
template's own properties.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from filejobs.aws import dead_letter_target
from filejobs.events import METRIC_NAMESPACE
from filejobs.ops.template import Resolver, TEMPLATE_PATH, load_template, resources_of_type
from testing import policy
from testing.helpers import ROOT, isolate_aws
from testing import helpers

# moto's CloudFormation says which resource types it skips; the tests below cover those from the template.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
# 76 characters: "<stack>-jobs" would pass SQS's 80. (moto does not shorten generated names as
# CloudFormation does, so a longer one would make it clash its own queue names.)
STACK = "fj-" + "x" * 73


def read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def template():
    return load_template()


def resource(template, name):
    return template["Resources"][name]


def props(template, name, **values):
    return Resolver(template, values).resolve(resource(template, name)["Properties"])


# --------------------------------------------------------------------------- lint


def test_cfn_lint_reports_nothing_not_even_informational():
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(Path(TEMPLATE_PATH), config=ManualArgs(include_checks=["I"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_cfn_lint_catches_a_broken_template():
    from cfnlint.api import lint_all

    broken = read(TEMPLATE_PATH).replace("HttpTokens: required", "HttpTokens: requird")
    assert any(m.rule.id.startswith("E") for m in lint_all(broken))


def test_every_suppressed_check_says_why(template):
    suppressed = []
    for name, spec in template["Resources"].items():
        meta = spec.get("Metadata", {})
        for skip in meta.get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]) and len(skip.get("comment", "")) >= 40, (name, skip)
            suppressed.append(skip["id"])
        for check in meta.get("cfn-lint", {}).get("config", {}).get("ignore_checks", []):
            suppressed.append(check)
    assert "# I1022 prefers Fn::Sub to Fn::Join" in read(TEMPLATE_PATH)
    assert sorted(suppressed) == ["CKV_AWS_18", "CKV_AWS_21", "CKV_AWS_27", "CKV_AWS_27", "I1022"]


def test_checkov_finds_nothing_that_is_not_suppressed_with_its_reason():
    checkov = os.environ.get("CHECKOV") or shutil.which("checkov")
    if not checkov:
        pytest.skip("checkov is not installed (it pins too much to live in .[dev]: install it in its own venv "
                    "and set CHECKOV=/path/to/checkov)")
    result = subprocess.run([checkov, "-f", TEMPLATE_PATH, "--framework", "cloudformation", "--skip-download",
                             "-o", "json"], capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    skipped = sorted(c["check_id"] for c in report["results"]["skipped_checks"])
    assert failed == [] and skipped == ["CKV_AWS_18", "CKV_AWS_21", "CKV_AWS_27", "CKV_AWS_27"]
    assert report["summary"]["passed"] >= 25


# --------------------------------------------------------------------------- the template, read


def test_storage_is_private_encrypted_and_tls_only(template):
    bucket = resource(template, "Bucket")["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "SSEAlgorithm"] == "AES256"
    for name, action in (("BucketPolicy", "s3:*"), ("QueuePolicy", "sqs:*")):
        stmt = resource(template, name)["Properties"]["PolicyDocument"]["Statement"][0]
        assert stmt["Effect"] == "Deny" and stmt["Principal"] == "*" and stmt["Action"] == action
        assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    for q in ("Queue", "DeadLetterQueue"):
        assert resource(template, q)["Properties"]["SqsManagedSseEnabled"] is True


def test_alarm_notifications_use_a_key_cloudwatch_may_use(template):
    """Finding 1: CloudWatch cannot publish to a topic encrypted with alias/aws/sns. The topic (and the
    log group) use the stack's own key, whose policy lets CloudWatch decrypt and generate data keys."""
    assert "alias/aws/sns" not in json.dumps(template)
    assert resource(template, "AlarmTopic")["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["EncryptionKey", "Arn"]}
    key = props(template, "EncryptionKey", **{"AWS::StackName": "fj"})
    assert key["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    cloudwatch = statements["CloudWatchAlarmsPublishToTheEncryptedTopic"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and cloudwatch["Effect"] == "Allow"
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"} and "Condition" not in cloudwatch
    logs = statements["CloudWatchLogsEncryptsTheWorkerLogGroup"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"].endswith("log-group:/filejobs/fj")
    log_group = props(template, "WorkerLogGroup", **{"AWS::StackName": "fj"})
    assert log_group["LogGroupName"] == "/filejobs/fj" and log_group["RetentionInDays"] == "30"
    assert log_group["KmsKeyId"] == "EncryptionKey.Arn"
    for name in ("DeadLetterAlarm", "OldestJobAlarm", "BootFailureAlarm"):
        assert resource(template, name)["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_dashboard_shows_what_an_operator_watches(template):
    values = {"Queue.QueueName": "fj-Queue-1", "DeadLetterQueue.QueueName": "fj-DeadLetterQueue-2",
              "WorkerGroup": "fj-workers"}
    body = json.loads(props(template, "Dashboard", **values)["DashboardBody"])
    seen = set()
    for widget in body["widgets"]:
        last = None
        for metric in widget["properties"]["metrics"]:
            parts = [p for p in metric if not isinstance(p, dict)]
            if parts == ["..."]:
                parts = last
            parts = [prev if p == "." else p for p, prev in zip(parts, last or parts)]
            last = parts
            opts = metric[-1] if isinstance(metric[-1], dict) else {}
            seen.add((parts[0], parts[1], parts[3], opts.get("stat", widget["properties"].get("stat"))))
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible", "fj-Queue-1", "Maximum"),
            ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "fj-Queue-1", "Maximum"),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "fj-DeadLetterQueue-2", "Maximum"),
            ("AWS/SQS", "ApproximateAgeOfOldestMessage", "fj-Queue-1", "Maximum"),
            ("AWS/AutoScaling", "GroupDesiredCapacity", "fj-workers", "Maximum"),
            ("AWS/AutoScaling", "GroupInServiceInstances", "fj-workers", "Maximum"),
            (METRIC_NAMESPACE, "JobsDone", "fj-Queue-1", "Sum"), (METRIC_NAMESPACE, "JobsFailed", "fj-Queue-1", "Sum"),
            (METRIC_NAMESPACE, "JobDuration", "fj-Queue-1", "p50"), (METRIC_NAMESPACE, "JobDuration", "fj-Queue-1", "p90"),
            (METRIC_NAMESPACE, "BootFailures", "fj-workers", "Sum")} <= seen
    group_metrics = resource(template, "WorkerGroup")["Properties"]["MetricsCollection"][0]["Metrics"]
    assert set(group_metrics) == {"GroupDesiredCapacity", "GroupInServiceInstances"}
    assert "#dashboards:name=${Dashboard}" in template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]


def test_spot_with_several_types_and_an_on_demand_base(template):
    group = props(template, "WorkerGroup")
    mixed = group["MixedInstancesPolicy"]
    assert mixed["InstancesDistribution"] == {"OnDemandBaseCapacity": "0", "OnDemandPercentageAboveBaseCapacity": "0",
                                              "SpotAllocationStrategy": "price-capacity-optimized"}
    (override,) = mixed["LaunchTemplate"]["Overrides"]
    assert override["InstanceRequirements"]["AllowedInstanceTypes"] == [
        "c7i.large", "c6i.large", "c6a.large", "m7i.large", "m6i.large"]
    arm = props(template, "WorkerGroup", Architecture="arm64")["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"][0]
    assert arm["InstanceRequirements"]["AllowedInstanceTypes"] == ["c7g.large", "c6g.large", "m7g.large", "m6g.large"]
    chosen = props(template, "WorkerGroup", InstanceTypes="r7i.large,r6i.*")["MixedInstancesPolicy"]
    assert chosen["LaunchTemplate"]["Overrides"][0]["InstanceRequirements"]["AllowedInstanceTypes"] == [
        "r7i.large", "r6i.*"]
    assert group["CapacityRebalance"] is True
    data = props(template, "LaunchTemplate", LatestAmiIdX86="ami-x86", LatestAmiIdArm64="ami-arm")["LaunchTemplateData"]
    assert data["ImageId"] == "ami-x86" and "InstanceType" not in data
    assert props(template, "LaunchTemplate", Architecture="arm64", LatestAmiIdArm64="ami-arm")[
        "LaunchTemplateData"]["ImageId"] == "ami-arm"


def test_the_termination_hook_waits_grace_plus_a_minute(template):
    allowed = template["Parameters"]["GraceSeconds"]["AllowedValues"]
    for grace in allowed:
        (hook,) = props(template, "WorkerGroup", GraceSeconds=grace)["LifecycleHookSpecificationList"]
        assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
        assert int(hook["HeartbeatTimeout"]) == int(grace) + 60 and hook["DefaultResult"] == "CONTINUE"
    assert props(template, "WorkerGroup")["NewInstancesProtectedFromScaleIn"] is False


def test_commands_get_their_packages_and_a_bounded_run_time(template):
    """Finding 3 and 9: dnf packages with a strict pattern, an optional setup script under code/,
    and a job timeout of an hour by default."""
    params = template["Parameters"]
    packages, script = re.compile(params["Packages"]["AllowedPattern"]), re.compile(params["SetupScriptKey"]["AllowedPattern"])
    for ok in ("", "ImageMagick", "ImageMagick ghostscript python3.12-numpy", "gcc-c++"):
        assert packages.fullmatch(ok), ok
    for bad in ("ImageMagick; rm -rf /", "$(id)", "a  b", " a", "-y", "a\nb", "pkg>=1"):
        assert not packages.fullmatch(bad), bad
    for ok in ("", "code/setup.sh", "code/tools/prepare-env.sh"):
        assert script.fullmatch(ok), ok
    for bad in ("setup.sh", "code/../input/x.sh", "code/.hidden", "code/a b.sh", "code/"):
        assert not script.fullmatch(bad), bad
    assert params["JobTimeout"]["Default"] == 3600
    command = re.compile(params["Command"]["AllowedPattern"])
    for ok in ("cp", "convert -resize 50%", "pandoc {input} -o {output}", "ffmpeg -i {input} -vf scale=640:-1 {output}"):
        assert command.fullmatch(ok), ok
    for bad in ("cp; id", "$(id)", "a|b", "x > y", "`id`", "a\nb", "it's"):
        assert not command.fullmatch(bad), bad


def test_no_name_grows_past_its_limit_with_the_longest_stack_name(template):
    """Finding 7: CloudFormation names the queues itself (shortened to SQS's 80 characters); the
    names built from the stack name fit their services' limits for a 128-character stack name."""
    for q in ("Queue", "DeadLetterQueue"):
        assert "QueueName" not in resource(template, q)["Properties"]
    longest = {"AWS::StackName": "s" * 128}
    assert len(props(template, "WorkerGroup", **longest)["AutoScalingGroupName"]) <= 255
    assert len(props(template, "WorkerLogGroup", **longest)["LogGroupName"]) <= 512
    bucket = props(template, "Bucket")["BucketName"]
    assert re.fullmatch(r"filejobs-[0-9a-f-]{36}", bucket) and len(bucket) <= 63


def test_s3_events_are_off_by_default_and_only_this_bucket_may_send(template):
    assert "NotificationConfiguration" not in props(template, "Bucket")
    assert len(props(template, "QueuePolicy")["PolicyDocument"]["Statement"]) == 1
    on = {"S3EventNotifications": "true", "Queue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:jobs"}
    bucket = props(template, "Bucket", **on)
    (config,) = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*" and config["Queue"] == on["Queue.Arn"]
    assert config["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "input/"}]
    allow = props(template, "QueuePolicy", **on)["PolicyDocument"]["Statement"][1]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket['BucketName']}"},
                                  "StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert resource(template, "Bucket")["DependsOn"] == "QueuePolicy"


def test_private_subnets_get_endpoints_for_every_service_a_worker_calls(template):
    endpoints = {n: s for n, s in resources_of_type(template, "AWS::EC2::VPCEndpoint").items()}
    assert all(s.get("Condition") == "UseVpcEndpoints" for s in endpoints.values())
    services = {props(template, n, VpcEndpoints="true")["ServiceName"].rsplit(".", 1)[1] for n in endpoints}
    assert services == {"s3", "sqs", "autoscaling", "logs", "monitoring"}
    assert props(template, "S3Endpoint", VpcEndpoints="true")["VpcEndpointType"] == "Gateway"
    assert "EndpointsNeedRouteTables" in template["Rules"]


def role_json(bucket: str, stack: str) -> dict:
    """role.json with the names a stack called ``stack`` gives its resources."""
    return policy.substitute(read(os.path.join(ROOT, "role.json")), {
        "BUCKET": bucket, "INPUT_PREFIX": "input/", "OUTPUT_PREFIX": "output/", "ERRORS_PREFIX": "errors/",
        "CODE_PREFIX": "code/", "REGION": REGION, "ACCOUNT_ID": ACCOUNT, "QUEUE_NAME": f"{stack}-jobs",
        "DLQ_NAME": f"{stack}-dlq", "ASG_NAME": f"{stack}-workers", "LOG_GROUP": f"/filejobs/{stack}"})


def _normalised(doc: dict) -> list:
    as_list = lambda v: sorted(v if isinstance(v, list) else [v])  # noqa: E731
    return sorted((s.get("Sid"), s["Effect"], as_list(s["Action"]), as_list(s["Resource"]),
                   json.dumps(s.get("Condition", {}), sort_keys=True)) for s in doc["Statement"])


def test_template_role_is_role_json(template):
    (inline,) = resource(template, "WorkerRole")["Properties"]["Policies"]
    values = {"Bucket.Arn": "arn:aws:s3:::bkt", "Queue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:fj-jobs",
              "DeadLetterQueue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:fj-dlq", "AWS::StackName": "fj"}
    resolved = Resolver(template, values).resolve(inline["PolicyDocument"])
    assert _normalised(resolved) == _normalised(role_json("bkt", "fj"))
    actions = {a for s in resolved["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert not {"sqs:GetQueueUrl", "autoscaling:DescribeAutoScalingInstances"} & actions  # finding 11
    trust = resource(template, "WorkerRole")["Properties"]["AssumeRolePolicyDocument"]
    assert trust == json.loads(read(os.path.join(ROOT, "trust-policy.json")))


def test_no_secret_in_any_infra_file():
    for name in ("user-data.sh", "role.json", "sender-policy.json", "trust-policy.json", "setup.md",
                 os.path.join("filejobs", "infra", "stack.yaml")):
        text = read(os.path.join(ROOT, name))
        assert not re.search(r"(AKIA|ASIA)[A-Z0-9]{16}", text), name
        assert not re.search(r"(?i)(secret_?access_?key|password)\s*[:=]\s*\S{8,}", text), name
        assert "X-Amz-Signature" not in text, name


# --------------------------------------------------------------------------- moto: deploy it


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        isolate_aws(mp, tmp_path_factory.mktemp("aws"))
        with mock_aws():
            session = helpers.session(REGION)
            ec2 = session.client("ec2")
            vpc = ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
            subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.3.{i}.0/24", AvailabilityZone=f"{REGION}{az}")[
                "Subnet"]["SubnetId"] for i, az in ((1, "a"), (2, "b"))]
            route_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            cf = session.client("cloudformation")
            params = {"VpcId": vpc, "Subnets": ",".join(subnets), "MaxSize": "6", "MaxReceiveCount": "4",
                      "VisibilityTimeout": "300", "Command": "convert -resize 50%", "Packages": "ImageMagick",
                      "OutputExtension": ".png", "QuietMinutes": "7", "GraceSeconds": "300", "SlotsPerInstance": "3",
                      "VpcEndpoints": "true", "RouteTableIds": route_table, "AlarmEmail": "ops@example.com"}
            cf.create_stack(StackName=STACK, TemplateBody=read(TEMPLATE_PATH), Capabilities=["CAPABILITY_IAM"],
                            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
            stack = cf.describe_stacks(StackName=STACK)["Stacks"][0]
            yield {"session": session, "stack": stack, "subnets": subnets, "params": params,
                   "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]},
                   "resources": {r["LogicalResourceId"]: r for r in
                                 cf.list_stack_resources(StackName=STACK)["StackResourceSummaries"]}}


def test_deploys_with_a_long_stack_name(deployed):
    assert deployed["stack"]["StackStatus"] == "CREATE_COMPLETE"
    out = deployed["outputs"]
    for url in (out["QueueUrl"], out["DeadLetterQueueUrl"]):
        assert len(url.rsplit("/", 1)[1]) <= 80
    assert out["AutoScalingGroupName"] == f"{STACK}-workers" and out["LogGroupName"] == f"/filejobs/{STACK}"
    assert out["SendJobsCommand"] == f"sendjobs DIR {out['BucketName']} input/ output/ {out['QueueUrl']} {REGION}"
    assert out["DashboardUrl"].startswith(f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards:name=")


def _moto_at_least(*version: int) -> bool:
    from importlib.metadata import version as installed

    return tuple(int(p) for p in installed("moto").split(".")[:2]) >= version


def test_deployed_queues_bucket_logs_and_topic(deployed):
    session, out = deployed["session"], deployed["outputs"]
    sqs = session.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=out["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert dead_letter_target(attrs["RedrivePolicy"]) == (dlq["QueueArn"], 4)
    assert attrs["VisibilityTimeout"] == "300" and dlq["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    rules = session.client("s3").get_bucket_encryption(Bucket=out["BucketName"])["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (group,) = session.client("logs").describe_log_groups(logGroupNamePrefix=out["LogGroupName"])["logGroups"]
    assert group["retentionInDays"] == 30
    topic = session.client("sns").get_topic_attributes(TopicArn=out["AlarmTopicArn"])["Attributes"]
    # (moto's DescribeKey fails on a key CloudFormation created; the stack's resource names it.)
    key_id = deployed["resources"]["EncryptionKey"]["PhysicalResourceId"]
    if "KmsMasterKeyId" in topic or _moto_at_least(5, 2):  # moto 5.1 (Python 3.9) drops it; 5.2 keeps it
        assert topic["KmsMasterKeyId"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"
    dashboards = session.client("cloudwatch").list_dashboards()["DashboardEntries"]
    assert len(dashboards) == 1 and out["DashboardUrl"].endswith(dashboards[0]["DashboardName"])


def test_deployed_group_and_launch_template(deployed):
    session = deployed["session"]
    (group,) = session.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{STACK}-workers"])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 6, 0)
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(deployed["subnets"])
    spec = group["MixedInstancesPolicy"]["LaunchTemplate"]["LaunchTemplateSpecification"]
    versions = session.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=spec["LaunchTemplateId"])["LaunchTemplateVersions"]
    data = versions[0]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}
    (bdm,) = data["BlockDeviceMappings"]
    assert bdm["Ebs"]["Encrypted"] is True and bdm["Ebs"]["VolumeType"] == "gp3"
    assert data["ImageId"].startswith("ami-")  # resolved from the public SSM parameter
    import testing.userdata as ud

    head, pairs, tail = ud.split_config(__import__("base64").b64decode(data["UserData"]).decode())
    f_head, _, f_tail = ud.split_config(ud.read(ud.USER_DATA))
    assert (head, tail) == (f_head, f_tail)
    values = dict(pairs)
    assert (values["BUCKET"], values["QUEUE"]) == (deployed["outputs"]["BucketName"], deployed["outputs"]["QueueUrl"])
    assert (values["COMMAND"], values["PACKAGES"], values["SLOTS"], values["GRACE_SECONDS"]) == (
        "convert -resize 50%", "ImageMagick", "3", "300")
    assert (values["GROUP"], values["LOG_GROUP"]) == (f"{STACK}-workers", f"/filejobs/{STACK}")


def test_deployed_endpoints(deployed):
    endpoints = deployed["session"].client("ec2").describe_vpc_endpoints()["VpcEndpoints"]
    assert sorted(e["ServiceName"].rsplit(".", 1)[1] for e in endpoints) == [
        "autoscaling", "logs", "monitoring", "s3", "sqs"]


def test_deployed_role_policy_is_role_json(deployed):
    iam = deployed["session"].client("iam")
    role = deployed["resources"]["WorkerRole"]["PhysicalResourceId"]
    (name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if isinstance(document, str):
        # moto stores a CloudFormation-created inline policy as the str() of a dict, not JSON.
        document = json.loads(document) if document.lstrip().startswith('{"') else ast.literal_eval(document)
    expected = role_json(deployed["outputs"]["BucketName"], STACK)
    queue, dlq = (deployed["outputs"][k].rsplit("/", 1)[1] for k in ("QueueUrl", "DeadLetterQueueUrl"))
    expected = json.loads(json.dumps(expected).replace(f"{STACK}-jobs", queue).replace(f"{STACK}-dlq", dlq))
    assert _normalised(document) == _normalised(expected)


def test_the_skipped_resources_are_valid_api_calls(deployed, template):
    """moto's CloudFormation skips scaling policies, alarms and lifecycle hooks; create them with
    boto3 from the template's own properties (botocore validates every member's name and type)."""
    session, out = deployed["session"], deployed["outputs"]
    group = out["AutoScalingGroupName"]
    values = dict(deployed["params"], **{"Queue.QueueName": out["QueueUrl"].rsplit("/", 1)[1],
                                         "DeadLetterQueue.QueueName": out["DeadLetterQueueUrl"].rsplit("/", 1)[1],
                                         "WorkerGroup": group, "AWS::StackName": STACK})
    autoscaling, cloudwatch = session.client("autoscaling"), session.client("cloudwatch")
    (hook,) = Resolver(template, values).resolve(resource(template, "WorkerGroup")["Properties"])[
        "LifecycleHookSpecificationList"]
    autoscaling.put_lifecycle_hook(AutoScalingGroupName=group, **{k: (int(v) if k == "HeartbeatTimeout" else v)
                                                                  for k, v in hook.items()})
    assert autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"][0][
        "HeartbeatTimeout"] == 360
    for name in ("ScaleOutPolicy", "ScaleInPolicy"):
        p = Resolver(template, values).resolve(resource(template, name)["Properties"])
        autoscaling.put_scaling_policy(PolicyName=name, AutoScalingGroupName=group, PolicyType=p["PolicyType"],
                                       AdjustmentType=p["AdjustmentType"], MetricAggregationType=p["MetricAggregationType"],
                                       StepAdjustments=[{k: (float(v) if k.startswith("MetricInterval") else int(v))
                                                         for k, v in s.items()} for s in p["StepAdjustments"]])
        values[name] = autoscaling.describe_policies(AutoScalingGroupName=group, PolicyNames=[name])[
            "ScalingPolicies"][0]["PolicyARN"]
    values["AlarmTopic"] = out["AlarmTopicArn"]
    for name, spec in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        a = Resolver(template, values).resolve(spec["Properties"])
        a["AlarmName"] = f"fj-{name}"
        a["Threshold"] = float(a["Threshold"])
        for key in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
            if key in a:
                a[key] = int(a[key])
        for m in a.get("Metrics", []):
            if "MetricStat" in m:
                m["MetricStat"]["Period"] = int(m["MetricStat"]["Period"])
        cloudwatch.put_metric_alarm(**a)
    alarms = {x["AlarmName"]: x for x in cloudwatch.describe_alarms(AlarmNamePrefix="fj-")["MetricAlarms"]}
    assert alarms["fj-BacklogAlarm"]["AlarmActions"] == [values["ScaleOutPolicy"]]
    assert alarms["fj-SurplusAlarm"]["AlarmActions"] == [values["ScaleInPolicy"]]
    assert alarms["fj-SurplusAlarm"]["EvaluationPeriods"] == 7
    expressions = {m["Id"]: m.get("Expression") for m in alarms["fj-SurplusAlarm"]["Metrics"]}
    assert expressions["running"] == "CEIL((visible + inflight) / 3)"


def test_s3_events_reach_the_queue_when_wired(deployed, template):
    """moto's CloudFormation drops NotificationConfiguration: apply the template's, resolved for this
    stack, with boto3; moto then delivers an upload under the input prefix (and nothing else)."""
    session, out = deployed["session"], deployed["outputs"]
    sqs = session.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = Resolver(template, {"S3EventNotifications": "true", "Queue.Arn": arn}).resolve(
        resource(template, "Bucket")["Properties"])
    # CloudFormation's shape of the same configuration, in the API's names.
    api = [{"QueueArn": c["Queue"], "Events": [c["Event"]],
            "Filter": {"Key": {"FilterRules": c["Filter"]["S3Key"]["Rules"]}}}
           for c in bucket["NotificationConfiguration"]["QueueConfigurations"]]
    s3 = session.client("s3")
    s3.put_bucket_notification_configuration(Bucket=out["BucketName"],
                                             NotificationConfiguration={"QueueConfigurations": api})
    s3.put_object(Bucket=out["BucketName"], Key="output/not-an-input.txt", Body=b"x")
    s3.put_object(Bucket=out["BucketName"], Key="input/photo 1.jpg", Body=b"x")
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=out["QueueUrl"], MaxNumberOfMessages=10,
                                                                 WaitTimeSeconds=0).get("Messages", [])]
    keys = [unquote_plus(r["s3"]["object"]["key"]) for b in bodies for r in b.get("Records", [])]
    assert keys == ["input/photo 1.jpg"]  # S3 URL-encodes event keys


# --------------------------------------------------------------------------- setup.md follows the template


def test_setup_md_builds_what_the_template_builds(template):
    text = read(os.path.join(ROOT, "setup.md"))
    for name in ("ScaleOutPolicy", "ScaleInPolicy"):
        steps = resource(template, name)["Properties"]["StepAdjustments"]
        for s in steps:
            shorthand = ",".join(f"{k}={s[k]}" for k in ("MetricIntervalLowerBound", "MetricIntervalUpperBound",
                                                           "ScalingAdjustment") if k in s)
            assert shorthand in text, shorthand
    assert '"Expression": "CEIL(visible / 10) - FILL(FILL(desired, REPEAT), 0)"' in text
    assert '"Expression": "FILL(FILL(desired, REPEAT), 0) - MAX([running, backlog])"' in text
    assert '"Expression": "CEIL((visible + inflight) / 2)"' in text
    assert '"HttpTokens": "required", "HttpPutResponseHopLimit": 1' in text
    assert "--default-instance-warmup 120" in text and "filejobs-drain" in text and "--heartbeat-timeout 180" in text
    assert "make artifact BUCKET=" in text and "filejobs-1.1.0-wheelhouse.tar.gz" not in text.replace(
        "code/filejobs-<version>-wheelhouse.tar.gz", "")
    assert "aws cloudformation deploy --template-file filejobs/infra/stack.yaml --stack-name filejobs" in text
    assert "aws cloudformation delete-stack --stack-name filejobs" in text
    for line in ("describe-scaling-activities", "jobctl status", "aws logs tail", "DashboardUrl"):
        assert line in text, line
