"""The heartbeat, driven by a fake clock: who is extended, by how much, and who is credited."""

from __future__ import annotations

from filejobs.worker import Heartbeat
from filejobs.worker.config import MAX_VISIBILITY_S
from worker_fakes import QUEUE, FakeSQS, Parts, admit, body, client_error


def heartbeat(p: Parts, sqs: FakeSQS) -> Heartbeat:
    return Heartbeat(sqs, QUEUE.url, p.inflight, every_s=10, visibility_timeout_s=30, log=p.log, stats=p.stats,
                     sleep=lambda s: None)


def named(p: Parts, *keys):
    """Leases whose job names are ``keys`` (``handle`` sets the job once the body decodes)."""
    from filejobs import message
    leases = admit(p.inflight, *(body(k) for k in keys))
    for lease in leases:
        lease.job = message.decode(lease.body)
    return leases


def test_a_running_job_gets_the_full_visibility_timeout_again_once_per_interval():
    p, sqs = Parts(concurrency=2), FakeSQS()
    a, b = named(p, "input/a", "input/b")
    hb = heartbeat(p, sqs)
    hb.beat(p.clock() + 9)
    assert sqs.calls == []
    hb.beat(p.clock() + 10)
    (call,) = sqs.of("ChangeMessageVisibilityBatch")
    assert [(e["ReceiptHandle"], e["VisibilityTimeout"]) for e in call["Entries"]] == [("r0", 30), ("r1", 30)]
    assert p.stats.heartbeats == 2
    assert [(f["key"], f["visibility_s"], f["running_s"]) for f in p.log.of("heartbeat")] == [
        ("input/a", 30, 10.0), ("input/b", 30, 10.0)]
    hb.beat(p.clock() + 15)  # extended at +10: next due at +20
    assert len(sqs.of("ChangeMessageVisibilityBatch")) == 1


def test_extensions_go_out_ten_per_request():
    p, sqs = Parts(concurrency=12), FakeSQS()
    named(p, *(f"input/{i}" for i in range(12)))
    heartbeat(p, sqs).beat(p.clock() + 10)
    assert [len(c["Entries"]) for c in sqs.of("ChangeMessageVisibilityBatch")] == [10, 2]


def test_no_extension_reaches_past_sqs_twelve_hours_from_receipt():
    p, sqs = Parts(), FakeSQS()
    named(p, "input/long")
    heartbeat(p, sqs).beat(p.clock() + MAX_VISIBILITY_S - 12)
    (call,) = sqs.of("ChangeMessageVisibilityBatch")
    assert call["Entries"][0]["VisibilityTimeout"] == 12


def test_a_job_past_the_cap_is_skipped_and_the_others_are_credited_correctly():
    p, sqs = Parts(concurrency=2), FakeSQS()
    (old,) = named(p, "input/old")
    p.clock.now += 2 * 3600  # received two hours later
    (new,) = named(p, "input/new")
    heartbeat(p, sqs).beat(old.received_at + MAX_VISIBILITY_S)  # "old" reached the cap
    (call,) = sqs.of("ChangeMessageVisibilityBatch")
    assert [e["ReceiptHandle"] for e in call["Entries"]] == [new.receipt]
    # The extension is credited to the job that got it, not to the one skipped before it.
    assert [(f["key"], f["visibility_s"]) for f in p.log.of("heartbeat")] == [("input/new", 30)]
    assert p.stats.heartbeats == 1


def test_a_refused_extension_is_a_warning_and_not_counted():
    p, sqs = Parts(concurrency=2), FakeSQS()
    a, b = named(p, "input/a", "input/b")
    sqs.refuse = {a.receipt}
    heartbeat(p, sqs).beat(p.clock() + 10)
    assert [f["key"] for f in p.log.of("heartbeat")] == ["input/b"]
    assert "heartbeat refused" in p.log.of("warning")[0]["reason"] and p.log.of("warning")[0]["key"] == "input/a"
    assert p.stats.heartbeats == 1


def test_a_failed_request_is_a_warning_and_the_job_is_due_again_next_tick():
    p, sqs = Parts(), FakeSQS()
    named(p, "input/a")
    sqs.errors["ChangeMessageVisibilityBatch"] = client_error("InternalError")
    hb = heartbeat(p, sqs)
    hb.beat(p.clock() + 10)
    assert p.log.of("warning") and p.stats.heartbeats == 0
    del sqs.errors["ChangeMessageVisibilityBatch"]
    hb.beat(p.clock() + 11)
    assert p.stats.heartbeats == 1


def test_a_fatal_error_is_a_warning_too_the_poller_is_the_one_that_stops():
    p, sqs = Parts(), FakeSQS()
    named(p, "input/a")
    sqs.errors["ChangeMessageVisibilityBatch"] = client_error("AWS.SimpleQueueService.NonExistentQueue")
    heartbeat(p, sqs).beat(p.clock() + 10)
    assert p.log.of("warning")[0]["during"] == "heartbeat"
