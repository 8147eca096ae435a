"""End to end: the CLIs as subprocesses over real HTTP against a moto server (``jobctl local``)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from filejobs import message
from testing.helpers import ROOT, drain_queue, list_keys, run_tool, stalling, unique
from filejobs.ops import resources

pytestmark = pytest.mark.e2e


def make(server, *, max_receive_count=3, visibility_timeout_s=30):
    return resources.create_all(server.s3, server.sqs, bucket=unique("b"), queue=unique("q"), region="us-east-1",
                                settings=resources.QueueSettings(max_receive_count=max_receive_count,
                                                                 visibility_timeout_s=visibility_timeout_s))


def start_worker(server, *args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "getjobs.py"), *map(str, args)], env=server.env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def numbered_files(tmp_path, n):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n):
        (data / f"f{i:04d}.txt").write_text(f"file {i}")
    return data


def start_sendjobs(server, *args, env=None, **popen):
    argv = [sys.executable, os.path.join(ROOT, "sendjobs.py"), *map(str, args)]
    return subprocess.Popen(argv, env=env or server.env, **popen)


def queued(server, url):
    a = server.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(a["Attributes"]["ApproximateNumberOfMessages"])


def jobs_per_input(server, url):
    counts = {}
    for m in drain_queue(server.sqs, url, max_rounds=200):
        key = message.decode(m["Body"]).input_key
        counts[key] = counts.get(key, 0) + 1
    return counts


def wait_for(predicate, timeout_s=30, every_s=0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False


def test_the_original_tutorial_invocations_work_verbatim(server, tmp_path):
    res = make(server)
    data = tmp_path / "data"
    data.mkdir()
    files = {"a.txt": b"alpha", "photo 1.jpg": b"\x89PNG...", "notes.md": b"# notes\n"}
    for name, body in files.items():
        (data / name).write_bytes(body)
    queue = res.queue_url.rsplit("/", 1)[1]
    sent = run_tool("sendjobs", data, res.bucket, "input/", "output/", queue, "us-east-1", env=server.env)
    assert sent.returncode == 0, sent.stderr
    worker = start_worker(server, tmp_path / "work", ".out", queue, "us-east-1", "cp")
    try:
        assert wait_for(lambda: len(list_keys(server.s3, res.bucket, "output/")) == 3)
    finally:
        # Drain, then abort: the second signal skips waiting out the worker's 20 s long poll.
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=40)
    assert worker.returncode == 0, err
    for name, body in files.items():
        assert server.s3.get_object(Bucket=res.bucket, Key=f"output/{name}.out")["Body"].read() == body
    assert "summary" in err and "done=3" in err


@pytest.mark.parametrize("tool, args", [
    ("sendjobs", ["DATA", "some-bucket", "input/", "output/", "q", "us-east-1"]),
    ("getjobs", ["WORK", ".out", "q", "us-east-1", "cp"]),
])
def test_an_unreachable_endpoint_is_one_line_and_exit_1(server, tmp_path, tool, args):
    (tmp_path / "a.txt").write_text("x")
    args = [str(tmp_path) if a == "DATA" else str(tmp_path / "w") if a == "WORK" else a for a in args]
    env = {**server.env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = run_tool(tool, *args, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: cannot reach the endpoint"), result.stderr


def test_missing_bucket_and_queue_are_one_line_each(server, tmp_path):
    res = make(server)
    (tmp_path / "a.txt").write_text("x")
    no_bucket = run_tool("sendjobs", tmp_path, "no-such-bucket-e2e", "input/", "output/", res.queue_url, "us-east-1",
                         env=server.env)
    no_queue = run_tool("sendjobs", tmp_path, res.bucket, "input/", "output/", "no-such-queue-e2e", "us-east-1",
                        env=server.env)
    assert (no_bucket.returncode, no_queue.returncode) == (1, 1)
    assert no_bucket.stderr.strip() == "sendjobs: error: bucket no-such-bucket-e2e does not exist"
    assert no_queue.stderr.strip().startswith("sendjobs: error: queue no-such-queue-e2e does not exist")
    assert drain_queue(server.sqs, res.queue_url) == []


@pytest.mark.slow
def test_a_killed_submission_resumes_without_resending_what_was_sent(server, tmp_path):
    """SIGKILL mid-run, rerun: every file has a job; duplicates only from the batches in flight."""
    res = make(server)
    n = 240
    data = numbered_files(tmp_path, n)
    with stalling(server.env, after_requests=120) as (proxy, env):
        first = start_sendjobs(server, "--concurrency", "8", data, res.bucket, "input/", "output/", res.queue_url,
                               "us-east-1", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: proxy.held > 0, timeout_s=60, every_s=0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = queued(server, res.queue_url)
    assert 0 < before < n
    second = run_tool("sendjobs", "--json", "--concurrency", "8", data, res.bucket, "input/", "output/", res.queue_url,
                      "us-east-1", env=server.env)
    assert second.returncode == 0, second.stderr
    counts = jobs_per_input(server, res.queue_url)
    assert sorted(counts) == [f"input/f{i:04d}.txt" for i in range(n)]  # every file has a job
    duplicates = sum(c - 1 for c in counts.values())
    senders = 1  # concurrency 8 → one sending thread → at most one batch of 10 in flight
    assert duplicates <= 10 * senders, (duplicates, before)


def test_sigterm_mid_job_releases_it_and_another_worker_completes_it(server, tmp_path):
    res = make(server, visibility_timeout_s=60)
    server.s3.put_object(Bucket=res.bucket, Key="input/slow.txt", Body=b"slow")
    server.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(message.Job(
        bucket=res.bucket, input_key="input/slow.txt", input_prefix="input/", output_prefix="output/")))
    slow = start_worker(server, "--grace", "1", "--wait-time", "1", tmp_path / "w1", ".out", res.queue_url,
                        "us-east-1", "sh", "-c", 'sleep 30; cp "$1" "$2"', "sh")
    assert wait_for(lambda: any(os.scandir(tmp_path / "w1")) if (tmp_path / "w1").exists() else False)
    time.sleep(0.5)
    slow.send_signal(signal.SIGTERM)
    _, err = slow.communicate(timeout=40)
    assert slow.returncode == 0 and "released" in err, err
    assert list_keys(server.s3, res.bucket, "output/") == []  # no partial output
    fast = run_tool("getjobs", "--exit-when-idle", "2", "--wait-time", "1", tmp_path / "w2", ".out", res.queue_url,
                    "us-east-1", "cp", env=server.env)
    assert fast.returncode == 0 and "done=1" in fast.stderr, fast.stderr
    assert server.s3.get_object(Bucket=res.bucket, Key="output/slow.txt.out")["Body"].read() == b"slow"
    assert os.listdir(tmp_path / "w1") == []  # the drained worker cleaned up after itself


@pytest.mark.slow
def test_make_demo_runs_the_whole_pipeline(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo.py"), "--output", str(tmp_path / "out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "32 jobs sent" in result.stderr and "31 done, 1 failed" in result.stderr
    assert (tmp_path / "out" / "reports" / "2024" / "Q1 sales.csv.json").exists()


@pytest.mark.slow
def test_make_demo_events_processes_files_uploaded_without_sendjobs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo_events.py"), "--output",
                             str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "32 files uploaded with plain boto3 (no sendjobs), 31 done, 1 in the dead-letter queue" in result.stderr
    assert "input/incoming/" in result.stderr and "is a folder marker" in result.stderr and "s3:TestEvent" in result.stderr
    assert (tmp_path / "out" / "reports" / "2024" / "Q1 sales.csv.json").exists()


def test_ctrl_c_stops_promptly_and_a_rerun_sends_each_remaining_file_once(server, tmp_path):
    res = make(server)
    n = 200
    data = numbered_files(tmp_path, n)
    with stalling(server.env, after_requests=100) as (proxy, env):
        first = start_sendjobs(server, "--concurrency", "4", data, res.bucket, "input/", "output/", res.queue_url,
                               "us-east-1", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: proxy.held > 0, timeout_s=60, every_s=0.02)
        first.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the signal is handled before the held requests are let through
        proxy.release()
        started = time.monotonic()
        _, err = first.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert first.returncode == 130 and "Traceback" not in err, err
    assert "interrupted: rerun the same command to resume" in err
    second = run_tool("sendjobs", "--json", data, res.bucket, "input/", "output/", res.queue_url, "us-east-1",
                      env=server.env)
    assert second.returncode == 0, second.stderr
    counts = jobs_per_input(server, res.queue_url)
    assert len(counts) == n and set(counts.values()) == {1}  # a clean stop leaves no duplicate at all
