"""sendjobs' library: walking, planning, uploading, enqueueing, resuming, the manifest."""

import json
import os
import socket

import pytest

from filejobs import message
from filejobs.send import sender as submit
from filejobs.send import SendConfig, Sender
from filejobs.send.walk import walk
from filejobs.transfer import MiB, TransferConfig
from testing.helpers import list_keys, drain_queue


def make_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def rels(files):
    return sorted(f.rel for f in files)


# --------------------------------------------------------------------------- walk


def test_the_walk_is_recursive_and_keys_use_forward_slashes(tmp_path):
    make_tree(tmp_path, {"a.txt": "1", "sub/b.txt": "2", "sub/deeper/c.txt": "3"})
    assert rels(walk(str(tmp_path))) == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]


def test_no_recursive_gives_the_original_flat_listing(tmp_path):
    make_tree(tmp_path, {"a.txt": "1", "sub/b.txt": "2"})
    assert rels(walk(str(tmp_path), recursive=False)) == ["a.txt"]


def test_include_and_exclude_globs_match_the_relative_path_or_the_name(tmp_path):
    make_tree(tmp_path, {"a.jpg": "", "b.txt": "", "tmp/c.jpg": "", "keep/d.jpg": ""})
    assert rels(walk(str(tmp_path), include=("*.jpg",), exclude=("tmp",))) == ["a.jpg", "keep/d.jpg"]
    assert rels(walk(str(tmp_path), exclude=("keep/*", "*.txt"))) == ["a.jpg", "tmp/c.jpg"]


def test_symlinks_are_skipped_with_a_warning_by_default(tmp_path):
    make_tree(tmp_path, {"real.txt": "x"})
    os.symlink(tmp_path / "real.txt", tmp_path / "link.txt")
    warnings = []
    assert rels(walk(str(tmp_path), warn=warnings.append)) == ["real.txt"]
    assert "skipped symlink 'link.txt'" in warnings[0]


def test_followed_symlinks_never_leave_the_directory(tmp_path):
    outside = make_tree(tmp_path / "outside", {"secret.txt": "s"})
    root = make_tree(tmp_path / "root", {"real.txt": "x", "dir/inner.txt": "y"})
    os.symlink(root / "real.txt", root / "inside-link.txt")
    os.symlink(outside / "secret.txt", root / "outside-link.txt")
    os.symlink(outside, root / "outside-dir")
    os.symlink(root, root / "dir" / "loop")
    warnings = []
    found = rels(walk(str(root), follow_symlinks=True, warn=warnings.append))
    assert found == ["dir/inner.txt", "inside-link.txt", "real.txt"]
    assert sum("points outside" in w for w in warnings) == 2
    assert any("link cycle" in w for w in warnings)


def test_sockets_and_fifos_are_skipped_with_a_warning(tmp_path):
    make_tree(tmp_path, {"ok.txt": "x"})
    os.mkfifo(tmp_path / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    warnings = []
    try:
        assert rels(walk(str(tmp_path), warn=warnings.append)) == ["ok.txt"]
    finally:
        sock.close()
    assert len(warnings) == 2 and all("not a regular file" in w for w in warnings)


def test_the_walk_is_lazy(tmp_path):
    make_tree(tmp_path, {f"d{i}/f.txt": "" for i in range(50)})
    it = walk(str(tmp_path))
    assert next(it).rel.endswith("/f.txt")  # a generator: nothing is listed up front


def test_names_that_cannot_be_s3_keys_are_reported():
    assert "UTF-8" in submit.key_problem("input/", "bad\udcff.txt")
    assert "1024" in submit.key_problem("input/", "x" * 1100)
    assert submit.key_problem("input/", "ok name $(x).txt") is None


# --------------------------------------------------------------------------- plan


def local(size=3, mtime=10):
    return submit.LocalFile(path="p", rel="r", size=size, mtime_ns=mtime)


@pytest.mark.parametrize("previous, force, action", [
    (None, False, submit.UPLOAD),
    ((3, 10, '"e"', "sent", "b"), False, submit.SKIP),
    ((3, 10, '"e"', "uploaded", "b"), False, submit.SEND_ONLY),
    ((4, 10, '"e"', "sent", "b"), False, submit.UPLOAD),
    ((3, 11, '"e"', "sent", "b"), False, submit.UPLOAD),
    ((3, 10, '"e"', "sent", "b"), True, submit.UPLOAD),
])
def test_the_plan_skips_only_files_already_sent_unchanged(previous, force, action):
    assert submit.plan(local(), previous, force=force) == action


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
    journal = submit.Journal(submit.journal_path(cfg.state_dir, cfg, res.queue_url))
    journal.set_meta("open_batch", "20260101T000000Z-abcdef")
    st = os.stat(data / "a.txt")
    put = mocked.s3.put_object(Bucket=res.bucket, Key="input/a.txt", Body=b"alpha")
    journal.record([("a.txt", st.st_size, st.st_mtime_ns, put["ETag"], "20260101T000000Z-abcdef")], "uploaded")
    journal.close()
    summary = Sender(cfg, mocked).run()
    assert summary.batch_id == "20260101T000000Z-abcdef"  # the interrupted batch is resumed
    assert (summary.files_sent, summary.files_uploaded) == (2, 1)  # only b.txt was uploaded


def test_a_vanished_file_is_reported_by_name_and_gets_no_job(tmp_path, mocked, make_resources, monkeypatch):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "alpha", "gone.txt": "soon"})
    real_walk = submit.walk

    def walk_then_delete(*args, **kw):
        for f in real_walk(*args, **kw):
            if f.rel == "gone.txt":
                os.unlink(f.path)
            yield f

    monkeypatch.setattr(submit, "walk", walk_then_delete)
    summary = Sender(config(tmp_path, res, data), mocked).run()
    assert (summary.files_sent, summary.files_failed, summary.ok) == (1, 1, False)
    assert summary.failures[0].rel == "gone.txt" and "cannot read" in summary.failures[0].reason
    assert [j.input_key for j in jobs_in(mocked, res)] == ["input/a.txt"]


def test_a_missing_bucket_stops_the_run_and_sends_nothing(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {f"f{i}.txt": "x" for i in range(20)})
    cfg = config(tmp_path, res, data)
    cfg = SendConfig(**{**cfg.__dict__, "bucket": "no-such-bucket-here"})
    with pytest.raises(submit.FatalSendError, match="bucket no-such-bucket-here does not exist"):
        Sender(cfg, mocked).run()
    assert jobs_in(mocked, res) == []


def test_a_missing_queue_is_one_line_before_anything_is_uploaded(tmp_path, mocked, make_resources):
    res = make_resources(mocked)
    data = make_tree(tmp_path / "data", {"a.txt": "x"})
    cfg = SendConfig(**{**config(tmp_path, res, data).__dict__, "queue": "no-such-queue"})
    with pytest.raises(submit.FatalSendError, match="queue no-such-queue does not exist"):
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
    Sender(config(tmp_path, res, data, concurrency=8), mocked).run()
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
