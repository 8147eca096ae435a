"""getjobs' library: one job per message, never lost, never run unsafely."""

import io
import json
import os
import threading
import time

import pytest

from filejobs import message
from testing.recorder import CallRecorder
from filejobs.message import Allowed, Job
from filejobs.runner import CommandRunner, HandlerRunner, RunResult
from filejobs.worker import FatalWorkerError, Worker, WorkerConfig
from testing.helpers import RecordingLog, drain_queue, list_keys
from filejobs.events import EventLog


def send(clients, res, key, data=b"payload", *, etag=None, **kw):
    put = clients.s3.put_object(Bucket=res.bucket, Key=key, Body=data) if data is not None else {"ETag": None}
    job = Job(bucket=res.bucket, input_key=key, input_prefix=kw.pop("input_prefix", "input/"),
              output_prefix=kw.pop("output_prefix", "output/"), batch_id="b1",
              etag=etag if etag is not None else put["ETag"], **kw)
    clients.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(job))
    return job


def worker(tmp_path, clients, res, runner, **kw):
    kw.setdefault("exit_when_idle_s", 0.05)
    kw.setdefault("wait_time_s", 0)
    kw.setdefault("retry_base_s", 0)
    cfg = WorkerConfig(work_dir=str(tmp_path / "work"), extension=kw.pop("extension", ".out"), queue=res.queue_url, **kw)
    log = RecordingLog()
    return Worker(cfg, clients, runner, log=log), log.events


def queue_counts(clients, url):
    a = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


class Recording:
    """A runner that records each execution and copies input to output (or fails)."""

    def __init__(self, fail=False, sleep_s=0.0, write=True):
        self.calls, self.fail, self.sleep_s, self.write = [], fail, sleep_s, write
        self.exited = 0
        self.lock = threading.Lock()

    def describe(self):
        return "recording"

    def run(self, input_path, output_path, *, cwd, timeout_s, cancel, context=None):
        with self.lock:
            self.calls.append(input_path)
        try:
            return self._run(input_path, output_path, cancel)
        finally:
            with self.lock:
                self.exited += 1

    def _run(self, input_path, output_path, cancel):
        if cancel.wait(self.sleep_s):
            return RunResult(False, reason="stopped", cancelled=True)
        if self.fail:
            return RunResult(False, exit_code=3, reason="exit code 3", stderr_tail="boom")
        if self.write:
            with open(input_path, "rb") as src, open(output_path, "wb") as dst:
                dst.write(src.read().upper())
        return RunResult(True, exit_code=0)


def test_a_job_is_downloaded_run_uploaded_then_deleted(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    job = send(mocked, res, "input/dir/a b.txt", b"hello")
    w, events = worker(tmp_path, mocked, res, CommandRunner(["cp"]))
    stats = w.run()
    assert (stats.done, stats.failed) == (1, 0)
    out = mocked.s3.get_object(Bucket=res.bucket, Key="output/dir/a b.txt.out")
    assert out["Body"].read() == b"hello"
    assert out["Metadata"]["filejobs-input-etag"] == job.etag.strip('"')
    assert queue_counts(mocked, res.queue_url) == (0, 0)
    assert os.listdir(tmp_path / "work") == []  # local files are removed


def test_the_original_sample_message_is_processed(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    mocked.s3.put_object(Bucket=res.bucket, Key="input/photo.jpg", Body=b"img")
    mocked.sqs.send_message(QueueUrl=res.queue_url,
                            MessageBody=json.dumps(["process", res.bucket, "input/", "output/", "photo.jpg"]))
    stats = worker(tmp_path, mocked, res, CommandRunner(["cp"]))[0].run()
    assert stats.done == 1
    assert mocked.s3.get_object(Bucket=res.bucket, Key="output/photo.jpg.out")["Body"].read() == b"img"


def test_the_command_gets_absolute_paths_so_names_are_never_options(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/-rf", b"x")
    seen = tmp_path / "argv.txt"
    script = tmp_path / "show.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\ncp -- "$1" "$2"\n')
    script.chmod(0o755)
    assert worker(tmp_path, mocked, res, CommandRunner([str(script)]))[0].run().done == 1
    args = seen.read_text().splitlines()
    assert all(os.path.isabs(a) for a in args) and args[0].endswith("/-rf") and args[1].endswith("/-rf.out")


def test_a_failing_job_is_retried_then_recorded_and_moved_to_the_dead_letter_queue(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=2)
    send(mocked, res, "input/bad.txt")
    runner = Recording(fail=True)
    stats = worker(tmp_path, mocked, res, runner)[0].run()
    assert (len(runner.calls), stats.failed, stats.done) == (2, 2, 0)
    assert len(drain_queue(mocked.sqs, res.dlq_url)) == 1
    record = json.loads(mocked.s3.get_object(Bucket=res.bucket, Key="errors/b1/bad.txt.json")["Body"].read())
    assert (record["attempts"], record["exit_code"], record["stderr_tail"]) == (2, 3, "boom")
    assert list_keys(mocked.s3, res.bucket, "output/") == []


@pytest.mark.parametrize("body", [
    "not json",
    '{"v": 99}',
    json.dumps(["process", "other-bucket", "input/", "output/", "a.txt"]),
    json.dumps(["process", "BUCKET", "secret/", "output/", "a.txt"]),
    json.dumps(["process", "BUCKET", "input/", "elsewhere/", "a.txt"]),
    json.dumps(["process", "BUCKET", "input/", "output/", "../../../etc/cron.d/x"]),
    json.dumps(["process", "BUCKET", "", "output/", "/etc/passwd"]),
    json.dumps(["process", "BUCKET", "input/", "output/", "/tmp/x.txt"]),  # would write output//tmp/x.txt.out
    json.dumps(["process", "BUCKET", "input/", "output/", "a//b.txt"]),
])
def test_refused_messages_go_straight_to_the_dead_letter_queue_without_touching_s3(
        tmp_path, mocked, make_resources, body):
    res = make_resources(mocked)
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=body.replace("BUCKET", res.bucket))
    runner = Recording()
    recorder = CallRecorder()
    recorder.attach(mocked.s3)
    w, events = worker(tmp_path, mocked, res, runner,
                       allowed=Allowed(bucket=res.bucket, input_prefix="input/", output_prefix="output/"))
    stats = w.run()
    assert (stats.rejected, runner.calls, recorder.total_calls()) == (1, [], 0)
    dead = drain_queue(mocked.sqs, res.dlq_url)
    assert len(dead) == 1 and dead[0]["MessageAttributes"]["filejobs-reject-reason"]["StringValue"]
    assert events and events[0][0] == "started" and [e for e, _ in events].count("rejected") == 1
    assert queue_counts(mocked, res.queue_url) == (0, 0)
    assert os.listdir(tmp_path / "work") == []


def test_a_good_job_after_a_poison_one_is_still_served(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody="{broken")
    send(mocked, res, "input/good.txt")
    stats = worker(tmp_path, mocked, res, Recording())[0].run()
    assert (stats.rejected, stats.done) == (1, 1)


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    send(mocked, res, "input/slow.txt")
    pidfile = tmp_path / "child.pid"
    runner = CommandRunner(["sh", "-c", f'sleep 60 & echo $! > {pidfile}; wait', "sh"])
    started = time.monotonic()
    stats = worker(tmp_path, mocked, res, runner, job_timeout_s=0.5)[0].run()
    assert stats.failed == 1 and time.monotonic() - started < 15
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while process_state(child) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.02)  # SIGKILL is delivered asynchronously
    assert process_state(child) in (None, "Z")  # gone, or a zombie waiting for init to reap it


def process_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_a_missing_input_object_is_a_failure_not_a_crash(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    send(mocked, res, "input/ghost.txt", data=None, etag="")
    stats = worker(tmp_path, mocked, res, Recording())[0].run()
    assert stats.failed == 1
    record = json.loads(mocked.s3.get_object(Bucket=res.bucket, Key="errors/b1/ghost.txt.json")["Body"].read())
    assert record["reason"] == "input object is missing"


def test_an_input_replaced_after_sending_is_skipped_as_stale(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/a.txt", b"v1")
    mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"v2 -- a newer upload with its own job")
    runner = Recording()
    stats = worker(tmp_path, mocked, res, runner)[0].run()
    assert (stats.skipped, runner.calls) == (1, [])


def test_a_redelivered_job_whose_output_exists_is_skipped_without_running(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    job = send(mocked, res, "input/a.txt", b"v1")
    mocked.s3.put_object(Bucket=res.bucket, Key="output/a.txt.out", Body=b"V1",
                         Metadata={"filejobs-input-etag": job.etag.strip('"')})
    first = mocked.sqs.receive_message(QueueUrl=res.queue_url)["Messages"][0]  # receive #1, "lost" by a dead worker
    mocked.sqs.change_message_visibility(QueueUrl=res.queue_url, ReceiptHandle=first["ReceiptHandle"],
                                         VisibilityTimeout=0)
    runner = Recording()
    stats = worker(tmp_path, mocked, res, runner)[0].run()
    assert (stats.skipped, runner.calls) == (1, [])
    assert queue_counts(mocked, res.queue_url) == (0, 0)


def test_a_duplicate_message_never_overwrites_the_output(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    mocked.s3.put_bucket_versioning(Bucket=res.bucket, VersioningConfiguration={"Status": "Enabled"})
    job = send(mocked, res, "input/a.txt", b"v1")
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(job))  # sender-side duplicate
    stats = worker(tmp_path, mocked, res, Recording())[0].run()
    assert (stats.done, stats.skipped) == (1, 1)
    versions = mocked.s3.list_object_versions(Bucket=res.bucket, Prefix="output/")["Versions"]
    assert len(versions) == 1  # the create-only put turned the second write into a no-op


def test_a_changed_input_is_processed_again_and_replaces_the_output(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/a.txt", b"v1")
    worker(tmp_path, mocked, res, Recording())[0].run()
    send(mocked, res, "input/a.txt", b"v2")
    stats = worker(tmp_path, mocked, res, Recording())[0].run()
    assert stats.done == 1
    assert mocked.s3.get_object(Bucket=res.bucket, Key="output/a.txt.out")["Body"].read() == b"V2"


def test_a_directory_output_is_uploaded_file_by_file_under_the_output_key(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/book.txt", b"x")
    script = tmp_path / "split.sh"
    script.write_text('#!/bin/sh\nmkdir -p "$2/pages" && echo one > "$2/pages/1.txt" && echo idx > "$2/index.txt"\n')
    script.chmod(0o755)
    assert worker(tmp_path, mocked, res, CommandRunner([str(script)]))[0].run().done == 1
    assert sorted(list_keys(mocked.s3, res.bucket, "output/")) == ["output/book.txt.out/index.txt",
                                                                     "output/book.txt.out/pages/1.txt"]


def test_a_command_that_writes_no_output_fails(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    send(mocked, res, "input/a.txt")
    stats = worker(tmp_path, mocked, res, CommandRunner(["true"]))[0].run()
    assert stats.failed == 1


def test_a_python_handler_runs_in_process(tmp_path, mocked, make_resources, monkeypatch):
    res = make_resources(mocked)
    send(mocked, res, "input/a.txt", b"abc")
    (tmp_path / "myhandlers.py").write_text(
        "def reverse(src, dst):\n    open(dst, 'wb').write(open(src, 'rb').read()[::-1])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert worker(tmp_path, mocked, res, HandlerRunner("myhandlers:reverse"))[0].run().done == 1
    assert mocked.s3.get_object(Bucket=res.bucket, Key="output/a.txt.out")["Body"].read() == b"cba"


def test_a_job_longer_than_the_visibility_timeout_runs_exactly_once(tmp_path, mocked, make_resources):
    res = make_resources(mocked, visibility_timeout_s=1)
    send(mocked, res, "input/long.txt")
    slow, other = Recording(sleep_s=1.6), Recording()
    w1, events = worker(tmp_path / "1", mocked, res, slow, heartbeat_s=0.4)
    w2, w2_events = worker(tmp_path / "2", mocked, res, other, heartbeat_s=0.4, exit_when_idle_s=None)
    w1_stats, w2_stats = [], []
    t1 = threading.Thread(target=lambda: w1_stats.append(w1.run()))
    t2 = threading.Thread(target=lambda: w2_stats.append(w2.run()))
    t1.start()
    wait_for(lambda: slow.calls)
    t2.start()  # polls all along: it would get the message whenever its visibility lapsed
    t1.join(10)
    w2.request_stop()
    w2.request_stop()
    t2.join(10)
    assert w2_stats and w2_events[0][0] == "started"
    assert (len(slow.calls), other.calls) == (1, [])
    assert w1_stats[0].done == 1 and w1_stats[0].heartbeats >= 2
    assert [f["visibility_s"] for e, f in events if e == "heartbeat"][:2] == [1, 1]


def test_a_second_stop_aborts_a_running_command_and_releases_its_message(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/job.txt")
    runner = Recording(sleep_s=30)
    w, events = worker(tmp_path, mocked, res, runner, grace_s=30, exit_when_idle_s=None)
    t = threading.Thread(target=w.run)
    t.start()
    wait_for(lambda: runner.calls)
    w.request_stop()
    w.request_stop()
    t.join(10)
    assert not t.is_alive() and [f["mode"] for e, f in events if e == "stopping"] == ["drain", "abort"]
    assert (w.stats.released, w.stats.done) == (1, 0) and runner.exited == 1
    assert queue_counts(mocked, res.queue_url) == (1, 0)


def test_the_worker_never_holds_more_messages_than_free_slots(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    for i in range(6):
        send(mocked, res, f"input/{i}.txt")
    runner = Recording(sleep_s=0.2)
    w, events = worker(tmp_path, mocked, res, runner, concurrency=2, batch_linger_s=0)
    received, asked = [], []

    def before_receive(params, **_):
        # A slot is taken from receipt until the command exits; a job thread until it is settled.
        in_slot = sum(received) - runner.exited
        in_thread = sum(received) - sum(e in ("done", "skipped", "failed") for e, _ in events)
        asked.append((in_slot + params["MaxNumberOfMessages"], in_thread + params["MaxNumberOfMessages"]))

    mocked.sqs.meta.events.register("before-parameter-build.sqs.ReceiveMessage", before_receive)
    mocked.sqs.meta.events.register("after-call.sqs.ReceiveMessage",
                                    lambda parsed, **_: received.append(len(parsed.get("Messages", []))))
    assert w.run().done == 6
    # Jobs not yet past their command + messages asked for never exceed the job slots; uploads
    # of finished commands may overlap (at most one per slot).
    assert max(a for a, _ in asked) <= 2 and max(b for _, b in asked) <= 4
    assert max(received) == 2  # it did ask for all the free slots at once


def wait_for(predicate, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_scale_in_protection_is_on_while_jobs_are_held_and_off_when_idle_and_at_exit(
        tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    send(mocked, res, "input/a.txt")

    class Protector:
        def __init__(self):
            self.calls = []

        def set_busy(self, busy, *, now=False):
            self.calls.append((busy, "now") if now else busy)

    protector = Protector()
    cfg = WorkerConfig(work_dir=str(tmp_path / "work"), extension=".out", queue=res.queue_url, exit_when_idle_s=0.2,
                       wait_time_s=0)
    assert Worker(cfg, mocked, Recording(), protector=protector).run().done == 1
    assert protector.calls == [True, False, (False, "now")]


def stop_mid_job(tmp_path, mocked, res, *, job_s, grace_s):
    """Start a worker on one job, ask it to stop once the job runs; return (worker, stop seconds)."""
    send(mocked, res, "input/job.txt")
    runner = Recording(sleep_s=job_s)
    w, _ = worker(tmp_path, mocked, res, runner, grace_s=grace_s, exit_when_idle_s=None)
    t = threading.Thread(target=w.run)
    t.start()
    wait_for(lambda: runner.calls)
    started = time.monotonic()
    w.request_stop()
    t.join(20)
    assert not t.is_alive()
    return w, time.monotonic() - started


def test_first_stop_drains_and_releases_what_does_not_finish_in_the_grace_period(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    w, seconds = stop_mid_job(tmp_path, mocked, res, job_s=30, grace_s=0.3)
    assert seconds < 5
    assert w.stats.released == 1 and w.stats.done == 0
    assert queue_counts(mocked, res.queue_url) == (1, 0)  # visible again at once for another worker


def test_first_stop_lets_a_short_job_finish(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    w, _ = stop_mid_job(tmp_path, mocked, res, job_s=0.3, grace_s=10)
    assert (w.stats.done, w.stats.released) == (1, 0)
    assert queue_counts(mocked, res.queue_url) == (0, 0)


def test_max_jobs_stops_after_that_many_messages(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    for i in range(5):
        send(mocked, res, f"input/{i}.txt")
    w, _ = worker(tmp_path, mocked, res, Recording(), max_jobs=2, exit_when_idle_s=None)
    assert w.run().done == 2
    assert queue_counts(mocked, res.queue_url)[0] == 3


def test_a_deleted_queue_stops_the_worker_with_one_line(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    w, _ = worker(tmp_path, mocked, res, Recording(), exit_when_idle_s=None)
    mocked.sqs.delete_queue(QueueUrl=res.queue_url)
    with pytest.raises(FatalWorkerError, match="does not exist"):
        w.run()


def test_full_batches_cost_at_most_2_3_requests_per_job(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    for i in range(40):
        send(mocked, res, f"input/{i:02d}.txt")
    recorder = CallRecorder()
    recorder.attach(mocked.s3)
    recorder.attach(mocked.sqs)
    w, _ = worker(tmp_path, mocked, res, Recording(), concurrency=10)
    stats = w.run()
    ops = recorder.by_operation
    assert stats.done == 40
    per_job = (ops["s3:GetObject"] + ops["s3:PutObject"] + ops["sqs:ReceiveMessage"]
               + ops["sqs:DeleteMessageBatch"]) / 40
    assert ops["sqs:DeleteMessageBatch"] <= 6 and per_job <= 2.3 + 3 / 40, ops


def test_folders_left_by_a_killed_worker_are_removed_at_start_but_not_a_live_ones(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    work = tmp_path / "work"
    dead = work / "job-999999999-abc"  # no such pid
    live = work / f"job-{os.getppid()}-def"  # a live process (pytest's parent)
    for d in (dead, live):
        (d / "in").mkdir(parents=True)
    (work / "notes.txt").write_text("not ours")
    worker(tmp_path, mocked, res, Recording())[0].run()
    assert sorted(os.listdir(work)) == [live.name, "notes.txt"]


def test_metrics_are_embedded_metric_format_lines_when_asked_for(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    send(mocked, res, "input/ok.txt")
    out = io.StringIO()
    log = EventLog(stream=io.StringIO(), metrics=True, metrics_stream=out,
                   dimensions={"Queue": res.queue_url.rsplit("/", 1)[1]})
    cfg = WorkerConfig(work_dir=str(tmp_path / "work"), extension=".out", queue=res.queue_url, exit_when_idle_s=0.1,
                       wait_time_s=0)
    Worker(cfg, mocked, Recording(), log=log).run()
    (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "filejobs" and directive["Dimensions"] == [["Queue"]]
    assert {m["Name"] for m in directive["Metrics"]} == {"JobsDone", "JobDuration"}
    assert record["JobsDone"] == 1 and record["Queue"] == res.queue_url.rsplit("/", 1)[1]
