"""The CRT upload side of the pipeline, with a fake CRT: every outcome reaches the pipeline before
close() returns (an outcome arriving after it would be a file never sent), and the walker is held
back once ``concurrency`` requests run and as many wait."""

import os
import threading
from types import SimpleNamespace

from filejobs.send.crtuploads import CrtUploads
from filejobs.send.plan import UPLOAD, Step
from filejobs.send.walk import LocalFile
from filejobs.transfer import TransferConfig


class FakePipeline:
    def __init__(self, gate=None):
        self.stopping = False
        self.target = SimpleNamespace(bucket="b", input_prefix="in/", transfer=TransferConfig())
        self.dest = SimpleNamespace(s3=None)
        self.gate = gate
        self.entered = threading.Event()
        self.outcomes = []

    def finished(self, step, outcome):
        self.entered.set()
        if self.gate:
            self.gate.wait(10)
        self.outcomes.append((step.file.rel, outcome.etag, outcome.reason))


class FakePutter:
    """Answers each request from another thread, as the CRT's event loop does."""

    def __init__(self, answer_now=True):
        self.answer_now = answer_now
        self.held = []

    def put(self, path, bucket, key, *, size, on_done):
        if self.answer_now:
            threading.Thread(target=on_done, args=(f'"{key}"', None)).start()
        else:
            self.held.append((key, on_done))

    def close(self):
        pass


def step(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"data")
    st = os.stat(path)
    return Step(LocalFile(path=str(path), rel=name, size=st.st_size, mtime_ns=st.st_mtime_ns), UPLOAD)


def test_close_returns_only_once_every_outcome_reached_the_pipeline(tmp_path):
    gate = threading.Event()
    pipeline = FakePipeline(gate)
    uploads = CrtUploads(pipeline, FakePutter(), concurrency=2)
    assert uploads.put(step(tmp_path, "a.txt"))
    assert pipeline.entered.wait(10)
    closer = threading.Thread(target=uploads.close)
    closer.start()
    assert closer.is_alive()  # the outcome is still being reported: close must wait for it
    gate.set()
    closer.join(10)
    assert not closer.is_alive() and pipeline.outcomes == [("a.txt", '"in/a.txt"', None)]


def test_at_most_concurrency_requests_run_and_each_end_starts_the_next(tmp_path):
    putter = FakePutter(answer_now=False)
    pipeline = FakePipeline()
    uploads = CrtUploads(pipeline, putter, concurrency=2)
    for name in ("a", "b", "c", "d"):
        assert uploads.put(step(tmp_path, name))
    assert [key for key, _ in putter.held] == ["in/a", "in/b"]  # c and d wait
    putter.held[0][1]('"in/a"', None)
    assert [key for key, _ in putter.held] == ["in/a", "in/b", "in/c"]
    for _, done in list(putter.held[1:]):
        done('"x"', None)
    putter.held[-1][1]('"in/d"', None)
    uploads.close()
    assert sorted(rel for rel, _, _ in pipeline.outcomes) == ["a", "b", "c", "d"]
