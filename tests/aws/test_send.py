"""sendjobs' library on moto: uploading, enqueueing, resuming, the manifest, the request floor.

The walk, the plan and the journal on their own are in tests/unit/test_send_*.py."""

import json
import os

import pytest

from filejobs import message
from filejobs.records import JournalRow
from filejobs.send import FatalSendError, SendConfig, Sender
from filejobs.send.journal import Journal, journal_path
from filejobs.send.pipeline import SEND_ATTEMPTS
from filejobs.transfer import MiB, TransferConfig
from testing.helpers import drain_queue, list_keys, vanish_during_walk


def make_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


# --------------------------------------------------------------------------- the run


def config(tmp_path, res, directory, **kw):
    return SendConfig(directory=str(directory), bucket=res.bucket, input_prefix="input/", output_prefix="output/",
                      queue=res.queue_url, state_dir=str(tmp_path / "state"), concurrency=kw.pop("concurrency", 4), **kw)


def jobs_in(clients, res):
    return sorted((message.decode(m["Body"]) for m in drain_queue(clients.sqs, res.queue_url, max_rounds=50)),
                  key=lambda j: j.input_key)


def test_every_file_is_uploaded_and_gets_exactly_one_job(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "alpha", "sub/b c.txt": "beta", "empty": ""})
    summary = Sender(config(tmp_path, res, data), mocked).run()
    assert (summary.files_sent, summary.files_failed, summary.ok) == (3, 0, True)
    keys = list_keys(mocked.s3, res.bucket, "input/")
    assert sorted(keys) == ["input/a.txt", "input/empty", "input/sub/b c.txt"]
    jobs = jobs_in(mocked, res)
    assert [j.input_key for j in jobs] == ["input/a.txt", "input/empty", "input/sub/b c.txt"]
    for j in jobs:
        head = mocked.s3.head_object(Bucket=res.bucket, Key=j.input_key)
        assert (j.etag, j.size, j.batch_id, j.output_prefix) == (head["ETag"], head["ContentLength"],
                                                                summary.batch_id, "output/")


def test_the_batch_manifest_lists_files_keys_and_sizes(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "alpha", "sub/b.txt": "be"})
    summary = Sender(config(tmp_path, res, data), mocked).run()
    body = mocked.s3.get_object(Bucket=res.bucket, Key=summary.manifest_key)["Body"].read().decode()
    header, *lines = [json.loads(x) for x in body.splitlines()]
    assert summary.manifest_key == f"batches/{summary.batch_id}/manifest.jsonl"
    assert (header["files"], header["bytes"], header["complete"]) == (2, 7, True)
    assert [(x["key"], x["size"]) for x in lines] == [("input/a.txt", 5), ("input/sub/b.txt", 2)]


def test_a_rerun_sends_nothing_already_sent_and_picks_up_changes(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "alpha", "b.txt": "beta"})
    first = Sender(config(tmp_path, res, data), mocked).run()
    again = Sender(config(tmp_path, res, data), mocked).run()
    assert (again.files_sent, again.files_skipped, again.files_uploaded) == (0, 2, 0)
    (data / "b.txt").write_text("beta, edited")
    (data / "c.txt").write_text("new")
    third = Sender(config(tmp_path, res, data), mocked).run()
    assert (third.files_sent, third.files_skipped) == (2, 1)
    assert third.batch_id != first.batch_id
    assert [j.input_key for j in jobs_in(mocked, res)].count("input/a.txt") == 1


def test_force_resubmits_everything(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "alpha"})
    Sender(config(tmp_path, res, data), mocked).run()
    forced = Sender(config(tmp_path, res, data, force=True), mocked).run()
    assert (forced.files_sent, forced.files_uploaded) == (1, 1)


def test_files_uploaded_but_not_sent_are_sent_without_a_second_upload(tmp_path, mocked, make_resources):
    """What an interrupted run leaves: objects in S3, rows 'uploaded' in the journal, no message."""
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "alpha", "b.txt": "beta"})
    cfg = config(tmp_path, res, data)
    journal = Journal(journal_path(cfg.state_dir, cfg, res.queue_url))
    journal.set_meta("open_batch", "20260101T000000Z-abcdef")
    st = os.stat(data / "a.txt")
    put = mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"alpha")
    journal.record([JournalRow(rel="a.txt", size=st.st_size, mtime_ns=st.st_mtime_ns, etag=put["ETag"],
                               state="uploaded", batch_id="20260101T000000Z-abcdef")])
    journal.close()
    summary = Sender(cfg, mocked).run()
    assert summary.batch_id == "20260101T000000Z-abcdef"  # the interrupted batch is resumed
    assert (summary.files_sent, summary.files_uploaded) == (2, 1)  # only b.txt was uploaded


def test_a_vanished_file_is_reported_by_name_and_gets_no_job(tmp_path, mocked, make_resources, monkeypatch):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "alpha", "gone.txt": "soon"})
    vanish_during_walk(monkeypatch, "gone.txt")
    summary = Sender(config(tmp_path, res, data), mocked).run()
    assert (summary.files_sent, summary.files_failed, summary.ok) == (1, 1, False)
    assert summary.failures[0].rel == "gone.txt" and "cannot read" in summary.failures[0].reason
    assert [j.input_key for j in jobs_in(mocked, res)] == ["input/a.txt"]


def test_a_missing_bucket_stops_the_run_and_sends_nothing(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {f"f{i}.txt": "x" for i in range(20)})
    cfg = config(tmp_path, res, data)
    cfg = SendConfig(**{**cfg.__dict__, "bucket": "no-such-bucket-here"})
    with pytest.raises(FatalSendError, match="bucket no-such-bucket-here does not exist"):
        Sender(cfg, mocked).run()
    assert jobs_in(mocked, res) == []


def test_a_missing_queue_is_one_line_before_anything_is_uploaded(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "x"})
    cfg = SendConfig(**{**config(tmp_path, res, data).__dict__, "queue": "no-such-queue"})
    with pytest.raises(FatalSendError, match="queue no-such-queue does not exist"):
        Sender(cfg, mocked).run()
    assert list_keys(mocked.s3, res.bucket) == []


def test_large_files_go_up_in_parts_with_checksums(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"big.bin": os.urandom(11 * MiB)})
    cfg = config(tmp_path, res, data, transfer=TransferConfig(multipart_threshold=5 * MiB, part_size=5 * MiB))
    summary = Sender(cfg, mocked).run()
    assert summary.ok
    head = mocked.s3.head_object(Bucket=res.bucket, Key="input/big.bin")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == 11 * MiB
    assert jobs_in(mocked, res)[0].etag == head["ETag"]


def test_batches_respect_a_small_maximum_message_size(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    mocked.sqs.set_queue_attributes(QueueUrl=res.queue_url, Attributes={"MaximumMessageSize": "1024"})
    data = make_tree(tmp_path / "data", {f"file-{i:02d}.txt": "x" for i in range(25)})
    summary = Sender(config(tmp_path, res, data), mocked).run()
    assert (summary.files_sent, summary.files_failed) == (25, 0)
    assert len(jobs_in(mocked, res)) == 25


def test_requests_per_file_stay_near_one_put_and_a_tenth_of_a_batch(tmp_path, mocked, make_resources):
    from testing.recorder import CallRecorder
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {f"f{i:03d}": "x" for i in range(100)})
    recorder = CallRecorder()
    recorder.attach(mocked.s3)
    recorder.attach(mocked.sqs)
    # A linger longer than the run: on a loaded machine uploads can trickle slower than 1 s per batch,
    # and a batch that waited its linger goes out part full (right, but not what is counted here).
    Sender(config(tmp_path, res, data, concurrency=8, batch_max_linger_s=60), mocked).run()
    ops = recorder.by_operation
    assert ops["s3:PutObject"] == 101  # 100 files + the manifest
    assert ops["sqs:SendMessageBatch"] <= 12  # full batches but for the last one(s)
    assert recorder.total_calls() <= 100 * 1.1 + 4


def test_dry_run_lists_and_touches_nothing(tmp_path):
    data = make_tree(tmp_path / "data", {"a.txt": "alpha", "sub/b.txt": "b"})
    emitted = []
    cfg = SendConfig(directory=str(data), bucket="my-bucket", input_prefix="input/", output_prefix="output/",
                     queue="q", dry_run=True, state_dir=str(tmp_path / "state"))
    summary = Sender(cfg, clients=type("NoClients", (), {"s3": None, "sqs": None})(), emit=emitted.append).run()
    assert summary.files_sent == 2
    assert sorted(json.loads(e)["key"] for e in emitted) == ["input/a.txt", "input/sub/b.txt"]
    assert not (tmp_path / "state").exists()


def test_the_tools_own_state_folder_inside_the_directory_is_not_uploaded(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    make_tree(tmp_path, {"a.txt": "alpha"})
    summary = Sender(SendConfig(directory=str(tmp_path), bucket=res.bucket, input_prefix="input/",
                                output_prefix="output/", queue=res.queue_url, state_dir=str(tmp_path / ".state")),
                     mocked).run()
    assert (summary.files_sent, summary.files_failed) == (1, 0)
    assert list_keys(mocked.s3, res.bucket, "input/") == ["input/a.txt"]


# --------------------------------------------------------------------------- SendMessageBatch's partial failures


class PartlyFailingSqs:
    """moto's SQS, but SendMessageBatch fails the entries ``verdict(body, call)`` names: "refuse"
    (the sender's fault), "fail" (the server's: retried) or an exception to raise for the call."""

    def __init__(self, sqs, verdict):
        self.real = sqs
        self.verdict = verdict
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def send_message_batch(self, QueueUrl, Entries):
        self.calls += 1
        verdicts = {e["Id"]: self.verdict(e["MessageBody"], self.calls) for e in Entries}
        for v in verdicts.values():
            if isinstance(v, Exception):
                raise v
        passing = [e for e in Entries if verdicts[e["Id"]] is None]
        response = self.real.send_message_batch(QueueUrl=QueueUrl, Entries=passing) if passing else {}
        failed = [{"Id": i, "SenderFault": v == "refuse", "Code": "X",
                   "Message": "message body too odd" if v == "refuse" else "try again"}
                  for i, v in verdicts.items() if v is not None]
        return {"Successful": response.get("Successful", []), "Failed": failed}


def with_sqs(clients, sqs):
    return type(clients)(s3=clients.s3, sqs=sqs, session=clients.session, target=clients.target)


def test_a_message_sqs_refuses_fails_its_file_with_sqs_reason(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"good.txt": "g", "odd.txt": "o"})
    sqs = PartlyFailingSqs(mocked.sqs, lambda body, _: "refuse" if "input/odd.txt" in body else None)
    summary = Sender(config(tmp_path, res, data), with_sqs(mocked, sqs), sleep=lambda _: None).run()
    assert (summary.files_sent, summary.files_failed) == (1, 1)
    assert (summary.failures[0].rel, summary.failures[0].reason) == ("odd.txt",
                                                                     "SQS refused the message: message body too odd")
    assert [j.input_key for j in jobs_in(mocked, res)] == ["input/good.txt"]


def test_entries_sqs_fails_for_a_while_are_retried_and_sent_once(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {f"f{i}.txt": "x" for i in range(5)})
    tries = []  # f3's own attempts: how files are grouped into batches depends on timing

    def verdict(body, _call):
        if "input/f3.txt" not in body:  # not "f3": the batch id's hex token may hold it
            return None
        tries.append(body)
        return "fail" if len(tries) < 3 else None

    sqs = PartlyFailingSqs(mocked.sqs, verdict)
    slept = []
    summary = Sender(config(tmp_path, res, data), with_sqs(mocked, sqs), sleep=slept.append).run()
    assert (summary.files_sent, summary.files_failed) == (5, 0)
    assert len(slept) == 2 and [j.input_key for j in jobs_in(mocked, res)].count("input/f3.txt") == 1


def test_entries_sqs_keeps_failing_are_named_and_a_rerun_sends_only_them(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "a", "b.txt": "b"})
    sqs = PartlyFailingSqs(mocked.sqs, lambda body, _: "fail" if "input/b.txt" in body else None)
    slept = []
    first = Sender(config(tmp_path, res, data), with_sqs(mocked, sqs), sleep=slept.append).run()
    assert (first.files_sent, first.files_failed, len(slept)) == (1, 1, SEND_ATTEMPTS - 1)
    assert first.failures[0].reason == "SQS kept failing to accept the message; rerun to resend"
    rerun = Sender(config(tmp_path, res, data), mocked).run()
    assert (rerun.batch_id, rerun.files_sent, rerun.files_skipped, rerun.files_uploaded) == (first.batch_id, 1, 1, 0)
    assert [j.input_key for j in jobs_in(mocked, res)] == ["input/a.txt", "input/b.txt"]


def test_access_denied_on_send_stops_the_run_with_one_line(tmp_path, mocked, make_resources):
    from botocore.exceptions import ClientError

    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {f"f{i}.txt": "x" for i in range(30)})
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "SendMessageBatch")
    sqs = PartlyFailingSqs(mocked.sqs, lambda body, _: denied)
    with pytest.raises(FatalSendError, match="access denied for SendMessageBatch"):
        Sender(config(tmp_path, res, data, concurrency=1), with_sqs(mocked, sqs)).run()
    assert sqs.calls == 1 and jobs_in(mocked, res) == []
