"""The worker's decisions as pure functions of what happened and when (no threads, no clock of
their own): when to stop, and how long a poll may wait. ``loop.Worker`` acts on them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: How often the supervisor looks at signals and progress.
SUPERVISE_EVERY_S = 0.05
#: Between two empty short polls (--wait-time 0).
SHORT_POLL_PAUSE_S = 0.2
#: After an abort, how long stopped commands get to end before their messages are released anyway.
ABORT_WAIT_S = 15.0
#: A notice's drain ends this long before the instance goes: stopped commands get SIGTERM, SIGKILL
#: 5 s later (runner.KILL_AFTER_S), and their messages are released while the instance still runs.
NOTICE_MARGIN_S = 10.0


class Decision(enum.Enum):
    GO_ON = "go on"
    STOP = "stop"  # nothing held any more: shut down cleanly
    ABORT = "abort"  # stop the commands, release their messages


@dataclass
class Supervisor:
    """The shutdown rule as a function of what happened and when (no threads, no clock of its own)."""

    grace_s: float
    requests: int = 0
    #: When running jobs are stopped and their messages released; None while not draining.
    drain_until: float | None = None
    #: A termination notice's deadline: the instance is gone then.
    hard_end: float | None = None
    #: The kind of termination notice that drains the worker, if one does.
    noticed: str | None = None

    def request(self, now: float) -> str:
        """One more SIGTERM/SIGINT: the first drains, any later one aborts."""
        self.requests += 1
        self._drain_until(now + self.grace_s)
        return "drain" if self.requests == 1 else "abort"

    def notice(self, now: float, kind: str, *, seconds_left: float) -> None:
        """A termination notice ``seconds_left`` before the instance goes: drain for the grace
        period, but stop NOTICE_MARGIN_S before that deadline at the latest."""
        self.noticed = kind
        self.hard_end = now + seconds_left if self.hard_end is None else min(self.hard_end, now + seconds_left)
        self._drain_until(min(now + self.grace_s, now + seconds_left - NOTICE_MARGIN_S))

    def _drain_until(self, until: float) -> None:
        self.drain_until = until if self.drain_until is None else min(self.drain_until, until)

    def abort_wait_s(self, now: float) -> float:
        """How long stopped commands get to end before their messages are released anyway: never
        past a notice's deadline."""
        if self.hard_end is None:
            return ABORT_WAIT_S
        return max(1.0, min(ABORT_WAIT_S, self.hard_end - now - 1.0))

    def decide(self, now: float, *, held: int, poller_alive: bool, finished: bool, fatal: bool) -> Decision:
        if fatal:
            return Decision.ABORT
        if self.drain_until is not None:
            if held == 0 and not poller_alive:
                return Decision.STOP
            if self.requests > 1 or now >= self.drain_until:
                return Decision.ABORT
            return Decision.GO_ON
        return Decision.STOP if finished and held == 0 else Decision.GO_ON


def poll_wait_s(*, wait_time_s: int, exit_when_idle_s: float | None, idle_s: float) -> int:
    """The long poll's wait: never past the moment ``--exit-when-idle`` would end the run."""
    if exit_when_idle_s is None:
        return wait_time_s
    return max(0, min(wait_time_s, int(exit_when_idle_s - idle_s + 0.999)))


def short_poll_pause_s(*, exit_when_idle_s: float | None, held: int, idle_s: float) -> float:
    """The pause between two empty short polls (``--wait-time 0``): a fifth of a second, or less
    so that a short ``--exit-when-idle`` is kept to."""
    if exit_when_idle_s is None:
        return SHORT_POLL_PAUSE_S
    if held:
        return min(SHORT_POLL_PAUSE_S, exit_when_idle_s)
    return max(0.0, min(SHORT_POLL_PAUSE_S, exit_when_idle_s - idle_s))
