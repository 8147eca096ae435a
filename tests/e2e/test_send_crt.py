"""sendjobs uploading through the AWS CRT (--uploader crt), against a moto server over real HTTP
(the CRT's native client cannot reach mock_aws): the same objects, keys, ETags and jobs as the
botocore path, a checksum S3 verifies, one line per failure, and a stalled request cancelled."""

import json
import os
import socket
import threading

import pytest

from filejobs import aws, message
from filejobs.crt import CrtPutter
from filejobs.ops import resources
from filejobs.send import FatalSendError, SendConfig, Sender
from testing.helpers import REGION, drain_queue, list_keys, run_tool, unique, vanish_during_walk

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not __import__("filejobs.crt").crt.available(),
                                                  reason="the crt extra is not installed")]

NAMES = ["plain.txt", "with space.txt", "plus+sign.txt", "percent%41.txt", "hash#.txt", "question?.txt",
         "amp&eq=.txt", "tilde~.txt", "ünïcödé/ñ.txt", "quote'\".txt", "sub/dir/deep.txt", "empty"]


@pytest.fixture
def res(server):
    return resources.create_all(server.s3, server.sqs, bucket=unique("b"), queue=unique("q"), region=REGION,
                                settings=resources.QueueSettings(visibility_timeout_s=30, max_receive_count=3))


def tree(root, names, body=lambda name: name.encode()):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if name == "empty" else body(name))
    return root


def config(tmp_path, res, data, **kw):
    return SendConfig(directory=str(data), bucket=kw.pop("bucket", res.bucket), input_prefix="input/",
                      output_prefix="output/", queue=res.queue_url, state_dir=str(tmp_path / "state"),
                      uploader="crt", concurrency=8, **kw)


def test_every_file_goes_up_under_its_own_key_with_its_etag_and_a_verified_checksum(server, res, tmp_path):
    data = tree(tmp_path / "data", NAMES)
    sent = run_tool("sendjobs", "--uploader", "crt", "--json", data, res.bucket, "input/", "output/", res.queue_url,
                    REGION, env=server.env)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["files_sent"] == len(NAMES)
    assert sorted(list_keys(server.s3, res.bucket, "input/")) == sorted(f"input/{n}" for n in NAMES)
    jobs = {j.input_key: j for j in (message.decode(m["Body"]) for m in drain_queue(server.sqs, res.queue_url))}
    for name in NAMES:
        head = server.s3.head_object(Bucket=res.bucket, Key=f"input/{name}", ChecksumMode="ENABLED")
        body = server.s3.get_object(Bucket=res.bucket, Key=f"input/{name}")["Body"].read()
        assert body == (b"" if name == "empty" else name.encode())
        assert jobs[f"input/{name}"].etag == head["ETag"] and "ChecksumCRC32" in head


def test_files_above_the_in_memory_size_go_through_botocore_and_all_get_jobs(server, res, tmp_path):
    data = tree(tmp_path / "data", ["small.bin", "two-mib.bin"], body=lambda n: os.urandom(
        2 * 1024 * 1024 if n.startswith("two") else 100))
    summary = Sender(config(tmp_path, res, data), server).run()
    assert (summary.files_sent, summary.files_uploaded, summary.ok) == (2, 2, True)
    head = server.s3.head_object(Bucket=res.bucket, Key="input/two-mib.bin")
    assert head["ContentLength"] == 2 * 1024 * 1024


def test_a_missing_bucket_stops_the_run_with_one_line(server, res, tmp_path):
    data = tree(tmp_path / "data", [f"f{i}.txt" for i in range(10)])
    with pytest.raises(FatalSendError) as err:
        Sender(config(tmp_path, res, data, bucket="no-such-bucket-crt"), server).run()
    assert str(err.value) == "bucket no-such-bucket-crt does not exist"
    assert drain_queue(server.sqs, res.queue_url) == []


def test_a_file_that_vanished_is_named_once_and_gets_no_job(server, res, tmp_path, monkeypatch):
    data = tree(tmp_path / "data", ["a.txt", "gone.txt", "c.txt"])
    vanish_during_walk(monkeypatch, "gone.txt")
    summary = Sender(config(tmp_path, res, data), server).run()
    assert (summary.files_sent, summary.files_failed) == (2, 1)
    assert [(f.rel, f.reason.split(":")[0]) for f in summary.failures] == [("gone.txt", "cannot read")]
    assert sorted(j.input_key for j in (message.decode(m["Body"]) for m in drain_queue(
        server.sqs, res.queue_url))) == ["input/a.txt", "input/c.txt"]


def test_a_rerun_after_a_crt_run_sends_nothing_again(server, res, tmp_path):
    data = tree(tmp_path / "data", ["a.txt", "b.txt"])
    Sender(config(tmp_path, res, data), server).run()
    again = Sender(config(tmp_path, res, data), server).run()
    assert (again.files_sent, again.files_skipped) == (0, 2)


def test_a_request_the_endpoint_never_answers_is_cancelled_and_reported_as_a_timeout(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(silent.accept()) for _ in range(8)], daemon=True).start()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    clients = aws.make_clients(aws.Target(region=REGION, endpoint_url=url))
    (tmp_path / "f").write_bytes(b"x")
    putter = CrtPutter(clients, connections=2, stall_s=1.0)
    done = threading.Event()
    result = []
    putter.put(str(tmp_path / "f"), "bucket-x", "k", size=1, on_done=lambda etag, error: (result.append(
        (etag, error)), done.set()))
    assert done.wait(30)
    putter.close()
    silent.close()
    (etag, error), = result
    assert etag is None and aws.describe(error) == f"the endpoint did not answer in time ({url})"


def put_and_wait(putter, path, bucket, key, **kw):
    done, result = threading.Event(), []
    putter.put(str(path), bucket, key, size=os.path.getsize(path), on_done=lambda etag, error: (
        result.append((etag, error)), done.set()), **kw)
    assert done.wait(30)
    return result[0]


def test_create_only_writes_metadata_and_if_match_hold_through_the_crt(server, res, tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"first")
    putter = CrtPutter(server, connections=2)
    etag, error = put_and_wait(putter, path, res.bucket, "output/out.txt", if_none_match=True,
                               metadata={"source-etag": '"abc"'})
    assert error is None
    head = server.s3.head_object(Bucket=res.bucket, Key="output/out.txt")
    assert head["ETag"] == etag and head["Metadata"] == {"source-etag": '"abc"'}
    _, again = put_and_wait(putter, path, res.bucket, "output/out.txt", if_none_match=True)
    assert aws.is_precondition_failed(again)
    path.write_bytes(b"second")
    _, stale = put_and_wait(putter, path, res.bucket, "output/out.txt", if_match='"not-the-etag"')
    assert aws.is_precondition_failed(stale)
    new_etag, error = put_and_wait(putter, path, res.bucket, "output/out.txt", if_match=etag)
    assert error is None and server.s3.get_object(Bucket=res.bucket, Key="output/out.txt")["ETag"] == new_etag
    putter.close()


def test_the_checksum_sent_is_the_crc32_of_the_bytes_sent(tmp_path):
    import base64
    import zlib

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    seen = {}

    def answer_once():
        conn, _ = srv.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:])
        headers = {k.lower(): v for k, v in headers.items()}
        while len(body) < int(headers["content-length"]):
            body += conn.recv(65536)
        seen.update(headers=headers, body=body)
        conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "e"\r\nContent-Length: 0\r\n\r\n')

    threading.Thread(target=answer_once, daemon=True).start()
    clients = aws.make_clients(aws.Target(region=REGION, endpoint_url=f"http://127.0.0.1:{srv.getsockname()[1]}"))
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(5000))
    putter = CrtPutter(clients, connections=1)
    assert put_and_wait(putter, path, "bucket-x", "k") == ('"e"', None)
    putter.close()
    srv.close()
    assert seen["body"] == path.read_bytes()
    crc = base64.b64encode(zlib.crc32(seen["body"]).to_bytes(4, "big")).decode()
    assert seen["headers"]["x-amz-checksum-crc32"] == crc
    assert "x-amz-checksum-crc32" in seen["headers"]["authorization"]  # signed, so it cannot be altered on the way


def test_the_crt_retries_s3_errors_resets_and_lost_answers_itself(server, res, tmp_path):
    from testing.faultproxy import FaultProxy

    data = tree(tmp_path / "data", [f"f{i:02d}.txt" for i in range(20)])
    # 10 % of requests fail; the CRT cannot tell the proxy its attempt number, so any attempt may
    # fail: a file is lost only if all 6 of its attempts do (1e-6 per file).
    with FaultProxy(server.target.endpoint_url, rate=0.10, seed=3, timeout_delay_s=0.5) as proxy:
        clients = aws.make_clients(aws.Target(region=REGION, endpoint_url=proxy.url))
        summary = Sender(config(tmp_path, res, data), clients).run()
    assert (summary.files_sent, summary.files_failed) == (20, 0)
    assert proxy.faults_by_op["s3:PUT"] > 0
    assert sorted(list_keys(server.s3, res.bucket, "input/")) == [f"input/f{i:02d}.txt" for i in range(20)]
