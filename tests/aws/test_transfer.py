"""transfer.py and the S3 client's request shape on moto: small files go up as one bytes body with
a Content-MD5 and no ``Expect: 100-continue``; a file that changed since it was listed is refused."""

import base64
import hashlib
import os

import pytest

from filejobs import aws
from filejobs.transfer import FileChanged, MiB, TransferConfig, put_file, read_small
from testing.helpers import REGION, unique


@pytest.fixture
def s3(mocked):
    """The tools' own S3 client (aws.make_clients), inside mock_aws, with a bucket."""
    clients = aws.make_clients(aws.Target(region=REGION))
    bucket = unique("b")
    clients.s3.create_bucket(Bucket=bucket)
    sent = []
    clients.s3.meta.events.register("before-send.s3", lambda request, **_: sent.append(request))
    return clients.s3, bucket, sent


def _text(value) -> str:
    """A header as sent: bytes from recent botocore, str from older ones (Python 3.9 gets those)."""
    return value.decode() if isinstance(value, bytes) else value


def test_a_small_file_is_one_put_with_its_md5_and_no_expect_continue(tmp_path, s3):
    client, bucket, sent = s3
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 4096)
    st = os.stat(path)
    result = put_file(client, str(path), bucket, "in/a.bin", size=st.st_size, mtime_ns=st.st_mtime_ns)
    assert result.etag == '"%s"' % hashlib.md5(b"x" * 4096).hexdigest()
    (request,) = sent
    assert _text(request.headers["Content-MD5"]) == base64.b64encode(hashlib.md5(b"x" * 4096).digest()).decode()
    assert "Expect" not in request.headers


def test_a_body_above_the_threshold_still_waits_for_100_continue(tmp_path, s3):
    client, bucket, sent = s3
    path = tmp_path / "big.bin"
    path.write_bytes(b"y" * (aws.EXPECT_CONTINUE_MIN_BYTES + 1))
    put_file(client, str(path), bucket, "in/big.bin", config=TransferConfig(in_memory_max=64 * MiB))
    assert _text(sent[0].headers["Expect"]) == "100-continue"


def test_a_file_that_changed_since_it_was_listed_is_not_uploaded(tmp_path, s3):
    client, bucket, sent = s3
    path = tmp_path / "a.txt"
    path.write_text("first")
    st = os.stat(path)
    path.write_text("second, longer")
    with pytest.raises(FileChanged):
        put_file(client, str(path), bucket, "in/a.txt", size=st.st_size, mtime_ns=st.st_mtime_ns)
    assert sent == []


def test_a_streamed_file_that_changed_during_its_upload_is_reported(tmp_path, s3, monkeypatch):
    client, bucket, _ = s3
    path = tmp_path / "mid.bin"
    path.write_bytes(b"z" * 2048)
    st = os.stat(path)
    real_put = client.put_object

    def put_then_touch(**kw):
        answer = real_put(**kw)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        return answer

    monkeypatch.setattr(client, "put_object", put_then_touch)
    with pytest.raises(FileChanged):
        put_file(client, str(path), bucket, "in/mid.bin", config=TransferConfig(in_memory_max=1024),
                 size=st.st_size, mtime_ns=st.st_mtime_ns)


def test_read_small_refuses_a_file_that_grew_or_shrank(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    assert read_small(str(path), size=5) == b"12345"
    with pytest.raises(FileChanged):
        read_small(str(path), size=4)
    with pytest.raises(FileChanged):
        read_small(str(path), size=6)
