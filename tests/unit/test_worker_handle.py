"""handle(lease): decode -> download -> run -> upload, as an Outcome, with no SQS call at all."""

from __future__ import annotations

import json
import os
import stat

import pytest

from filejobs.message import Allowed
from filejobs.runner import RunResult
from filejobs.worker import Handler, Kind
from filejobs.worker.handle import remove_stale_job_dirs
from testing.helpers import RecordingLog
from worker_fakes import FakeS3, Parts, admit, body, client_error, config

BUCKET = "my-bucket"


class Runner:
    """Records each run and what it saw; writes the input upper-cased, or does what it is told."""

    def __init__(self, result=RunResult(True, exit_code=0), write=True, action=None):
        self.result, self.write, self.action = result, write, action
        self.runs = []

    def describe(self):
        return "fake"

    def run(self, input_path, output_path, *, cwd, timeout_s, cancel, context):
        self.runs.append({"input": input_path, "cwd": cwd, "mode": stat.S_IMODE(os.stat(cwd).st_mode),
                          "context": context})
        if self.action:
            self.action(input_path, output_path)
        elif self.write and self.result.ok:
            with open(input_path, "rb") as src, open(output_path, "wb") as dst:
                dst.write(src.read().upper())
        return self.result


class Setup:
    def __init__(self, tmp_path, runner=None, *, attempt=1, allowed=Allowed(), data=b"hello", **job):
        self.p = Parts()
        self.s3 = FakeS3()
        self.runner = runner or Runner()
        self.work = tmp_path / "work"
        self.work.mkdir()
        self.etag = self.s3.add(BUCKET, "input/a.txt", data, version_id="v1") if data is not None else None
        job.setdefault("etag", self.etag)
        self.handler = Handler(config(self.work, allowed=allowed), self.s3, self.runner, self.p.inflight,
                               log=self.p.log, clock=self.p.clock)
        (self.lease,) = admit(self.p.inflight, body("input/a.txt", **job), attempt=attempt)

    def handle(self):
        return self.handler.handle(self.lease)

    def output(self, key="output/a.txt.out"):
        return self.s3.objects[(BUCKET, key)]


def test_a_job_is_downloaded_run_and_uploaded_create_only_with_the_input_version(tmp_path):
    s = Setup(tmp_path)
    outcome = s.handle()
    assert (outcome.kind, outcome.output) == (Kind.DONE, "output/a.txt.out")
    assert s.output()["data"] == b"HELLO"
    assert s.output()["Metadata"] == {"filejobs-input-etag": s.etag.strip('"'), "filejobs-batch": "b1"}
    assert s.s3.ops() == ["GetObject", "PutObject"] and s.s3.calls[1][1]["IfNoneMatch"] == "*"
    assert s.p.log.names() == ["received", "started"]


def test_each_job_runs_in_a_private_folder_emptied_afterwards_and_removed_when_the_worker_stops(tmp_path):
    s = Setup(tmp_path)
    s.handle()
    (run,) = s.runner.runs
    assert run["mode"] == 0o700 and os.path.dirname(run["cwd"]) == str(s.work)
    assert os.path.basename(run["cwd"]).startswith(f"job-{os.getpid()}-")
    assert sorted(os.listdir(run["cwd"])) == ["in", "out"]
    assert os.listdir(os.path.join(run["cwd"], "in")) == os.listdir(os.path.join(run["cwd"], "out")) == []
    s.handler.close()
    assert os.listdir(s.work) == []


def test_the_slot_is_free_before_the_upload_so_the_next_job_overlaps_it(tmp_path):
    s = Setup(tmp_path)
    free_during_upload = []
    s.s3.on_put = lambda: free_during_upload.append(s.p.inflight.free_slots())
    assert s.p.inflight.free_slots() == 0
    s.handle()
    assert free_during_upload == [1]


@pytest.mark.parametrize("raw, reason", [
    ("{not json", "not JSON"),
    (json.dumps(["process", BUCKET, "input/", "output/", "/tmp/x.txt"]), "absolute"),
    (json.dumps(["process", "someone-else", "input/", "output/", "a.txt"]), "not the configured bucket"),
])
def test_a_message_that_can_never_succeed_is_rejected_without_touching_s3(tmp_path, raw, reason):
    s = Setup(tmp_path, allowed=Allowed(bucket=BUCKET))
    s.lease.body = raw
    outcome = s.handle()
    assert outcome.kind is Kind.REJECTED and reason in outcome.reason
    assert s.s3.calls == [] and s.runner.runs == [] and s.p.log.events == []


def test_an_input_replaced_after_sending_is_stale(tmp_path):
    s = Setup(tmp_path, etag='"an-older-version"')
    outcome = s.handle()
    assert (outcome.kind, outcome.reason) == (Kind.STALE, "input changed since the job was sent")
    assert s.runner.runs == []


def test_a_versioned_input_whose_current_version_is_another_is_stale(tmp_path):
    s = Setup(tmp_path, etag=None, version_id="v0")
    assert s.handle().kind is Kind.STALE and s.runner.runs == []


@pytest.mark.parametrize("error, reason", [
    ("NoSuchKey", "input object is missing"),
    ("AccessDenied", "input object is missing or not readable (403)"),
    ("SlowDown", "download failed: GetObject failed: SlowDown"),
])
def test_an_input_that_cannot_be_downloaded_is_a_failure(tmp_path, error, reason):
    s = Setup(tmp_path)
    s.s3.errors["GetObject"] = client_error(error, "GetObject")
    outcome = s.handle()
    assert outcome.kind is Kind.FAILED and outcome.reason.startswith(reason) and s.runner.runs == []


def test_a_failing_command_is_a_failure_with_its_exit_code_and_stderr(tmp_path):
    s = Setup(tmp_path, Runner(RunResult(False, exit_code=3, reason="exit code 3", stderr_tail="boom")))
    outcome = s.handle()
    assert (outcome.kind, outcome.reason, outcome.exit_code, outcome.stderr_tail) == (
        Kind.FAILED, "exit code 3", 3, "boom")
    assert s.s3.ops() == ["GetObject"]


def test_a_command_that_exits_0_without_output_fails(tmp_path):
    outcome = Setup(tmp_path, Runner(write=False)).handle()
    assert (outcome.kind, outcome.reason) == (Kind.FAILED, "the command exited 0 but wrote no output")


def test_an_output_that_is_a_symlink_is_not_followed(tmp_path):
    outcome = Setup(tmp_path, Runner(action=lambda i, o: os.symlink("/etc/passwd", o))).handle()
    assert outcome.kind is Kind.FAILED and "symlink" in outcome.reason


def test_an_output_that_is_neither_a_file_nor_a_directory_fails_without_being_read(tmp_path):
    outcome = Setup(tmp_path, Runner(action=lambda i, o: os.mkfifo(o))).handle()
    assert (outcome.kind, outcome.reason) == (Kind.FAILED, "the output is not a regular file or a directory")


def test_a_directory_output_is_uploaded_file_by_file(tmp_path):
    def pages(_, out):
        os.makedirs(os.path.join(out, "p"))
        for name in ("p/1.txt", "index.txt"):
            with open(os.path.join(out, name), "w") as fh:
                fh.write(name)
    s = Setup(tmp_path, Runner(action=pages))
    assert s.handle().kind is Kind.DONE
    assert sorted(k for _, k in s.s3.objects if k.startswith("output/")) == [
        "output/a.txt.out/index.txt", "output/a.txt.out/p/1.txt"]


def test_an_empty_output_directory_is_a_failure(tmp_path):
    outcome = Setup(tmp_path, Runner(action=lambda i, o: os.mkdir(o))).handle()
    assert (outcome.kind, outcome.reason) == (Kind.FAILED, "the command wrote no file in its output directory")


def test_a_stopped_command_is_cancelled(tmp_path):
    s = Setup(tmp_path, Runner(RunResult(False, reason="stopped by shutdown", cancelled=True)))
    assert s.handle().kind is Kind.CANCELLED


def test_a_job_cancelled_before_it_started_is_not_run(tmp_path):
    s = Setup(tmp_path)
    s.lease.cancel.set()
    assert s.handle().kind is Kind.CANCELLED and s.s3.calls == [] and s.runner.runs == []


def test_an_output_already_written_by_a_duplicate_for_the_same_input_is_a_duplicate(tmp_path):
    s = Setup(tmp_path)
    s.s3.add(BUCKET, "output/a.txt.out", b"HELLO", {"filejobs-input-etag": s.etag.strip('"')})
    outcome = s.handle()
    assert (outcome.kind, outcome.output) == (Kind.DUPLICATE, "output/a.txt.out")
    assert s.s3.ops() == ["GetObject", "PutObject", "HeadObject"]


def test_an_output_of_an_older_input_is_replaced_only_if_unchanged_meanwhile(tmp_path):
    s = Setup(tmp_path)
    old = s.s3.add(BUCKET, "output/a.txt.out", b"OLD", {"filejobs-input-etag": "older"})
    assert s.handle().kind is Kind.DONE
    assert s.output()["data"] == b"HELLO" and s.s3.calls[-1][1]["IfMatch"] == old


def test_a_redelivery_whose_output_exists_is_a_duplicate_without_downloading(tmp_path):
    s = Setup(tmp_path, attempt=2)
    s.s3.add(BUCKET, "output/a.txt.out", b"HELLO", {"filejobs-input-etag": s.etag.strip('"')})
    outcome = s.handle()
    assert (outcome.kind, outcome.reason) == (Kind.DUPLICATE, "output exists for this input version")
    assert s.s3.ops() == ["HeadObject"] and s.runner.runs == []


def test_a_redelivery_finds_a_directory_output_through_a_listing(tmp_path):
    s = Setup(tmp_path, attempt=2)
    s.s3.add(BUCKET, "output/a.txt.out/1.txt", b"x", {"filejobs-input-etag": s.etag.strip('"')})
    assert s.handle().kind is Kind.DUPLICATE
    assert s.s3.ops() == ["HeadObject", "ListObjectsV2", "HeadObject"]


def test_a_redelivery_without_an_output_runs_the_job(tmp_path):
    s = Setup(tmp_path, attempt=2)
    assert s.handle().kind is Kind.DONE and len(s.runner.runs) == 1


def test_an_unexpected_error_is_a_failure_not_a_crash(tmp_path):
    def explode(*_):
        raise OSError("disk full")
    s = Setup(tmp_path, Runner(action=explode))
    outcome = s.handle()
    assert outcome.kind is Kind.FAILED and "disk full" in outcome.reason
    assert s.p.log.of("error")[0]["during"] == "job"


def test_the_duration_runs_from_the_start_of_the_job(tmp_path):
    def slow(_, out):
        s.p.clock.now += 2.5
        open(out, "w").close()
    s = Setup(tmp_path, Runner(action=slow))
    assert s.handle().duration_s == 2.5


def test_folders_of_dead_workers_are_removed_but_not_those_of_live_ones(tmp_path):
    dead, live, other = tmp_path / "job-999999999-abc", tmp_path / f"job-{os.getppid()}-def", tmp_path / "notes"
    for d in (dead, live, other):
        d.mkdir()
    log = RecordingLog()
    remove_stale_job_dirs(str(tmp_path), log)
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])
    assert log.of("cleaned") == [{"folder": dead.name, "reason": "left by a worker that is no longer running"}]


# --------------------------------------------------------------------------- two versions of one input


def overwritten_meanwhile(s, data=b"new"):
    """What the job for the input's next version does while this job's command runs: the input is
    replaced and that newer job writes its output first."""
    def action(input_path, output_path):
        new = s.s3.add(BUCKET, "input/a.txt", data, version_id="v2")
        s.s3.add(BUCKET, "output/a.txt.out", data.upper(), {"filejobs-input-etag": new.strip('"')})
        with open(input_path, "rb") as src, open(output_path, "wb") as dst:
            dst.write(src.read().upper())
    return action


def test_an_older_versions_job_finishing_last_leaves_the_newer_output_alone(tmp_path):
    """The race: v1's job downloads, v2 lands and its job writes output/a.txt.out, then v1's job
    uploads. Before the fix it replaced v2's output with v1's."""
    runner = Runner(action=None)
    s = Setup(tmp_path, runner, data=b"old")
    runner.action = overwritten_meanwhile(s)
    outcome = s.handle()
    assert (outcome.kind, outcome.reason) == (Kind.STALE, "a newer version of the input replaced it; its output is kept")
    assert s.output()["data"] == b"NEW"
    assert s.s3.ops() == ["GetObject", "PutObject", "HeadObject", "HeadObject"]


def test_an_output_of_an_older_version_is_replaced_once_the_input_is_checked_current(tmp_path):
    s = Setup(tmp_path)
    old = s.s3.add(BUCKET, "output/a.txt.out", b"OLD", {"filejobs-input-etag": "older"})
    assert s.handle().kind is Kind.DONE
    heads = [p["Key"] for op, p in s.s3.calls if op == "HeadObject"]
    assert heads == ["output/a.txt.out", "input/a.txt"] and s.s3.calls[-1][1]["IfMatch"] == old


def test_an_output_replaced_between_the_check_and_the_write_is_looked_at_again(tmp_path):
    s = Setup(tmp_path, data=b"old")
    s.s3.add(BUCKET, "output/a.txt.out", b"OLDER", {"filejobs-input-etag": "older"})
    puts = []

    def newer_job_writes_first():
        puts.append(1)
        if len(puts) == 2:  # just before this job's If-Match write
            overwritten_meanwhile(s)(__file__, os.devnull)
    s.s3.on_put = newer_job_writes_first
    assert s.handle().kind is Kind.STALE and s.output()["data"] == b"NEW"


def test_an_output_that_keeps_changing_fails_the_job_for_a_retry(tmp_path):
    s = Setup(tmp_path)
    s.s3.add(BUCKET, "output/a.txt.out", b"X", {"filejobs-input-etag": "older"})
    rounds = []

    def someone_else_writes():
        rounds.append(1)
        s.s3.add(BUCKET, "output/a.txt.out", b"X%d" % len(rounds), {"filejobs-input-etag": "older"})
    s.s3.on_put = someone_else_writes
    outcome = s.handle()
    assert outcome.kind is Kind.FAILED and "kept changing while it was being replaced" in outcome.reason


@pytest.mark.parametrize("change", ["deleted", "another version"])
def test_an_input_deleted_or_versioned_away_does_not_replace_an_output(tmp_path, change):
    s = Setup(tmp_path, version_id="v1")
    s.s3.add(BUCKET, "output/a.txt.out", b"OTHER", {"filejobs-input-etag": "other"})

    def action(input_path, output_path):
        if change == "deleted":
            del s.s3.objects[(BUCKET, "input/a.txt")]
        else:
            s.s3.add(BUCKET, "input/a.txt", b"hello", version_id="v2")  # same bytes, same ETag
        open(output_path, "w").close()
    s.runner.action = action
    assert s.handle().kind is Kind.STALE and s.output()["data"] == b"OTHER"


def test_a_directory_output_stops_at_the_first_file_a_newer_version_owns(tmp_path):
    runner = Runner()
    s = Setup(tmp_path, runner, data=b"old")

    def pages(input_path, out):
        overwritten_meanwhile(s)(input_path, os.devnull)
        s.s3.add(BUCKET, "output/a.txt.out/1.txt", b"NEW", {"filejobs-input-etag": s.s3.objects[
            (BUCKET, "input/a.txt")]["ETag"].strip('"')})
        os.mkdir(out)
        for name in ("1.txt", "2.txt"):
            with open(os.path.join(out, name), "w") as fh:
                fh.write("old")
    runner.action = pages
    assert s.handle().kind is Kind.STALE
    assert (BUCKET, "output/a.txt.out/2.txt") not in s.s3.objects


def test_the_command_is_told_its_job(tmp_path):
    s = Setup(tmp_path, attempt=2)
    s.handle()
    ctx = s.runner.runs[0]["context"]
    assert (ctx.bucket, ctx.input_key, ctx.output_key, ctx.batch_id, ctx.attempt, ctx.message_id) == (
        BUCKET, "input/a.txt", "output/a.txt.out", "b1", 2, "m0")
