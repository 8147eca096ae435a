"""role.json and sender-policy.json against what the tools really call.

The sender and the worker libraries run under moto with ``CallRecorder`` on every client; each
recorded call is turned into the IAM permission(s) it needs (``filejobs.iamcalls.required``) and
checked against the policy with the test's bucket, prefixes and queues substituted. The other way
round, every (statement, action, resource) a policy grants must be used by at least one recorded
call, except the few listed in ``*_NOT_EXERCISED`` with the reason. parliament lints all three
documents.

The worker scenario covers: plain jobs (``cp``), a multipart input and output, a duplicate
delivery whose multipart output is refused by If-None-Match (so it aborts the upload), a directory
output, a heartbeat, a failing command (``false``) retried until the error record and the
dead-letter queue, a malformed and a forged message (moved to the DLQ at once), a redelivery
(receive count 2) answered by the directory-output duplicate check, scale-in protection and the
boot-time download of the code artifact. The sender's identity also runs what ``jobctl status``
and ``jobctl redrive`` do (``filejobs.status``).
"""

from __future__ import annotations

import functools
import json
import os
import threading

import pytest
from botocore.stub import Stubber

from testing.helpers import ROOT, isolate_aws
from filejobs import aws, message
from filejobs.ops import redrive, resources, status
from filejobs.ops.arrivals import prefix_status
from testing import iamcalls, policy
from testing.recorder import CallRecorder
from filejobs.ec2 import InstanceProtector, complete_lifecycle_action
from filejobs.message import Allowed, Job
from filejobs.records import JournalRow
from filejobs.runner import CommandRunner
from filejobs.send import SendConfig, Sender
from filejobs.send.journal import Journal, journal_path
from filejobs.transfer import MiB, TransferConfig
from filejobs.worker import Worker, WorkerConfig
from testing import helpers

REGION = "us-east-1"
BUCKET = "filejobs-policy-test"
QUEUE = "filejobs-policy-jobs"
ASG = "filejobs-policy-workers"
CODE_KEY = "code/filejobs-1.1.0-wheelhouse.tar.gz"
# Small multipart settings so a 6 MiB file goes through CreateMultipartUpload/UploadPart/Complete.
TRANSFER = TransferConfig(multipart_threshold=5 * MiB, part_size=5 * MiB)

# Grants the scenario cannot reach, with the reason. Each entry is (Sid, action, resource pattern
# with placeholders). Everything else a policy grants must be used by a recorded call.
# The CloudWatch agent ships the worker's log files; no agent runs here. Its calls, as documented:
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/create-iam-roles-for-cloudwatch-agent.html
WORKER_NOT_EXERCISED = {
    ("ShipWorkerLogs", action, "arn:aws:logs:<REGION>:<ACCOUNT_ID>:log-group:<LOG_GROUP>:*")
    for action in ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")}
SENDER_NOT_EXERCISED = {
    # An upload is aborted only when a multipart upload fails half-way (network, throttling).
    ("UploadInputsAndBatchManifests", "s3:AbortMultipartUpload", "arn:aws:s3:::<BUCKET>/<INPUT_PREFIX>*"),
    ("UploadInputsAndBatchManifests", "s3:AbortMultipartUpload", "arn:aws:s3:::<BUCKET>/<BATCHES_PREFIX>*"),
    # For the person who sent the batch to fetch the results (`aws s3 sync`, setup.md); the tools
    # themselves only list outputs.
    ("DownloadResults", "s3:GetObject", "arn:aws:s3:::<BUCKET>/<OUTPUT_PREFIX>*"),
    # jobctl redrive follows a move task with it (and `--status`); moto has no move tasks, so the
    # scenario's redrive moves by hand and never lists them.
    ("InspectAndRedriveDeadLetterQueue", "sqs:ListMessageMoveTasks", "arn:aws:sqs:<REGION>:<ACCOUNT_ID>:<DLQ_NAME>"),
}


def read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as fh:
        return fh.read()


def placeholder_values(account: str) -> dict:
    return {"BUCKET": BUCKET, "INPUT_PREFIX": "input/", "OUTPUT_PREFIX": "output/", "ERRORS_PREFIX": "errors/",
            "CODE_PREFIX": "code/", "BATCHES_PREFIX": "batches/", "REGION": REGION, "ACCOUNT_ID": account,
            "QUEUE_NAME": QUEUE, "DLQ_NAME": f"{QUEUE}-dlq", "ASG_NAME": ASG, "LOG_GROUP": "/filejobs/policy-test"}


#: The API parameters ``iamcalls.required`` reads.
PARAMS = ("Bucket", "Key", "Prefix", "Delete", "QueueUrl", "QueueName", "AutoScalingGroupName", "SourceArn",
          "DestinationArn", "VersionId", "Namespace", "InstanceId", "logGroupName", "logStreamName")


class Recorded:
    """Records every API call of the clients it is attached to as (service, operation, params).

    ``CallRecorder(keep_params=True)`` is attached too, but its ``before-call`` hook sees the
    *serialized* request (url_path, headers, body), not the API parameters, so its params come out
    empty; the parameters are taken here from ``before-parameter-build``, and the operation counts
    of both recorders must agree (so this recorder misses nothing CallRecorder counts).
    """

    def __init__(self):
        self.recorder = CallRecorder(keep_params=True)
        self._calls: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()

    def attach(self, client):
        self.recorder.attach(client)
        service = client.meta.service_model.service_name

        def record(params, model, **_):
            with self._lock:
                self._calls.append((service, model.name, {k: params[k] for k in PARAMS if k in params}))

        client.meta.events.register("before-parameter-build", record)
        return client

    def calls(self) -> list[tuple[str, str, dict]]:
        counted: dict[str, int] = {}
        for service, operation, _ in self._calls:
            counted[f"{service}:{operation}"] = counted.get(f"{service}:{operation}", 0) + 1
        assert counted == self.recorder.by_operation
        return list(self._calls)


class RecordingSession:
    """The part of a boto3 session ``Clients.client()`` uses, with every client it makes recorded
    (status reads CloudWatch, redrive tries StartMessageMoveTask through such clients)."""

    def __init__(self, session, recorded: Recorded):
        self.session, self.recorded = session, recorded
        self.region_name = session.region_name

    def client(self, service, **kwargs):
        return self.recorded.attach(self.session.client(service, **kwargs))


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _run_worker(clients, runner, *, queue: str, protector=None, **overrides) -> Worker:
    """``queue``: its URL, as the stack gives it to workers (role.json has no GetQueueUrl)."""
    settings = dict(concurrency=4, wait_time_s=0, exit_when_idle_s=0.6, retry_base_s=0, grace_s=5, transfer=TRANSFER)
    settings.update(overrides)
    config = WorkerConfig(extension=".out", queue=queue,
                          allowed=Allowed(bucket=BUCKET, input_prefix="input/", output_prefix="output/"), **settings)
    worker = Worker(config, clients, runner, protector=protector)
    worker.run()
    return worker


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Run the sender and three worker phases once per run (whichever xdist worker is first); return
    what was recorded and observed."""
    from moto import mock_aws

    def run() -> dict:
        tmp = tmp_path_factory.mktemp("policies")
        with pytest.MonkeyPatch.context() as mp:
            isolate_aws(mp, tmp)  # conftest's autouse isolation is function-scoped
            with mock_aws():
                return _scenario(tmp)

    return helpers.once_per_run(tmp_path_factory, "policy-scenario", run)


def _scenario(tmp) -> dict:
    session = helpers.session(REGION)
    setup = aws.Clients(s3=session.client("s3"), sqs=session.client("sqs"))  # not recorded
    account = session.client("sts").get_caller_identity()["Account"]
    created = resources.create_all(setup.s3, setup.sqs, bucket=BUCKET, queue=QUEUE, region=REGION,
                                   settings=resources.QueueSettings(visibility_timeout_s=20, max_receive_count=2))
    setup.s3.put_object(Bucket=BUCKET, Key=CODE_KEY, Body=b"not really a wheelhouse")
    run_worker = functools.partial(_run_worker, queue=created.queue_url)

    # An Auto Scaling group with one instance, for the worker's scale-in protection.
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="policy-lt", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})
    autoscaling_setup = session.client("autoscaling")
    autoscaling_setup.create_auto_scaling_group(
        AutoScalingGroupName=ASG, MinSize=0, MaxSize=2, DesiredCapacity=1, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateName": "policy-lt", "Version": "$Latest"})
    instance_id = autoscaling_setup.describe_auto_scaling_groups(
        AutoScalingGroupNames=[ASG])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]

    # ------------------------------------------------------------------ sendjobs (recorded)
    sender_rec = Recorded()
    sender_clients = aws.Clients(s3=sender_rec.attach(session.client("s3")),
                                 sqs=sender_rec.attach(session.client("sqs")),
                                 session=RecordingSession(session, sender_rec), target=aws.Target(region=REGION))
    plain = tmp / "plain"
    _write(str(plain / "a.txt"), b"alpha\n")
    _write(str(plain / "sub" / "b.txt"), b"beta\n")
    _write(str(plain / "big.bin"), os.urandom(6 * MiB))
    state = str(tmp / "state")
    config = SendConfig(directory=str(plain), bucket=BUCKET, input_prefix="input/", output_prefix="output/",
                        queue=QUEUE, concurrency=4, state_dir=state, transfer=TRANSFER)
    sender = Sender(config, sender_clients)
    first = sender.run()
    assert first.ok and first.files_sent == 3, first.as_dict()
    for name in ("dirjobs", "failing"):
        os.makedirs(tmp / name)
    _write(str(tmp / "dirjobs" / "dir.txt"), b"directory output\n")
    _write(str(tmp / "failing" / "fail.txt"), b"this job fails\n")

    # ------------------------------------------------------------------ getjobs (recorded)
    worker_rec = Recorded()
    worker_clients = aws.Clients(s3=worker_rec.attach(session.client("s3")),
                                 sqs=worker_rec.attach(session.client("sqs")))
    # What user-data.sh's `aws s3 cp` does at boot with the instance role: HeadObject, GetObject; and
    # on a boot failure, its `aws cloudwatch put-metric-data` and `aws autoscaling set-instance-health`.
    worker_clients.s3.head_object(Bucket=BUCKET, Key=CODE_KEY)
    worker_clients.s3.get_object(Bucket=BUCKET, Key=CODE_KEY)["Body"].read()
    worker_rec.attach(session.client("cloudwatch")).put_metric_data(Namespace="filejobs", MetricData=[{
        "MetricName": "BootFailures", "Value": 1, "Unit": "Count",
        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": ASG}]}])
    worker_rec.attach(session.client("autoscaling")).set_instance_health(
        InstanceId=instance_id, HealthStatus="Healthy", ShouldRespectGracePeriod=False)
    # After a drain, the worker completes the termination lifecycle action (moto does not implement
    # CompleteLifecycleAction: the call goes to a stub, the recorder still sees it).
    lifecycle = worker_rec.attach(session.client("autoscaling"))
    with Stubber(lifecycle) as stub:
        stub.add_response("complete_lifecycle_action", {})
        assert complete_lifecycle_action(lifecycle, group=ASG, hook="filejobs-drain", instance=instance_id)

    # Phase 1: `cp` on plain files, with scale-in protection (the group's name given, as user data does).
    protector = InstanceProtector(worker_rec.attach(session.client("autoscaling")), instance_id, ASG,
                                  idle_grace_s=0.1)
    w1 = run_worker(worker_clients, CommandRunner(["cp"]), protector=protector, work_dir=str(tmp / "w1"),
                     concurrency=1)
    assert (w1.stats.done, w1.stats.skipped, w1.stats.failed) == (3, 0, 0), w1.stats
    # An interrupted run: big.bin uploaded but its message not recorded as sent. The rerun checks
    # the object (HeadObject) and sends a second job for it, which the worker sees as a duplicate.
    journal = Journal(journal_path(state, config, sender.queue_url))
    big = os.stat(plain / "big.bin")
    head = setup.s3.head_object(Bucket=BUCKET, Key="input/big.bin")
    journal.record([JournalRow(rel="big.bin", size=big.st_size, mtime_ns=big.st_mtime_ns, etag=head["ETag"],
                               state="uploaded", batch_id=first.batch_id)])
    journal.set_meta("open_batch", first.batch_id)
    journal.close()
    resumed = Sender(config, sender_clients).run()
    assert resumed.ok and resumed.files_sent == 1 and resumed.files_uploaded == 0, resumed.as_dict()
    # The duplicate big.bin job runs after the first one finished: its create-only multipart
    # upload is refused (412) and aborted. (Run concurrently, moto's If-None-Match check on
    # CompleteMultipartUpload is not atomic and both could succeed; real S3's is.)
    w1b = run_worker(worker_clients, CommandRunner(["cp"]), protector=protector, work_dir=str(tmp / "w1"),
                      concurrency=1)
    assert (w1b.stats.done, w1b.stats.skipped, w1b.stats.failed) == (0, 1, 0), w1b.stats

    # Phase 2: a command that takes a while and writes a directory (heartbeat, directory output).
    Sender(SendConfig(directory=str(tmp / "dirjobs"), bucket=BUCKET, input_prefix="input/", output_prefix="output/",
                      queue=QUEUE, state_dir=state, transfer=TRANSFER), sender_clients).run()
    slow_dir = CommandRunner(["sh", "-c", 'sleep 0.7 && mkdir "$2" && cp "$1" "$2/part-0" && cp "$1" "$2/part-1"',
                              "dirjob"])
    w2 = run_worker(worker_clients, slow_dir, work_dir=str(tmp / "w2"), heartbeat_s=0.3)
    assert (w2.stats.done, w2.stats.failed) == (1, 0) and w2.stats.heartbeats >= 1, w2.stats

    # Phase 3: `false`. First a redelivered copy of the directory job (received once already, so
    # its receive count is 2): the worker finds the directory output and skips it without running.
    etag = setup.s3.head_object(Bucket=BUCKET, Key="input/dir.txt")["ETag"]
    setup.sqs.send_message(QueueUrl=created.queue_url, MessageBody=message.encode(Job(
        bucket=BUCKET, input_key="input/dir.txt", input_prefix="input/", output_prefix="output/", etag=etag)))
    got = setup.sqs.receive_message(QueueUrl=created.queue_url, VisibilityTimeout=0, WaitTimeSeconds=0)
    assert len(got.get("Messages", [])) == 1
    failing = Sender(SendConfig(directory=str(tmp / "failing"), bucket=BUCKET, input_prefix="input/",
                                output_prefix="output/", queue=QUEUE, state_dir=state, transfer=TRANSFER),
                     sender_clients).run()
    setup.sqs.send_message(QueueUrl=created.queue_url, MessageBody="this is not a job")
    setup.sqs.send_message(QueueUrl=created.queue_url, MessageBody=message.encode(Job(
        bucket="someone-elses-bucket", input_key="input/x.txt", input_prefix="input/", output_prefix="output/")))
    w3 = run_worker(worker_clients, CommandRunner(["false"]), work_dir=str(tmp / "w3"))
    assert w3.stats.rejected == 2 and w3.stats.failed == 2 and w3.stats.skipped == 1, w3.stats

    keys = sorted(o["Key"] for o in setup.s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    dlq = setup.sqs.get_queue_attributes(QueueUrl=created.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])

    # ------------------------------------------------------------------ jobctl status / redrive, as the sender
    latest = status.latest_batch(sender_clients.s3, BUCKET, "batches/")
    report = status.batch_status(sender_clients, bucket=BUCKET, batch_id=failing.batch_id, ext=".out")
    assert (report.total, report.done, report.failed) == (1, 0, 1), report.as_dict()
    assert report.failures and report.failures[0]["reason"] == "exit code 1"
    by_prefix = prefix_status(sender_clients, bucket=BUCKET, input_prefix="input/", output_prefix="output/", ext=".out")
    assert by_prefix.failed == 1 and by_prefix.failures[0]["reason"] == "exit code 1", by_prefix.as_dict()
    # StartMessageMoveTask first (moto does not implement it), then receive/send/delete by hand.
    moved = redrive.redrive(sender_clients, queue=QUEUE, errors_bucket=BUCKET)
    assert (moved.moved, moved.method, moved.errors_cleared) == (3, "receive/send/delete", 1), moved

    return {"account": account, "sender": sender_rec.calls(), "worker": worker_rec.calls(), "keys": keys,
            "dlq_messages": int(dlq["Attributes"]["ApproximateNumberOfMessages"]), "latest_batch": latest,
            "protected": autoscaling_setup.describe_auto_scaling_instances(InstanceIds=[instance_id])}


def _policy(name: str, account: str) -> policy.Policy:
    return policy.Policy(policy.substitute(read(name), placeholder_values(account)))


def _needs(calls, account):
    out = []
    for service, operation, params in calls:
        if operation == "SetInstanceHealth":
            params = {**params, "AutoScalingGroupName": ASG}  # IAM checks it on the instance's group
        for need in iamcalls.required(service, operation, params, region=REGION, account=account):
            out.append((f"{service}:{operation}", need))
    return out


def _check_allowed(doc: str, calls, account):
    pol = _policy(doc, account)
    denied = sorted({f"{call} needs {need}" for call, need in _needs(calls, account) if not pol.allows_need(need)})
    assert not denied, f"{doc} does not allow calls the code makes:\n" + "\n".join(denied)


def _check_nothing_unused(doc: str, calls, account, not_exercised):
    pol = _policy(doc, account)
    values = placeholder_values(account)
    allowed_unused = {(sid, action, policy.PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], resource))
                      for sid, action, resource in not_exercised}
    used = pol.exercised_by(need for _, need in _needs(calls, account))
    unused = pol.grants() - used - allowed_unused
    assert not unused, f"{doc} grants what no call uses: {sorted(unused)}"
    stale = allowed_unused & used
    assert not stale, f"now exercised, remove from the not-exercised list: {sorted(stale)}"
    unknown = allowed_unused - pol.grants()
    assert not unknown, f"not in {doc} at all: {sorted(unknown)}"


# --------------------------------------------------------------------------- the scenario ran


def test_the_scenario_reached_every_path(scenario):
    keys = scenario["keys"]
    for key in ("output/a.txt.out", "output/sub/b.txt.out", "output/big.bin.out", "output/dir.txt.out/part-0",
                "output/dir.txt.out/part-1"):
        assert key in keys
    assert [k for k in keys if k.startswith("errors/") and k.endswith("/fail.txt.json")]
    assert [k for k in keys if k.startswith("batches/") and k.endswith("/manifest.jsonl")]
    # malformed + forged (moved by the worker) + fail.txt (moved by SQS after maxReceiveCount)
    assert scenario["dlq_messages"] == 3
    ops = {(s, o) for s, o, _ in scenario["worker"]}
    for op in [("s3", "AbortMultipartUpload"), ("s3", "ListObjectsV2"), ("sqs", "ChangeMessageVisibilityBatch"),
               ("sqs", "SendMessage"), ("sqs", "DeleteMessageBatch"), ("autoscaling", "SetInstanceProtection"),
               ("s3", "CompleteMultipartUpload"), ("autoscaling", "CompleteLifecycleAction"),
               ("autoscaling", "SetInstanceHealth"), ("cloudwatch", "PutMetricData")]:
        assert op in ops, f"the worker scenario never called {op}"
    sender_ops = {(s, o) for s, o, _ in scenario["sender"]}
    assert {("s3", "HeadObject"), ("s3", "UploadPart"), ("sqs", "SendMessageBatch"), ("s3", "DeleteObjects"),
            ("sqs", "StartMessageMoveTask"), ("cloudwatch", "GetMetricStatistics")} <= sender_ops
    # The worker cleared its protection when it went idle.
    assert scenario["protected"]["AutoScalingInstances"][0]["ProtectedFromScaleIn"] is False


# --------------------------------------------------------------------------- policies vs calls


def test_worker_policy_allows_every_call_the_worker_makes(scenario):
    _check_allowed("role.json", scenario["worker"], scenario["account"])


def test_worker_policy_grants_nothing_the_worker_does_not_use(scenario):
    _check_nothing_unused("role.json", scenario["worker"], scenario["account"], WORKER_NOT_EXERCISED)


def test_sender_policy_allows_every_call_sendjobs_makes(scenario):
    _check_allowed("sender-policy.json", scenario["sender"], scenario["account"])


def test_sender_policy_grants_nothing_else(scenario):
    _check_nothing_unused("sender-policy.json", scenario["sender"], scenario["account"], SENDER_NOT_EXERCISED)


def test_the_worker_could_not_do_the_senders_job_and_vice_versa(scenario):
    """Least privilege seen from the other side: the two identities are not interchangeable."""
    account = scenario["account"]
    worker, sender = _policy("role.json", account), _policy("sender-policy.json", account)
    q = f"arn:aws:sqs:{REGION}:{account}:{QUEUE}"
    assert not worker.allows("sqs:SendMessage", q)  # a worker cannot enqueue jobs
    assert not worker.allows("s3:PutObject", f"arn:aws:s3:::{BUCKET}/input/a.txt")  # nor replace inputs
    assert not worker.allows("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "input/"})
    assert not worker.allows("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": ""})
    assert not worker.allows("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/output/a.txt.out")
    assert not sender.allows("sqs:ReceiveMessage", q)
    assert not sender.allows("s3:PutObject", f"arn:aws:s3:::{BUCKET}/output/a.txt.out")
    assert not sender.allows("autoscaling:SetInstanceProtection", iamcalls.group_arn(ASG, region=REGION, account=account))


# --------------------------------------------------------------------------- documents


def test_policies_use_only_documented_placeholders():
    documented = set(placeholder_values("123456789012"))
    for name in ("role.json", "sender-policy.json", "trust-policy.json"):
        text = read(name)
        json.loads(text)
        assert policy.placeholders(text) <= documented, name
    setup = read("setup.md")
    for name in documented:
        assert f"<{name}>" in setup, f"setup.md does not explain <{name}>"


def test_every_statement_says_what_it_is_for():
    for name in ("role.json", "sender-policy.json", "trust-policy.json"):
        sids = [s.get("Sid", "") for s in json.loads(read(name))["Statement"]]
        assert all(len(sid) >= 8 for sid in sids), (name, sids)
        assert len(set(sids)) == len(sids), name


def test_trust_policy_lets_only_ec2_assume_the_role():
    doc = json.loads(read("trust-policy.json"))
    assert doc["Version"] == "2012-10-17"
    (stmt,) = doc["Statement"]
    assert stmt["Effect"] == "Allow" and stmt["Action"] == "sts:AssumeRole"
    assert stmt["Principal"] == {"Service": "ec2.amazonaws.com"}


def _parliament(text: str):
    parliament = pytest.importorskip("parliament", reason="parliament is a dev dependency (pip install -e .[dev])")
    return [(f.issue, f.detail) for f in parliament.analyze_policy_string(text, include_community_auditors=True).findings]


@pytest.mark.parametrize("name", ["role.json", "sender-policy.json"])
def test_parliament_finds_nothing(name):
    text = json.dumps(policy.substitute(read(name), placeholder_values("123456789012")))
    assert _parliament(text) == []


def test_parliament_on_the_trust_policy():
    # parliament checks identity policies, which must name a Resource; a trust policy is a resource
    # policy of the role and has no Resource element (IAM rejects one). That single finding is the
    # only one expected; anything else (a bad action, principal or condition) fails the test.
    findings = _parliament(read("trust-policy.json"))
    assert findings == [("MALFORMED", "Statement contains neither Resource nor NotResource")]


def test_parliament_does_flag_a_bad_policy():
    """The linter is really running: the original sample's kind of mistake is caught."""
    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": f"arn:aws:s3:::{BUCKET}"},
        {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}
    issues = {issue for issue, _ in _parliament(json.dumps(bad))}
    assert "RESOURCE_MISMATCH" in issues


# --------------------------------------------------------------------------- the evaluator itself


def test_evaluator_basics():
    doc = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/in/*"},
        {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
         "Condition": {"StringLike": {"s3:prefix": ["out/*", "err/*"]}}},
        {"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/in/secret*"}]}
    pol = policy.Policy(doc)
    assert pol.allows("s3:GetObject", "arn:aws:s3:::b/in/a/b.txt")
    assert pol.allows("S3:getobject", "arn:aws:s3:::b/in/x")  # actions are case-insensitive
    assert not pol.allows("s3:GetObject", "arn:aws:s3:::b/IN/x")  # resources are not
    assert not pol.allows("s3:PutObject", "arn:aws:s3:::b/in/x")
    assert pol.decide("s3:GetObject", "arn:aws:s3:::b/in/secret.txt").explicit_deny
    assert pol.allows("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "err/2026/"})
    assert not pol.allows("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "in/"})
    assert not pol.allows("s3:ListBucket", "arn:aws:s3:::b")  # no prefix in the request: no match
    with pytest.raises(policy.PolicyError):
        policy.Policy({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:username}/*"}]})
    with pytest.raises(policy.PolicyError):
        policy.Policy({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket",
                       "Resource": "*", "Condition": {"NumericLessThan": {"s3:max-keys": "10"}}}]})
    with pytest.raises(policy.PolicyError):
        policy.substitute('{"Resource": "<NOPE>"}', {})


def test_call_to_permission_mapping():
    need = lambda *a: iamcalls.required(*a, region=REGION, account="111122223333")  # noqa: E731
    url = "https://sqs.eu-west-1.amazonaws.com/111122223333/jobs"
    assert need("s3", "HeadObject", {"Bucket": "b", "Key": "o/k"}) == [policy.Need("s3:GetObject", "arn:aws:s3:::b/o/k")]
    assert need("s3", "UploadPart", {"Bucket": "b", "Key": "k"})[0].action == "s3:PutObject"
    assert need("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "o/"}) == [
        policy.Need("s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "o/"),))]
    assert need("sqs", "DeleteMessageBatch", {"QueueUrl": url}) == [
        policy.Need("sqs:DeleteMessage", "arn:aws:sqs:eu-west-1:111122223333:jobs")]
    assert need("sqs", "SendMessageBatch", {"QueueUrl": "http://127.0.0.1:5000/123456789012/q"}) == [
        policy.Need("sqs:SendMessage", f"arn:aws:sqs:{REGION}:123456789012:q")]
    assert need("sqs", "GetQueueUrl", {"QueueName": "jobs"}) == [
        policy.Need("sqs:GetQueueUrl", f"arn:aws:sqs:{REGION}:111122223333:jobs")]
    move = need("sqs", "StartMessageMoveTask", {"SourceArn": "arn:aws:sqs:r:1:dlq"})
    assert {n.action for n in move} == {"sqs:StartMessageMoveTask", "sqs:ReceiveMessage", "sqs:DeleteMessage",
                                        "sqs:GetQueueAttributes"}
    assert need("autoscaling", "DescribeAutoScalingInstances", {}) == [
        policy.Need("autoscaling:DescribeAutoScalingInstances", "*")]
    assert need("cloudwatch", "PutMetricData", {"Namespace": "filejobs"}) == [
        policy.Need("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", "filejobs"),))]
    assert need("logs", "PutLogEvents", {"logGroupName": "/filejobs/s", "logStreamName": "i-1/events"}) == [
        policy.Need("logs:PutLogEvents", "arn:aws:logs:us-east-1:111122223333:log-group:/filejobs/s:log-stream:i-1/events")]
    with pytest.raises(policy.UnknownOperation):
        need("s3", "PutBucketPolicy", {"Bucket": "b"})
