"""jobctl status / redrive / create --watch and sendjobs --wait as a user runs them, on the test endpoint
(moto by default; LocalStack with testing/with-localstack.sh, see tests/e2e/conftest.py)."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pytest

from filejobs.ops import resources
from testing.helpers import REGION, list_keys, run_tool, unique

pytestmark = pytest.mark.e2e

# The names LocalStack's paging lost (3/7 done with all 7 outputs there, issue 15 item 3).
NAMES = ["a.txt", "b c.txt", "ä.txt", "über.txt", "Ölfass.dat", "日本.txt", "datei-ü-18.dat"]


def make(server, *, max_receive_count=3):
    return resources.create_all(server.s3, server.sqs, bucket=unique("b"), queue=unique("q"), region=REGION,
                                settings=resources.QueueSettings(max_receive_count=max_receive_count,
                                                                 visibility_timeout_s=30))


def send(server, tmp_path, res, names=NAMES, *extra):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for name in names:
        (data / name).write_text(f"content of {name}\n")
    sent = run_tool("sendjobs", "--json", "-q", *extra, data, res.bucket, "input/", "output/", res.queue_url, REGION,
                    env=server.env)
    assert sent.returncode == 0, sent.stderr
    return json.loads(sent.stdout.splitlines()[0])


def work(server, tmp_path, res, *command):
    got = run_tool("getjobs", "--wait-time", "1", "--exit-when-idle", "3", "--retry-delay", "0", tmp_path / "work",
                   ".out", res.queue_url, REGION, *command, env=server.env, timeout=180)
    assert got.returncode == 0, got.stderr[-3000:]
    return got


def jobctl(server, *args, code=0):
    result = run_tool("jobctl", *args, env=server.env, timeout=180)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_status_counts_every_finished_job_whatever_the_names(server, tmp_path):
    res = make(server)
    send(server, tmp_path, res)
    work(server, tmp_path, res, "cp")
    assert len(list_keys(server.s3, res.bucket, "output/")) == len(NAMES)
    batch = json.loads(jobctl(server, "status", res.bucket, "--json").stdout)
    assert (batch["done"], batch["total"], batch["failed"]) == (7, 7, 0)
    prefix = json.loads(jobctl(server, "status", res.bucket, "--prefix", "input/", "--output-prefix", "output/",
                               "--json").stdout)
    assert (prefix["done"], prefix["total"], prefix["warnings"]) == (7, 7, [])


def test_sendjobs_wait_with_a_timeout_exits_124_with_a_last_status_line(server, tmp_path):
    res = make(server)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    result = run_tool("sendjobs", "--wait", "--wait-interval", "0.2", "--timeout", "1", data, res.bucket, "input/",
                      "output/", res.queue_url, REGION, env=server.env)
    assert result.returncode == 124, result.stderr
    assert result.stderr.splitlines()[-1].startswith("timed out after 1s: 1 of 1 jobs still pending (batch ")


def test_a_missing_bucket_is_named(server):
    result = jobctl(server, "status", "no-such-bucket-e2e", code=1)
    assert result.stderr.strip() == "jobctl: error: bucket no-such-bucket-e2e does not exist"


@pytest.mark.slow
def test_redrive_moves_the_failed_jobs_back_and_the_fixed_command_finishes_them(server, tmp_path, lacks):
    """With a move task where the endpoint has them (followed to COMPLETED), else by hand (moto's
    server answers the move task with an HTML 500, which must not cost botocore's retries)."""
    res = make(server, max_receive_count=1)
    send(server, tmp_path, res, ["x.txt", "ÿ.txt"])
    work(server, tmp_path, res, "false")
    failed = json.loads(jobctl(server, "status", res.bucket, "--json").stdout)
    assert failed["failed"] == 2, failed
    moved = json.loads(jobctl(server, "redrive", res.queue_url, "--bucket", res.bucket, "--json").stdout)
    method = "receive/send/delete" if "move_tasks" in lacks else "StartMessageMoveTask"
    assert (moved["method"], moved["status"], moved["moved"], moved["errors_cleared"]) == (
        method, "COMPLETED", 2, 2), moved
    work(server, tmp_path, res, "cp")
    done = json.loads(jobctl(server, "status", res.bucket, "--json").stdout)
    assert (done["done"], done["failed"]) == (2, 0), done


@pytest.mark.needs("move_tasks")
def test_redrive_status_shows_the_move_task_that_ran(server, tmp_path):
    res = make(server, max_receive_count=1)
    send(server, tmp_path, res, ["x.txt"])
    work(server, tmp_path, res, "false")
    jobctl(server, "redrive", res.queue_url, "--no-wait")
    tasks = json.loads(jobctl(server, "redrive", res.queue_url, "--status", "--json").stdout)
    assert [t["status"] for t in tasks][:1] in (["RUNNING"], ["COMPLETED"]) and tasks[0]["to_move"] == 1, tasks


def test_create_watch_sends_an_event_for_each_new_object_under_the_prefix(server):
    bucket, queue = unique("b"), unique("q")
    out = json.loads(jobctl(server, "create", bucket, queue, "--watch", "input/").stdout)
    again = json.loads(jobctl(server, "create", bucket, queue, "--watch", "input/").stdout)
    assert again == out
    server.s3.put_object(Bucket=bucket, Key="input/new file.txt", Body=b"x")
    server.s3.put_object(Bucket=bucket, Key="other/skip.txt", Body=b"x")
    keys = []
    for _ in range(10):
        for m in server.sqs.receive_message(QueueUrl=out["queue_url"], MaxNumberOfMessages=10,
                                            WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(m["Body"])
            keys += [unquote_plus(r["s3"]["object"]["key"]) for r in body.get("Records", [])]
            server.sqs.delete_message(QueueUrl=out["queue_url"], ReceiptHandle=m["ReceiptHandle"])
        if keys:
            break
    assert keys == ["input/new file.txt"]
