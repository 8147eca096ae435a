"""Which requests of a job go through the AWS CRT, and what a CRT failure becomes."""

import pytest

from filejobs import aws
from filejobs.transfer import TransferConfig
from filejobs.worker.transfers import Transfers
from worker_fakes import FakeS3, client_error

BUCKET = "my-bucket"
MiB = 1024 * 1024


class FakePutter:
    """Answers each CRT request at once (as a CRT thread would, later) with what it is told."""

    def __init__(self, error=None, etag='"crt"', body=b"from the crt"):
        self.error, self.etag, self.body = error, etag, body
        self.calls = []
        self.closed = False

    def get(self, bucket, key, path, *, on_done, if_match=None):
        self.calls.append(("get", key, if_match))
        with open(path, "wb") as fh:  # the CRT writes what it received before it fails, too
            fh.write(self.body)
        on_done({"etag": self.etag, "content-length": str(len(self.body))} if not self.error else {}, self.error)

    def put(self, path, bucket, key, *, size, on_done, metadata=None, if_none_match=False, if_match=None):
        self.calls.append(("put", key, metadata, if_none_match, if_match))
        on_done(None if self.error else self.etag, self.error)

    def close(self):
        self.closed = True


def setup(putter=None, **kw):
    s3 = FakeS3()
    s3.add(BUCKET, "input/a.txt", b"hello")
    return s3, Transfers(s3, config=TransferConfig(), putter=putter, **kw)


def test_small_sized_inputs_and_small_outputs_go_through_the_crt(tmp_path):
    putter = FakePutter()
    s3, t = setup(putter)
    head = t.get(BUCKET, "input/a.txt", str(tmp_path / "in"), if_match='"e"', size=12)
    assert head == {"ETag": '"crt"', "ContentLength": 12, "VersionId": None}
    assert (tmp_path / "in").read_bytes() == b"from the crt"
    (tmp_path / "out").write_bytes(b"x" * 10)
    assert t.put(str(tmp_path / "out"), BUCKET, "output/a", metadata={"m": "1"}, if_none_match=True) == '"crt"'
    assert putter.calls == [("get", "input/a.txt", '"e"'), ("put", "output/a", {"m": "1"}, True, None)]
    assert s3.ops() == []
    t.close()
    assert putter.closed


def test_large_or_unsized_inputs_large_outputs_and_other_buckets_go_through_botocore(tmp_path):
    putter = FakePutter()
    s3, t = setup(putter)
    t.get(BUCKET, "input/a.txt", str(tmp_path / "a"), size=None)
    t.get(BUCKET, "input/a.txt", str(tmp_path / "b"), size=MiB + 1)
    (tmp_path / "big").write_bytes(b"x" * (MiB + 1))
    t.put(str(tmp_path / "big"), BUCKET, "output/big", metadata={})
    assert putter.calls == [] and s3.ops() == ["GetObject", "GetObject", "PutObject"]


@pytest.mark.parametrize("code,predicate", [("PreconditionFailed", aws.is_precondition_failed),
                                            ("NoSuchKey", aws.is_not_found), ("AccessDenied", aws.is_denied)])
def test_a_crt_get_that_fails_raises_what_botocore_would_and_leaves_no_file(tmp_path, code, predicate):
    _, t = setup(FakePutter(error=client_error(code, "GetObject")))
    with pytest.raises(Exception) as caught:
        t.get(BUCKET, "input/a.txt", str(tmp_path / "in"), size=5)
    assert predicate(caught.value)
    assert not (tmp_path / "in").exists()


def test_a_short_crt_download_is_an_error_and_leaves_no_file(tmp_path):
    class Short(FakePutter):
        def get(self, bucket, key, path, *, on_done, if_match=None):
            (tmp_path / "in").write_bytes(b"par")
            on_done({"etag": '"e"', "content-length": "5"}, None)

    _, t = setup(Short())
    with pytest.raises(IOError, match="short read: got 3 of 5 bytes"):
        t.get(BUCKET, "input/a.txt", str(tmp_path / "in"), size=5)
    assert not (tmp_path / "in").exists()


def test_a_redirect_sends_that_request_and_every_later_one_through_botocore(tmp_path):
    putter = FakePutter(error=client_error("PermanentRedirect", "PutObject"))
    s3, t = setup(putter)
    (tmp_path / "out").write_bytes(b"x")
    t.put(str(tmp_path / "out"), BUCKET, "output/a", metadata={}, if_none_match=True)
    t.get(BUCKET, "input/a.txt", str(tmp_path / "in"), size=5)
    assert len(putter.calls) == 1 and s3.ops() == ["PutObject", "GetObject"]
    assert (tmp_path / "in").read_bytes() == b"hello"
