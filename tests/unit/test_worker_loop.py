"""The worker's decisions as functions of state and time: shutdown stages (signals and EC2 termination
notices), long-poll wait, counters."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from filejobs.worker import FatalWorkerError, Stats, check_heartbeat
from filejobs.worker.rules import Decision, Supervisor, poll_wait_s, short_poll_pause_s


def decide(rule, now, *, held=0, poller_alive=True, finished=False, fatal=False):
    return rule.decide(now, held=held, poller_alive=poller_alive, finished=finished, fatal=fatal)


def test_without_a_signal_the_worker_runs_until_finished_and_idle():
    rule = Supervisor(grace_s=60)
    assert decide(rule, 0, held=2) is Decision.GO_ON
    assert decide(rule, 0, held=2, finished=True) is Decision.GO_ON  # --max-jobs reached: let them end
    assert decide(rule, 0, held=0, finished=True) is Decision.STOP


def test_the_first_stop_drains_running_jobs_for_the_grace_period_then_aborts():
    rule = Supervisor(grace_s=10)
    assert rule.request(100.0) == "drain"
    assert decide(rule, 109.9, held=1) is Decision.GO_ON
    assert decide(rule, 110.0, held=1) is Decision.ABORT


def test_a_drain_ends_cleanly_once_nothing_is_held_and_the_poller_has_returned():
    rule = Supervisor(grace_s=10)
    rule.request(100.0)
    assert decide(rule, 101, held=0, poller_alive=True) is Decision.GO_ON  # its long poll may still bring some
    assert decide(rule, 101, held=0, poller_alive=False) is Decision.STOP


def test_the_second_stop_aborts_at_once():
    rule = Supervisor(grace_s=60)
    rule.request(100.0)
    assert rule.request(100.5) == "abort"
    assert decide(rule, 100.5, held=1) is Decision.ABORT


def test_a_fatal_error_aborts():
    assert decide(Supervisor(grace_s=60), 0, held=3, fatal=True) is Decision.ABORT


def test_a_spot_notice_drains_until_ten_seconds_before_its_deadline_when_that_comes_first():
    rule = Supervisor(grace_s=120)
    rule.notice(100.0, "spot-interruption", seconds_left=120)  # the two-minute notice
    assert rule.drain_until == 210.0 and rule.hard_end == 220.0 and rule.noticed == "spot-interruption"
    assert decide(rule, 209.9, held=1) is Decision.GO_ON
    assert decide(rule, 210.0, held=1) is Decision.ABORT  # then stop what still runs and release it
    assert decide(rule, 150.0, held=0, poller_alive=False) is Decision.STOP  # all done before: a clean stop


def test_a_termination_notice_with_time_to_spare_drains_for_the_grace_period():
    rule = Supervisor(grace_s=30)
    rule.notice(100.0, "terminating", seconds_left=90)  # the lifecycle hook's timeout: grace + 60 s
    assert rule.drain_until == 130.0


def test_a_notice_shortens_a_drain_a_signal_began_but_never_lengthens_it():
    rule = Supervisor(grace_s=60)
    rule.request(100.0)
    rule.notice(101.0, "spot-interruption", seconds_left=30)
    assert rule.drain_until == 121.0
    rule.notice(102.0, "terminating", seconds_left=600)
    assert (rule.drain_until, rule.hard_end) == (121.0, 131.0)


def test_a_notice_whose_deadline_is_near_stops_the_jobs_at_once():
    rule = Supervisor(grace_s=60)
    rule.notice(100.0, "spot-interruption", seconds_left=4)
    assert decide(rule, 100.0, held=1) is Decision.ABORT


def test_a_signal_during_a_notice_drain_counts_as_the_first_a_second_one_aborts():
    rule = Supervisor(grace_s=60)
    rule.notice(100.0, "terminating", seconds_left=120)
    assert rule.request(101.0) == "drain" and decide(rule, 102.0, held=1) is Decision.GO_ON
    assert rule.request(103.0) == "abort" and decide(rule, 103.0, held=1) is Decision.ABORT


@pytest.mark.parametrize("hard_end, now, wait_s", [
    (None, 100.0, 15.0),  # a signal: stopped commands get 15 s
    (220.0, 210.0, 9.0),  # a notice: never past its deadline (1 s kept for the releases)
    (220.0, 219.5, 1.0),  # but at least a moment
])
def test_stopped_commands_get_their_time_but_never_past_a_notices_deadline(hard_end, now, wait_s):
    rule = Supervisor(grace_s=60, hard_end=hard_end)
    assert rule.abort_wait_s(now) == wait_s


@pytest.mark.parametrize("exit_when_idle_s, idle_s, wait_s", [
    (None, 1000, 20),  # no --exit-when-idle: always the full long poll
    (30, 0, 20),
    (30, 15, 15),  # the poll ends when the idle time is up...
    (30, 14.5, 16),  # ...rounded up to whole seconds
    (30, 40, 0),
])
def test_the_long_poll_never_waits_past_the_idle_deadline(exit_when_idle_s, idle_s, wait_s):
    assert poll_wait_s(wait_time_s=20, exit_when_idle_s=exit_when_idle_s, idle_s=idle_s) == wait_s


@pytest.mark.parametrize("exit_when_idle_s, held, idle_s, pause_s", [
    (None, 0, 1000, 0.2),  # an empty queue costs 5 requests a second, not a storm
    (30, 0, 0, 0.2),
    (30, 0, 29.9, pytest.approx(0.1)),  # not past the idle deadline
    (0.1, 2, 0, 0.1),  # jobs running: the deadline has not started, keep polling that often
])
def test_empty_short_polls_pause_without_overshooting_the_idle_deadline(exit_when_idle_s, held, idle_s, pause_s):
    assert short_poll_pause_s(exit_when_idle_s=exit_when_idle_s, held=held, idle_s=idle_s) == pause_s


def test_a_heartbeat_not_safely_below_the_visibility_timeout_is_refused():
    check_heartbeat(10, 30)
    check_heartbeat(15, 30)
    with pytest.raises(FatalWorkerError, match="not safely below"):
        check_heartbeat(20, 30)
    with pytest.raises(FatalWorkerError):
        check_heartbeat(0, 30)


def test_counters_added_from_many_threads_are_all_counted():
    """Job threads, the poller and the heartbeat all count. A tracer makes every thread yield
    after each bytecode of the counting code, the worst case of preemption: an unlocked
    ``stats.done += 1`` loses increments under it, on any Python version."""
    stats = Stats()

    def yield_often(frame, event, arg):
        if frame.f_code.co_name == "add" and frame.f_code.co_filename.endswith("config.py"):
            frame.f_trace_opcodes = True
            if event == "opcode":
                time.sleep(0)
            return yield_often
        return None

    def count():
        sys.settrace(yield_often)
        for _ in range(10):
            stats.add("done")
            stats.add("heartbeats", 2)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (stats.done, stats.heartbeats) == (40, 80)
    assert stats.as_dict() == {"received": 0, "done": 40, "skipped": 0, "failed": 0, "rejected": 0,
                               "released": 0, "heartbeats": 80}
