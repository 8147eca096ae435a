"""Seeing and steering a batch on moto: status counts, failure reasons, wait, redrive, request cost.

The arithmetic behind a status (which output or failure record is whose) is in
tests/unit/test_status_arithmetic.py; the printed lines in tests/unit/test_status_view.py."""

import json

from click.testing import CliRunner

from filejobs import cli as jobctl
from filejobs import message, statusview
from filejobs.ops import redrive, status
from filejobs.records import ErrorRecord, ManifestEntry, ManifestHeader
from filejobs.runner import CommandRunner
from filejobs.send import SendConfig, Sender
from filejobs.worker import Worker, WorkerConfig
from testing.recorder import CallRecorder


def submit(tmp_path, clients, res, names):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for n in names:
        (data / n).write_text(f"content of {n}")
    return Sender(SendConfig(directory=str(data), bucket=res.bucket, input_prefix="input/", output_prefix="output/",
                             queue=res.queue_url, state_dir=str(tmp_path / "state")), clients).run()


def work(tmp_path, clients, res, argv):
    # Idle = an empty receive after the last job ended, so the failed jobs' last receive (which moves
    # them to the dead-letter queue) has happened; a short idle time is enough.
    cfg = WorkerConfig(work_dir=str(tmp_path / "work"), extension=".out", queue=res.queue_url, exit_when_idle_s=0.1,
                       wait_time_s=0, retry_base_s=0)
    return Worker(cfg, clients, CommandRunner(argv)).run()


def failing_for(name):
    return ["sh", "-c", f'case "$1" in *{name}) echo "cannot parse {name}" >&2; exit 4;; esac; cp "$1" "$2"', "sh"]


def test_status_counts_done_failed_in_progress_and_waiting(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    sent = submit(tmp_path, mocked, res, ["a", "b", "c", "d", "e"])
    mocked.s3.put_object(Bucket=res.bucket, Key="output/a.out", Body=b"A")
    mocked.s3.put_object(Bucket=res.bucket, Key="output/b.out/page-1.txt", Body=b"B")  # a directory output
    mocked.s3.put_object(Bucket=res.bucket, Key=f"errors/{sent.batch_id}/c.json", Body=ErrorRecord(
        input_key="input/c", batch_id=sent.batch_id, attempts=3, reason="exit code 4", exit_code=4).encode())
    mocked.sqs.receive_message(QueueUrl=res.queue_url, MaxNumberOfMessages=1)  # one job in flight
    s = status.batch_status(mocked, bucket=res.bucket, ext=".out")
    assert (s.batch_id, s.total, s.done, s.failed, s.in_progress, s.waiting) == (sent.batch_id, 5, 2, 1, 1, 1)
    assert s.failures == [{"input_key": "input/c", "reason": "exit code 4", "exit_code": 4, "attempts": 3,
                           "stderr_tail": ""}]
    assert not s.finished


def test_failure_reasons_come_from_the_worker(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    submit(tmp_path, mocked, res, ["good.txt", "bad.txt"])
    work(tmp_path, mocked, res, failing_for("bad.txt"))
    s = status.batch_status(mocked, bucket=res.bucket)
    assert (s.done, s.failed, s.finished) == (1, 1, True)
    (f,) = s.failures
    assert (f["input_key"], f["reason"], f["exit_code"], f["attempts"]) == ("input/bad.txt", "exit code 4", 4, 1)
    assert f["stderr_tail"] == "cannot parse bad.txt"
    assert "'input/bad.txt': exit code 4 (attempts: 1) | cannot parse bad.txt" in statusview.report_lines(s)[-1]


def test_wait_returns_once_every_job_is_done(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    sent = submit(tmp_path, mocked, res, ["a", "b"])
    polls = []

    def fake_sleep(_):  # between polls, the workers make progress
        mocked.s3.put_object(Bucket=res.bucket, Key=f"output/{'ab'[len(polls) - 1]}.out", Body=b"x")

    s = status.wait_for_batch(mocked, bucket=res.bucket, batch_id=sent.batch_id, on_update=polls.append,
                              sleep=fake_sleep)
    assert [p.done for p in polls] == [0, 1, 2] and s.finished


def test_status_wait_exits_0_on_success_and_1_with_the_failed_files(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    submit(tmp_path, mocked, res, ["ok.txt", "bad.txt"])
    work(tmp_path, mocked, res, failing_for("bad.txt"))
    result = CliRunner().invoke(jobctl.cli, ["status", "--wait", res.bucket], prog_name="jobctl")
    assert result.exit_code == 1
    assert "1/2 done" in result.stderr and "'input/bad.txt': exit code 4" in result.stderr

    res2 = make_resources(mocked)
    (tmp_path / "two").mkdir()
    submit(tmp_path / "two", mocked, res2, ["ok.txt"])
    work(tmp_path / "two", mocked, res2, ["cp"])
    ok = CliRunner().invoke(jobctl.cli, ["status", "--wait", "--json", res2.bucket], prog_name="jobctl")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["done"] == 1


def test_wait_gives_up_after_its_timeout(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    submit(tmp_path, mocked, res, ["never-processed"])
    result = CliRunner().invoke(jobctl.cli, ["status", "--wait", "--interval", "0.1", "--timeout", "0.3", res.bucket],
                                prog_name="jobctl")
    assert result.exit_code == 1 and "timed out with 1 jobs pending" in result.stderr


def test_sendjobs_wait_follows_the_batch_it_sent(tmp_path, mocked, make_resources):
    import sendjobs
    res = make_resources(mocked)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    mocked.s3.put_object(Bucket=res.bucket, Key="output/a.txt.out", Body=b"already there")  # a fast worker
    result = CliRunner().invoke(sendjobs.cli, ["--wait", "--wait-interval", "0.1", str(data), res.bucket, "input/",
                                               "output/", res.queue_url, "us-east-1"], prog_name="sendjobs")
    assert result.exit_code == 0, result.stderr
    assert "1/1 done (100%)" in result.stderr


def test_redrive_moves_failed_jobs_back_and_they_succeed_after_the_fix(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    submit(tmp_path, mocked, res, ["x.txt", "y.txt"])
    work(tmp_path, mocked, res, ["false"])  # the broken command: both fail and reach the DLQ
    assert status.batch_status(mocked, bucket=res.bucket).failed == 2
    dry = redrive.redrive(mocked, queue=res.queue_url, dry_run=True)
    assert (dry.available, dry.moved) == (2, 0)
    moved = redrive.redrive(mocked, queue=res.queue_url, errors_bucket=res.bucket)
    assert (moved.moved, moved.errors_cleared) == (2, 2)
    work(tmp_path, mocked, res, ["cp"])  # the fixed command
    s = status.batch_status(mocked, bucket=res.bucket)
    assert (s.done, s.failed, s.finished) == (2, 0, True)


def test_redrive_cli_reports_a_count(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    mocked.sqs.send_message(QueueUrl=res.dlq_url, MessageBody="{}")
    result = CliRunner().invoke(jobctl.cli, ["redrive", "--dry-run", res.queue_url], prog_name="jobctl")
    assert result.exit_code == 0 and "1 messages in the dead-letter queue would be moved" in result.stderr


def seed_objects(bucket, keys, body=b""):
    """Put objects straight into mock_aws's S3: through botocore each costs ~4 ms (2,200 of them, 9 s);
    the code under test still reads them through botocore."""
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    backend = get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(bucket, key, body)


def test_a_status_of_1000_jobs_costs_a_handful_of_requests(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    batch = "20260101T000000Z-abcdef"
    header = ManifestHeader(batch_id=batch, bucket=res.bucket, input_prefix="input/", output_prefix="output/",
                            queue_url=res.queue_url, files=1000, bytes=1000)
    lines = [header.encode()] + [ManifestEntry(key=f"input/m/{i:04d}", size=1).encode() for i in range(1000)]
    mocked.s3.put_object(Bucket=res.bucket, Key=message.manifest_key("batches/", batch), Body="\n".join(lines))
    seed_objects(res.bucket, [f"output/m/{i:04d}.out" for i in range(0, 1000, 2)])
    # Other batches' outputs outside this batch's key range are not listed: without StartAfter the
    # 1,700 keys would take two pages.
    seed_objects(res.bucket, [f"output/a-other/{i:04d}.out" for i in range(1200)])
    recorder = CallRecorder()
    recorder.attach(mocked.s3)
    recorder.attach(mocked.sqs)
    s = status.batch_status(mocked, bucket=res.bucket, batch_id=batch)
    assert (s.total, s.done, s.waiting) == (1000, 500, 500)
    s3_sqs = recorder.total_calls()
    assert s3_sqs <= 7, recorder.by_operation  # GET manifest, 1 LIST outputs, 1 LIST errors, 2 queue attributes
    assert recorder.by_operation["s3:ListObjectsV2"] == 2
    assert s.requests <= 8  # + CloudWatch for the oldest message's age


def test_an_unreadable_failure_record_still_counts_its_job_as_failed(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    sent = submit(tmp_path, mocked, res, ["a", "b"])
    mocked.s3.put_object(Bucket=res.bucket, Key=f"errors/{sent.batch_id}/a.json", Body=b"{truncated")
    s = status.batch_status(mocked, bucket=res.bucket)
    assert (s.done, s.failed, s.waiting) == (0, 1, 1)
    assert s.failures[0]["input_key"] == "input/a"
    assert s.failures[0]["reason"] == "failure record unreadable: failure record is not JSON (JSONDecodeError)"


def test_a_batch_without_a_manifest_or_with_a_broken_one_is_one_line(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    result = CliRunner().invoke(jobctl.cli, ["status", res.bucket, "20260101T000000Z-abcdef"], prog_name="jobctl")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"jobctl: error: batch 20260101T000000Z-abcdef has no manifest at "
                                     f"s3://{res.bucket}/batches/20260101T000000Z-abcdef/manifest.jsonl")
    mocked.s3.put_object(Bucket=res.bucket, Key="batches/x/manifest.jsonl", Body=b'{"v": 9}\n')
    broken = CliRunner().invoke(jobctl.cli, ["status", res.bucket, "x"], prog_name="jobctl")
    assert broken.exit_code == 1 and "cannot be read: manifest header has version 9" in broken.stderr


def test_a_partial_redrive_clears_only_the_failure_records_of_what_it_moved(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    submit(tmp_path, mocked, res, ["x.txt", "y.txt", "z.txt"])
    work(tmp_path, mocked, res, ["false"])
    moved = redrive.redrive(mocked, queue=res.queue_url, errors_bucket=res.bucket, max_messages=1)
    assert (moved.moved, moved.errors_cleared) == (1, 1)
    assert status.batch_status(mocked, bucket=res.bucket).failed == 2
