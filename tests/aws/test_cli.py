"""The CLIs as thin layers: options, help, one-line errors, --json/--dry-run (click's CliRunner)."""

import json
import os
from urllib.parse import unquote_plus

import pytest

import getjobs
import sendjobs
from filejobs import aws, clitools
from filejobs import cli as jobctl
from testing.helpers import cli_runner


@pytest.fixture
def run():
    runner = cli_runner()

    def invoke(tool, *args, prog=None):
        return runner.invoke(tool.cli, [str(a) for a in args], prog_name=prog or tool.__name__.split(".")[-1])

    return invoke


def one_error_line(result, prog):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: error: ") and "Traceback" not in result.output
    return lines[0]


def test_sendjobs_help_shows_the_original_invocation_and_an_example(run):
    result = run(sendjobs, "--help")
    assert result.exit_code == 0
    assert "DIRECTORY BUCKET INPUT_PREFIX OUTPUT_PREFIX QUEUE [REGION]" in " ".join(result.output.split())
    assert "Examples:" in result.output and "--dry-run" in result.output


def test_getjobs_help_documents_the_trust_rules_and_environment_variables(run):
    result = run(getjobs, "--help")
    assert result.exit_code == 0
    assert "WORK_DIR OUTPUT_EXTENSION QUEUE REGION [COMMAND]..." in " ".join(result.output.split())
    assert "'..' segment are always refused" in result.output
    assert "GETJOBS_CONCURRENCY" in result.output and "GETJOBS_BUCKET" in result.output


@pytest.mark.parametrize("make, why", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "is a file"),
])
def test_sendjobs_refuses_a_bad_directory_with_one_line_and_exit_2(run, tmp_path, make, why):
    result = run(sendjobs, make(tmp_path), "b-bucket", "input/", "output/", "q")
    assert result.exit_code == 2
    assert why in one_error_line(result, "sendjobs")


def test_sendjobs_missing_queue_is_one_line_and_exit_1(run, tmp_path, mocked):
    (tmp_path / "a.txt").write_text("x")
    mocked.s3.create_bucket(Bucket="b-bucket")
    result = run(sendjobs, tmp_path, "b-bucket", "input/", "output/", "no-such-queue", "us-east-1")
    assert result.exit_code == 1
    assert "queue no-such-queue does not exist" in one_error_line(result, "sendjobs")


def test_sendjobs_json_prints_a_machine_readable_summary_on_stdout(run, tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    result = run(sendjobs, "--json", "-q", data, res.bucket, "input/", "output/", res.queue_url, "us-east-1")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["files_sent"], summary["files_failed"]) == (1, 0) and summary["batch_id"]
    assert result.stderr == ""  # --quiet


def test_sendjobs_dry_run_lists_on_stdout_and_needs_no_aws(run, tmp_path):
    (tmp_path / "a b.txt").write_text("x")
    result = run(sendjobs, "--dry-run", tmp_path, "b-bucket", "input/", "output/", "q", "us-east-1")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["key"] == "input/a b.txt"
    assert "dry run: 1 files would be sent" in result.stderr


def test_sendjobs_failed_files_make_the_exit_status_1(run, tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    (tmp_path / ("x" * 250)).write_text("fine")
    (tmp_path / "ok.txt").write_text("fine")
    result = run(sendjobs, tmp_path, res.bucket, "input/" + "p" * 800 + "/", "output/", res.queue_url, "us-east-1")
    assert result.exit_code == 1
    assert "1 sent" in result.stderr and "1 failed" in result.stderr and "over S3's 1024" in result.stderr


@pytest.mark.parametrize("args, why", [
    (["w", ".out", "q", "us-east-1"], "missing COMMAND"),
    (["--handler", "os:getcwd", "w", ".out", "q", "us-east-1", "cp"], "not both"),
    (["--handler", "no_such_module_xyz:f", "w", ".out", "q", "us-east-1"], "cannot import handler module"),
    (["--concurrency", "0", "w", ".out", "q", "us-east-1", "cp"], "--concurrency"),
    (["--log-format", "xml", "w", ".out", "q", "us-east-1", "cp"], "--log-format"),
])
def test_getjobs_usage_errors_are_one_line_and_exit_2(run, tmp_path, args, why):
    os.chdir(tmp_path)
    result = run(getjobs, *args)
    assert result.exit_code == 2
    assert why in one_error_line(result, "getjobs")


def test_getjobs_rejects_a_heartbeat_too_close_to_the_visibility_timeout(run, tmp_path, mocked, make_resources):
    res = make_resources(mocked, visibility_timeout_s=30)
    result = run(getjobs, "--heartbeat", "20", tmp_path / "w", ".out", res.queue_url, "us-east-1", "cp")
    assert result.exit_code == 1
    assert "not safely below the visibility timeout" in one_error_line(result, "getjobs")


def test_options_can_come_from_the_environment(run, tmp_path, mocked, make_resources, monkeypatch):
    res = make_resources(mocked, visibility_timeout_s=30)
    monkeypatch.setenv("GETJOBS_HEARTBEAT", "25")
    result = run(getjobs, tmp_path / "w", ".out", res.queue_url, "us-east-1", "cp")
    assert "heartbeat interval 25s" in one_error_line(result, "getjobs")


def test_jobctl_create_makes_bucket_queue_and_dead_letter_queue(run, mocked):
    result = run(jobctl, "create", "made-bucket", "made-queue", "--region", "us-east-1", "--max-receive-count", "4",
                 prog="jobctl")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    attrs = mocked.sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] in (4, "4")
    mocked.s3.head_bucket(Bucket="made-bucket")


def test_a_malformed_region_is_one_line(run, tmp_path):
    (tmp_path / "a").write_text("x")
    result = run(sendjobs, tmp_path, "b-bucket", "input/", "output/", "q", "Mars North")
    assert result.exit_code == 1
    assert "invalid AWS region 'Mars North'" in one_error_line(result, "sendjobs")


def test_a_well_formed_region_botocore_does_not_know_yet_is_only_a_warning(capsys):
    # An older botocore on a worker must not refuse a region AWS opened after its release.
    clients = clitools.connect(aws.Target(region="mars-north-7"))
    assert clients.session.region_name == "mars-north-7"
    assert "warning: region 'mars-north-7' is not in this botocore's endpoint list" in capsys.readouterr().err


@pytest.mark.parametrize("tool, prog", [(sendjobs, "sendjobs"), (getjobs, "getjobs"), (jobctl, "jobctl")])
def test_every_tool_tells_its_version(run, tool, prog):
    from filejobs import __version__

    result = run(tool, "--version", prog=prog)
    assert result.exit_code == 0 and result.stdout == f"{prog} (filejobs) {__version__}\n"


def _watch(run, bucket, queue, prefix="input/"):
    result = run(jobctl, "create", bucket, queue, "--region", "us-east-1", "--watch", prefix, prog="jobctl")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_jobctl_create_watch_sends_an_event_for_each_object_created_under_the_prefix(run, mocked):
    out = _watch(run, "watched-bucket", "watched-queue")
    assert out["watch"]["prefix"] == "input/"
    url = out["queue_url"]
    for m in mocked.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        assert json.loads(m["Body"])["Event"] == "s3:TestEvent"  # S3 checks the destination when configured
        mocked.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    mocked.s3.put_object(Bucket="watched-bucket", Key="input/a b.txt", Body=b"x")
    mocked.s3.put_object(Bucket="watched-bucket", Key="elsewhere/c.txt", Body=b"x")
    (m,) = mocked.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    (event,) = json.loads(m["Body"])["Records"]
    assert event["eventName"].startswith("ObjectCreated:") and event["s3"]["bucket"]["name"] == "watched-bucket"
    # URL-encoded as S3 encodes keys in events (moto also encodes "/": input%2Fa+b.txt).
    assert unquote_plus(event["s3"]["object"]["key"]) == "input/a b.txt"


def test_the_queue_policy_lets_only_this_bucket_of_this_account_send(run, mocked):
    out = _watch(run, "watched-bucket", "watched-queue")
    attrs = mocked.sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["Policy", "QueueArn"])
    (statement,) = json.loads(attrs["Attributes"]["Policy"])["Statement"]
    assert statement == {
        "Sid": out["watch"]["queue_policy_sid"], "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage", "Resource": attrs["Attributes"]["QueueArn"],
        "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::watched-bucket"},
                      "StringEquals": {"aws:SourceAccount": attrs["Attributes"]["QueueArn"].split(":")[4]}}}


def test_watching_again_changes_nothing_and_keeps_what_others_configured(run, mocked):
    out = _watch(run, "watched-bucket", "watched-queue")
    other = {"Sid": "SomeoneElse", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
             "Action": "sqs:ReceiveMessage", "Resource": "*"}
    policy = json.loads(mocked.sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["Policy"])
                        ["Attributes"]["Policy"])
    policy["Statement"].append(other)
    mocked.sqs.set_queue_attributes(QueueUrl=out["queue_url"], Attributes={"Policy": json.dumps(policy)})
    again = _watch(run, "watched-bucket", "watched-queue")
    _watch(run, "watched-bucket", "watched-queue", prefix="more/")
    assert again == out
    statements = json.loads(mocked.sqs.get_queue_attributes(QueueUrl=out["queue_url"], AttributeNames=["Policy"])
                            ["Attributes"]["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["SomeoneElse", out["watch"]["queue_policy_sid"]]
    configs = mocked.s3.get_bucket_notification_configuration(Bucket="watched-bucket")["QueueConfigurations"]
    assert sorted(c["Filter"]["Key"]["FilterRules"][0]["Value"] for c in configs) == ["input/", "more/"]
