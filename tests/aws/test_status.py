"""Seeing and steering a batch on moto: status counts, failure reasons, wait, redrive, request cost.

The arithmetic behind a status (which output or failure record is whose) is in
tests/unit/test_status_arithmetic.py; the printed lines in tests/unit/test_status_view.py."""

import json

import pytest

from filejobs import cli as jobctl
from filejobs import message, statusview
from filejobs.ops import listing, redrive, status
from filejobs.records import ErrorRecord, ManifestEntry, ManifestHeader
from moto_jobs import failing_for, submit, work
from testing.recorder import CallRecorder
from testing.helpers import cli_runner


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
    result = cli_runner().invoke(jobctl.cli, ["status", "--wait", res.bucket], prog_name="jobctl")
    assert result.exit_code == 1
    assert "1/2 done" in result.stderr and "'input/bad.txt': exit code 4" in result.stderr

    res2 = make_resources(mocked)
    (tmp_path / "two").mkdir()
    submit(tmp_path / "two", mocked, res2, ["ok.txt"])
    work(tmp_path / "two", mocked, res2, ["cp"])
    ok = cli_runner().invoke(jobctl.cli, ["status", "--wait", "--json", res2.bucket], prog_name="jobctl")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["done"] == 1


def test_wait_gives_up_after_its_timeout_with_exit_124_and_a_last_status_line(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    sent = submit(tmp_path, mocked, res, ["never-processed", "done"])
    mocked.s3.put_object(Bucket=res.bucket, Key="output/done.out", Body=b"x")
    result = cli_runner().invoke(jobctl.cli, ["status", "--wait", "--interval", "0.1", "--timeout", "0.3", "--json",
                                             res.bucket], prog_name="jobctl")
    assert result.exit_code == 124
    assert result.stderr.splitlines()[-1] == (f"timed out after 0.3s: 1 of 2 jobs still pending (batch {sent.batch_id}, "
                                              f"1 done, 0 failed)")
    out = json.loads(result.stdout)
    assert (out["timed_out"], out["finished"], out["pending"]) == (True, False, 1)


def test_a_wait_polls_once_more_at_its_deadline_and_never_sleeps_past_it():
    polls, sleeps, now = [], [], [0.0]

    def poll():
        polls.append(now[0])
        return status.BatchStatus(batch_id="B", total=1, done=0, failed=0, in_progress=0, waiting=1)

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    result = status.wait_for(poll, interval_s=5, timeout_s=12, sleep=sleep, clock=lambda: now[0])
    assert not result.finished and polls == [0, 5, 10, 12] and sleeps == [5, 5, 2]


def test_sendjobs_wait_timeout_exits_124_with_a_last_status_line(tmp_path, mocked, make_resources):
    import sendjobs
    res = make_resources(mocked)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    result = cli_runner().invoke(sendjobs.cli, ["--wait", "--wait-interval", "0.1", "--timeout", "0.2", str(data),
                                               res.bucket, "input/", "output/", res.queue_url, "us-east-1"],
                                prog_name="sendjobs")
    assert result.exit_code == 124, result.stderr
    assert result.stderr.splitlines()[-1].startswith("timed out after 0.2s: 1 of 1 jobs still pending (batch ")


def test_timeout_without_wait_is_a_usage_error(tmp_path, mocked):
    import sendjobs
    status_run = cli_runner().invoke(jobctl.cli, ["status", "--timeout", "5", "b-bucket"], prog_name="jobctl")
    send_run = cli_runner().invoke(sendjobs.cli, ["--timeout", "5", str(tmp_path), "b-bucket", "in/", "out/", "q"],
                                  prog_name="sendjobs")
    assert (status_run.exit_code, send_run.exit_code) == (2, 2)
    assert "--timeout goes with --wait" in status_run.stderr and "--timeout goes with --wait" in send_run.stderr


@pytest.mark.parametrize("tool, args", [("sendjobs", []), ("jobctl", ["status"])])
def test_help_says_what_each_exit_status_means(tool, args):
    import sendjobs
    cli = sendjobs.cli if tool == "sendjobs" else jobctl.cli
    text = " ".join(cli_runner().invoke(cli, args + ["--help"], prog_name=tool).output.split())
    for code in ("0 every", "1 an error", "2 bad usage", "124 --", "130 interrupted"):
        assert code in text, code


def test_sendjobs_wait_follows_the_batch_it_sent(tmp_path, mocked, make_resources):
    import sendjobs
    res = make_resources(mocked)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    mocked.s3.put_object(Bucket=res.bucket, Key="output/a.txt.out", Body=b"already there")  # a fast worker
    result = cli_runner().invoke(sendjobs.cli, ["--wait", "--wait-interval", "0.1", str(data), res.bucket, "input/",
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
    result = cli_runner().invoke(jobctl.cli, ["redrive", "--dry-run", res.queue_url], prog_name="jobctl")
    assert result.exit_code == 0 and "1 messages in the dead-letter queue would be moved" in result.stderr


def seed_objects(bucket, keys, body=b""):
    """Put objects straight into mock_aws's S3: through botocore each costs ~4 ms (2,200 of them, 9 s);
    the code under test still reads them through botocore."""
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    backend = get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        backend.put_object(bucket, key, body)


def thousand_jobs_half_done(clients, res) -> str:
    """A 1,000-job batch with every other output written, beside 1,200 outputs of another batch."""
    batch = "20260101T000000Z-abcdef"
    header = ManifestHeader(batch_id=batch, bucket=res.bucket, input_prefix="input/", output_prefix="output/",
                            queue_url=res.queue_url, files=1000, bytes=1000)
    lines = [header.encode()] + [ManifestEntry(key=f"input/m/{i:04d}", size=1).encode() for i in range(1000)]
    clients.s3.put_object(Bucket=res.bucket, Key=message.manifest_key("batches/", batch), Body="\n".join(lines))
    seed_objects(res.bucket, [f"output/m/{i:04d}.out" for i in range(0, 1000, 2)])
    seed_objects(res.bucket, [f"output/a-other/{i:04d}.out" for i in range(1200)])
    return batch


def test_a_status_of_1000_jobs_costs_a_handful_of_requests(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    # Other batches' outputs outside this batch's key range are not listed: with the whole output
    # prefix the 1,700 keys would take two pages.
    batch = thousand_jobs_half_done(mocked, res)
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
    result = cli_runner().invoke(jobctl.cli, ["status", res.bucket, "20260101T000000Z-abcdef"], prog_name="jobctl")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"jobctl: error: batch 20260101T000000Z-abcdef has no manifest at "
                                     f"s3://{res.bucket}/batches/20260101T000000Z-abcdef/manifest.jsonl")
    mocked.s3.put_object(Bucket=res.bucket, Key="batches/x/manifest.jsonl", Body=b'{"v": 9}\n')
    broken = cli_runner().invoke(jobctl.cli, ["status", res.bucket, "x"], prog_name="jobctl")
    assert broken.exit_code == 1 and "cannot be read: manifest header has version 9" in broken.stderr


def test_a_partial_redrive_clears_only_the_failure_records_of_what_it_moved(tmp_path, mocked, make_resources):
    res = make_resources(mocked, max_receive_count=1)
    submit(tmp_path, mocked, res, ["x.txt", "y.txt", "z.txt"])
    work(tmp_path, mocked, res, ["false"])
    moved = redrive.redrive(mocked, queue=res.queue_url, errors_bucket=res.bucket, max_messages=1)
    assert (moved.moved, moved.errors_cleared) == (1, 1)
    assert status.batch_status(mocked, bucket=res.bucket).failed == 2


# --------------------------------------------------------------------------- stores that page differently

NON_ASCII = ["a.txt", "b c.txt", "ä.txt", "über.txt", "Ölfass.dat", "日本.txt", "datei-ü-18.dat"]


def on_localstack(clients, *, page_size=1000):
    """The same moto backend, listed the way LocalStack 2026.3.0 lists (testing/fakes3.py)."""
    from filejobs import aws
    from testing.fakes3 import PercentEncodedListing

    return aws.Clients(s3=PercentEncodedListing(clients.s3, page_size=page_size), sqs=clients.sqs,
                       session=clients.session, target=aws.Target(region="us-east-1",
                                                                  endpoint_url="http://127.0.0.1:4566"))


@pytest.mark.parametrize("page_size", [1000, 2])
def test_status_counts_every_finished_job_on_a_store_that_pages_like_localstack(tmp_path, mocked, make_resources,
                                                                                page_size):
    """Issue 15 item 3: LocalStack showed 3/7 done with all 7 outputs there."""
    res = make_resources(mocked)
    sent = submit(tmp_path, mocked, res, NON_ASCII)
    for name in NON_ASCII[1:]:
        mocked.s3.put_object(Bucket=res.bucket, Key=f"output/{name}.out", Body=b"x")
    mocked.s3.put_object(Bucket=res.bucket, Key=f"errors/{sent.batch_id}/a.txt.json", Body=ErrorRecord(
        input_key="input/a.txt", batch_id=sent.batch_id, attempts=2, reason="exit code 1").encode())
    clients = on_localstack(mocked, page_size=page_size)
    s = status.batch_status(clients, bucket=res.bucket)
    assert (s.total, s.done, s.failed) == (7, 6, 1) and s.finished
    assert not any("StartAfter" in r or "ContinuationToken" in r for r in clients.s3.requests), clients.s3.requests


def test_a_status_of_1000_jobs_costs_a_handful_of_requests_on_other_stores_too(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    batch = thousand_jobs_half_done(mocked, res)
    clients = on_localstack(mocked)
    s = status.batch_status(clients, bucket=res.bucket, batch_id=batch)
    assert (s.total, s.done, s.waiting) == (1000, 500, 500)
    assert len(clients.s3.requests) == 2 and s.requests <= 8


def test_a_missing_bucket_is_named(mocked):
    result = cli_runner().invoke(jobctl.cli, ["status", "no-such-bucket-x"], prog_name="jobctl")
    assert result.exit_code == 1
    assert result.stderr.strip() == "jobctl: error: bucket no-such-bucket-x does not exist"


# --------------------------------------------------------------------------- jobctl status --prefix (no batch)


def put(clients, bucket, key, body=b"x"):
    clients.s3.put_object(Bucket=bucket, Key=key, Body=body)


def record(input_key, batch_id=None, reason="exit code 3"):
    return ErrorRecord(input_key=input_key, batch_id=batch_id, attempts=2, reason=reason, exit_code=3).encode()


def arrivals(clients, res):
    """Files that arrived on their own, a batch sent from another prefix, and one from this prefix."""
    for key in ("input/a.txt", "input/sub/b.txt", "input/c.txt", "input/d.txt"):
        put(clients, res.bucket, key)
    put(clients, res.bucket, "input/folder/", b"")  # a console "folder": not a job
    put(clients, res.bucket, "output/a.txt.out")
    put(clients, res.bucket, "output/d.txt.out")
    put(clients, res.bucket, "errors/no-batch/sub/b.txt.json", record("input/sub/b.txt"))
    for batch, input_prefix, rel in (("20260101T000000Z-aaaaaa", "input/", "d.txt"),
                                     ("20260101T000000Z-bbbbbb", "other/", "c.txt")):
        header = ManifestHeader(batch_id=batch, bucket=res.bucket, input_prefix=input_prefix, output_prefix="output/")
        put(clients, res.bucket, message.manifest_key("batches/", batch), header.encode().encode() + b"\n")
        put(clients, res.bucket, f"errors/{batch}/{rel}.json", record(input_prefix + rel, batch))


def test_status_of_a_prefix_compares_inputs_outputs_and_failure_records(mocked, make_resources):
    res = make_resources(mocked)
    arrivals(mocked, res)
    # d.txt failed in a batch, then succeeded: its output wins. other/c.txt's record is not input/c.txt's.
    s = arrivals_status(mocked, res)
    assert (s.total, s.done, s.failed, s.pending, s.prefix, s.batch_id) == (4, 2, 1, 1, "input/", None)
    assert [f["input_key"] for f in s.failures] == ["input/sub/b.txt"] and s.failures[0]["reason"] == "exit code 3"
    # inputs, outputs, the errors prefix: one LIST each; the two batch headers: one ranged GET each; one reason.
    assert s.requests == 6, s.requests


def arrivals_status(clients, res, **kw):
    from filejobs.ops.arrivals import prefix_status

    return prefix_status(clients, bucket=res.bucket, input_prefix="input/", output_prefix="output/", ext=".out", **kw)


def test_a_waiting_prefix_status_reads_each_batch_header_once(mocked, make_resources):
    res = make_resources(mocked)
    arrivals(mocked, res)
    headers = {}
    first, second = arrivals_status(mocked, res, headers=headers), arrivals_status(mocked, res, headers=headers)
    assert headers == {"20260101T000000Z-aaaaaa": "input/", "20260101T000000Z-bbbbbb": "other/"}
    assert second.requests == first.requests - 2


def test_jobctl_status_prefix_prints_the_counts_and_the_failures(mocked, make_resources):
    res = make_resources(mocked)
    arrivals(mocked, res)
    result = cli_runner().invoke(jobctl.cli, ["status", res.bucket, "--prefix", "input/", "--output-prefix", "output/",
                                             "--queue", res.queue_url, "--json"], prog_name="jobctl")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("prefix 'input/'  2/4 done (75%)  1 failed  0 in progress  1 waiting\nqueue: 0")
    assert "'input/sub/b.txt': exit code 3 (attempts: 2)" in result.stderr
    assert json.loads(result.stdout)["queue_visible"] == 0


@pytest.mark.parametrize("args, why", [
    (["--prefix", "input/"], "--prefix needs --output-prefix"),
    (["--prefix", "input/", "--output-prefix", "output/", "20260101T000000Z-abcdef"], "and no BATCH_ID"),
    (["--output-prefix", "output/"], "--output-prefix and --queue go with --prefix"),
])
def test_a_prefix_status_needs_its_output_prefix_and_no_batch(args, why):
    result = cli_runner().invoke(jobctl.cli, ["status", "b-bucket", *args], prog_name="jobctl")
    assert result.exit_code == 2 and why in result.stderr


def test_a_prefix_status_says_when_a_store_may_have_paged_past_keys(mocked, make_resources):
    res = make_resources(mocked)
    for name in ("a.txt", "b.txt", "c.txt"):
        put(mocked, res.bucket, f"input/{name}")
        put(mocked, res.bucket, f"output/{name}.out")
    s = arrivals_status(on_localstack(mocked, page_size=2), res)
    assert s.done == 3 and s.warnings == [
        "over 1,000 keys under 'input/' were listed with continuation tokens, which this endpoint may not page as S3 "
        "does: counts may miss keys"]
    assert arrivals_status(on_localstack(mocked), res).warnings == []


def test_a_store_that_fails_to_page_is_one_line(mocked, make_resources):
    res = make_resources(mocked)
    for name in NON_ASCII:
        put(mocked, res.bucket, f"input/{name}")
    clients = on_localstack(mocked, page_size=2)  # the next key, "input/datei-ü-18.dat", is a token LocalStack cannot read
    with pytest.raises(listing.ListingError, match="the endpoint failed to list past the first 2 keys under 'input/' "
                                                   r"\(InternalError\): it does not page as S3 does"):
        arrivals_status(clients, res)
