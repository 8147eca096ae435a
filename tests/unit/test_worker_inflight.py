"""Leases and slots: what the poller may ask for, and the order of heartbeat and settle."""

from __future__ import annotations

import threading

import pytest

from filejobs.worker.inflight import slots_to_ask
from worker_fakes import Parts, admit, body


@pytest.mark.parametrize("in_slot, held, cap, lingered, want", [
    (0, 0, 10, False, 4),  # all slots free: ask for all of them at once
    (2, 2, 10, False, 0),  # half free: linger a moment for a fuller batch...
    (2, 2, 10, True, 2),  # ...then ask for what is free
    (4, 4, 10, True, 0),  # every slot runs a command
    (0, 8, 10, True, 0),  # commands done, but 8 uploads/deletes hold every job thread
    (0, 6, 10, True, 2),  # 2 job threads left: no more than 2, however many slots are free
    (0, 0, 3, False, 3),  # --max-jobs leaves 3 to take
])
def test_the_poller_asks_for_no_more_messages_than_free_slots(in_slot, held, cap, lingered, want):
    assert slots_to_ask(concurrency=4, in_slot=in_slot, held=held, cap=cap, lingered=lingered) == want


def test_a_slot_is_freed_when_the_command_exits_and_the_lease_is_held_until_settled():
    p = Parts(concurrency=1)
    (lease,) = admit(p.inflight, body())
    assert (p.inflight.free_slots(), p.inflight.held()) == (0, 1)
    p.inflight.free_slot(lease)
    p.inflight.free_slot(lease)  # once only
    assert (p.inflight.free_slots(), p.inflight.held()) == (1, 1)
    assert p.inflight.finish(lease) is True  # nothing held any more
    assert (p.inflight.free_slots(), p.inflight.held()) == (1, 0)


def test_idle_time_counts_from_the_last_message_that_came_or_went():
    p = Parts()
    (lease,) = admit(p.inflight, body())
    p.clock.now += 5
    assert p.inflight.idle_s(p.clock()) == 5
    p.inflight.finish(lease)
    p.clock.now += 2
    assert p.inflight.idle_s(p.clock()) == 2


def test_a_lease_is_due_for_a_heartbeat_once_per_interval_and_not_while_being_settled():
    p = Parts(concurrency=2)
    a, b = admit(p.inflight, body("input/a"), body("input/b"))
    assert p.inflight.due(p.clock() + 9, 10) == []
    due = p.inflight.due(p.clock() + 10, 10)
    assert due == [a, b]
    assert p.inflight.due(p.clock() + 10, 10) == []  # being beaten already
    p.inflight.beaten(due, extended=[a], now=p.clock() + 10)
    assert p.inflight.due(p.clock() + 10, 10) == [b]  # b's extension failed: due again
    assert p.inflight.claim_settle(a)
    assert p.inflight.due(p.clock() + 100, 10) == []  # a is being settled; b is being beaten


def test_a_lease_is_settled_once():
    p = Parts()
    (lease,) = admit(p.inflight, body())
    assert p.inflight.claim_settle(lease) is True
    assert p.inflight.claim_settle(lease) is False


def test_settling_waits_for_a_heartbeat_in_progress_so_a_release_is_never_undone():
    p = Parts()
    (lease,) = admit(p.inflight, body())
    beating = p.inflight.due(p.clock() + 10, 10)
    order = []
    t = threading.Thread(target=lambda: p.inflight.claim_settle(lease) and order.append("settling"))
    t.start()
    t.join(0.02)  # it waits (a beat in progress)...
    order.append("beaten")
    p.inflight.beaten(beating, extended=beating, now=p.clock() + 10)
    t.join(5)
    assert order == ["beaten", "settling"]  # ...until the beat is over


def test_cancel_all_reaches_every_held_lease_and_any_admitted_later():
    p = Parts(concurrency=2)
    leases = admit(p.inflight, body("input/a"), body("input/b"))
    p.inflight.cancel_all()
    leases += admit(p.inflight, body("input/c"))  # a long poll that returned after the abort
    assert all(lease.cancel.is_set() for lease in leases)


def test_the_waiting_poller_is_woken_once_a_full_set_of_slots_is_free_not_at_each_slot():
    p = Parts(concurrency=4)
    leases = admit(p.inflight, *[body(f"input/{i}") for i in range(4)])
    looked, asked = threading.Event(), []

    def stopping():  # called each time the poller looks again (under the lock, before it waits)
        looked.set()
        return False

    t = threading.Thread(target=lambda: asked.append(
        p.inflight.wait_for_slots(cap=10, linger_s=3600, stopping=stopping)), daemon=True)
    t.start()
    assert looked.wait(5)
    for lease in leases[:3]:
        looked.clear()
        p.inflight.free_slot(lease)
        assert not looked.wait(0.05), "woken for a slot while it waits for a full set"
    p.inflight.free_slot(leases[3])
    t.join(5)
    assert asked == [4]
