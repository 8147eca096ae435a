"""getjobs refuses a COMMAND or --handler that cannot run before it receives anything: one line,
exit 2, the queue untouched (issue 15, item 1: a relative command used to fail every job)."""

from __future__ import annotations

import json

import pytest

import getjobs
from filejobs import message
from filejobs.message import Job
from testing.helpers import REGION, cli_runner


@pytest.fixture
def queue_with_a_job(mocked, make_resources):
    res = make_resources(mocked)
    etag = mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"a")["ETag"]
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(Job(
        bucket=res.bucket, input_key="input/a.txt", input_prefix="input/", output_prefix="output/", etag=etag)))
    return res


def run(*args):
    result = cli_runner().invoke(getjobs.cli, [str(a) for a in args], prog_name="getjobs")
    return result, result.stderr.strip().splitlines()


def untouched(mocked, res) -> bool:
    a = mocked.sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["All"])["Attributes"]
    return (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == ("1", "0") and \
        mocked.sqs.receive_message(QueueUrl=res.queue_url, MessageSystemAttributeNames=["ApproximateReceiveCount"])[
            "Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "1"  # this is the first receive


def script(path, mode=0o755):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('#!/bin/sh\ncp "$1" "$2"\n')
    path.chmod(mode)


@pytest.mark.parametrize("setup, command, why", [
    (lambda tmp: None, ["scripts/process.sh"], "command scripts/process.sh not found"),
    (lambda tmp: script(tmp / "process.sh", mode=0o644), ["./process.sh"], "command ./process.sh is not executable"),
    (lambda tmp: (tmp / "scripts").mkdir(), ["./scripts"], "command ./scripts is a directory"),
    (lambda tmp: None, ["no-such-program-x", "--flag"], "command no-such-program-x not found on PATH"),
])
def test_a_command_that_cannot_run_is_refused_before_any_job(tmp_path, monkeypatch, mocked, queue_with_a_job,
                                                            setup, command, why):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    result, lines = run("--wait-time", "0", "--exit-when-idle", "0", "work", ".out", queue_with_a_job.queue_url,
                        REGION, *command)
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("getjobs: error: Invalid value for COMMAND: " + why)
    assert untouched(mocked, queue_with_a_job)


@pytest.mark.parametrize("handler, why", [
    ("no_such_module_x:f", "cannot import handler module 'no_such_module_x'"),
    ("os.path:no_such_function", "handler 'os.path:no_such_function' not found"),
    ("os:sep", "handler 'os:sep' is not callable"),
    ("os.path", "handler must be module:function"),
])
def test_a_handler_that_cannot_be_imported_or_called_is_refused_before_any_job(
        tmp_path, mocked, queue_with_a_job, handler, why):
    result, lines = run("--handler", handler, "--wait-time", "0", "--exit-when-idle", "0", tmp_path, ".out",
                        queue_with_a_job.queue_url, REGION)
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("getjobs: error: Invalid value for --handler: " + why)
    assert untouched(mocked, queue_with_a_job)


def test_a_relative_command_runs_from_where_getjobs_was_started_although_jobs_run_elsewhere(
        tmp_path, monkeypatch, mocked, queue_with_a_job):
    monkeypatch.chdir(tmp_path)
    script(tmp_path / "scripts" / "process.sh")
    result, _ = run("--wait-time", "0", "--exit-when-idle", "0.2", "--log-format", "json", "work", ".out",
                    queue_with_a_job.queue_url, REGION, "scripts/process.sh")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events[0]["runner"] == f"{tmp_path}/scripts/process.sh"
    assert [e["done"] for e in events if e["event"] == "summary"] == [1]
    assert mocked.s3.get_object(Bucket=queue_with_a_job.bucket, Key="output/a.txt.out")["Body"].read() == b"a"
