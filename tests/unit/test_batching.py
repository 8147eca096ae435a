"""One batcher and one partial-failure helper serve SendMessageBatch, DeleteMessageBatch and
ChangeMessageVisibilityBatch."""

from __future__ import annotations

import threading

import botocore.exceptions as bexc
import pytest

from filejobs.batching import Batcher, call_batch


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_batcher(items, **kw):
    flushed = []
    b = Batcher(flushed.append, **kw)
    t = threading.Thread(target=b.run)
    t.start()
    for i in items:
        b.put(i)
    b.close()
    t.join(5)
    return flushed


def test_full_batches_go_out_at_ten_entries():
    flushed = run_batcher(range(25), max_linger_s=60, more_coming=lambda: True)
    assert [len(b) for b in flushed] == [10, 10, 5]
    assert [i for b in flushed for i in b] == list(range(25))


def test_a_batch_never_exceeds_the_byte_limit_and_keeps_order():
    flushed = run_batcher(["aaaa", "bbbb", "cc", "dddd"], max_linger_s=60, more_coming=lambda: True,
                          max_bytes=8, size_of=len)
    assert flushed == [["aaaa", "bbbb"], ["cc", "dddd"]]


def test_a_partial_batch_goes_out_when_nothing_more_is_coming():
    flushed = []
    b = Batcher(flushed.append, max_linger_s=3600, more_coming=lambda: False, poll_s=0.001)
    t = threading.Thread(target=b.run)
    t.start()
    b.put(1)
    b.put(2)
    for _ in range(2000):
        if flushed:
            break
        threading.Event().wait(0.001)
    b.close()
    t.join(5)
    assert flushed[0] == [1, 2]


def test_a_partial_batch_waits_for_more_until_its_linger_ends():
    clock = FakeClock()
    flushed = []
    b = Batcher(flushed.append, max_linger_s=1.0, more_coming=lambda: True, clock=clock, poll_s=0.001)
    t = threading.Thread(target=b.run)
    t.start()
    b.put("x")
    threading.Event().wait(0.05)
    assert flushed == []  # more are coming and the linger has not ended
    clock.now = 1.5
    for _ in range(2000):
        if flushed:
            break
        threading.Event().wait(0.001)
    b.close()
    t.join(5)
    assert flushed == [["x"]]


class FakeBatchApi:
    """Answers scripted per call: a list of ids to fail per attempt (sender fault or not)."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def __call__(self, entries):
        self.calls.append([e["Id"] for e in entries])
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, Exception):
            raise step
        failed = [{"Id": e["Id"], "SenderFault": step[e["Payload"]], "Code": "X", "Message": f"no {e['Payload']}"}
                  for e in entries if e["Payload"] in step]
        ok = [{"Id": e["Id"]} for e in entries if e["Payload"] not in step]
        return {"Successful": ok, "Failed": failed}


def test_entries_failed_by_the_server_are_retried_and_sender_faults_are_not():
    api = FakeBatchApi([{"b": False, "c": True}, {}])
    sleeps = []
    seen = []
    out = call_batch(api, ["a", "b", "c"], lambda x: {"Payload": x}, sleep=sleeps.append, on_success=seen.append)
    assert out.succeeded == ["a", "b"]
    assert out.refused == [("c", "no c")]
    assert out.gave_up == []
    assert api.calls == [["0", "1", "2"], ["1"]]  # ids stay tied to their items across retries
    assert seen == [["a"], ["b"]] and sleeps == [0.2]


def test_a_retryable_error_of_the_whole_call_retries_every_entry_then_gives_up():
    err = bexc.EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    api = FakeBatchApi([err, err, err])
    out = call_batch(api, ["a", "b"], lambda x: {"Payload": x}, attempts=3, sleep=lambda s: None)
    assert out.succeeded == [] and [i for i, _ in out.gave_up] == ["a", "b"]
    assert "cannot reach the endpoint" in out.gave_up[0][1]
    assert len(api.calls) == 3


def test_a_fatal_error_is_raised_at_once():
    denied = bexc.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteMessageBatch")
    api = FakeBatchApi([denied])
    with pytest.raises(bexc.ClientError):
        call_batch(api, ["a"], lambda x: {"Payload": x}, sleep=lambda s: None)
    assert len(api.calls) == 1
