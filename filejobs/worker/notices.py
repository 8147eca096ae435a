"""What the worker does about the notices that end its EC2 instance (``ec2.NoticeWatcher``).

* A Spot interruption or an Auto Scaling termination drains the worker as SIGTERM does, but the
  drain ends 10 s before the notice's deadline at the latest (``rules.Supervisor.notice``):
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html
* Once drained, the termination lifecycle action is completed, so the group terminates the
  instance now instead of at the hook's timeout.
* A rebalance recommendation is only logged: Capacity Rebalance launches a replacement, then
  terminates this instance through the lifecycle hook, and that termination notice follows.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from .. import aws
from ..events import EventLog
from .rules import Supervisor


class Departure:
    def __init__(self, watcher, lifecycle, *, log: EventLog, clock: Callable[[], float],
                 wall_clock: Callable[[], float], wake: Callable[[], None]):
        """``watcher``: an ``ec2.NoticeWatcher`` (or None); ``lifecycle``: an ``ec2.LifecycleAction``
        (or None); ``wake``: tells the supervisor a notice came."""
        self.watcher, self.lifecycle, self.log = watcher, lifecycle, log
        self.clock, self.wall_clock, self.wake = clock, wall_clock, wake
        self._pending: queue.SimpleQueue = queue.SimpleQueue()

    def start(self, *, interval_s: float, stop: threading.Event) -> None:
        if self.watcher:
            self.watcher.watch(self._arrived, interval_s=interval_s, stop=stop, log=self.log)

    def _arrived(self, notice) -> None:  # the watcher's thread
        self._pending.put(notice)
        self.wake()

    def take(self, rule: Supervisor, *, running: int) -> bool:
        """Apply the notices that came to ``rule`` (the supervisor's thread); True once one drains."""
        drains = False
        while not self._pending.empty():
            notice = self._pending.get()
            if notice.deadline is None:
                self.log("notice", kind=notice.kind, detail=notice.detail,
                         action="none: if the group replaces this instance, a termination notice follows")
                continue
            now = self.clock()
            rule.notice(now, notice.kind, seconds_left=notice.deadline - self.wall_clock())
            self.log("stopping", mode="notice", kind=notice.kind, detail=notice.detail,
                     drain_s=round(max(0.0, rule.drain_until - now), 1), running=running)
            drains = True
        return drains

    def finish(self, rule: Supervisor) -> None:
        """After the drain of a termination notice: complete the lifecycle action."""
        if not (rule.noticed and self.lifecycle):
            return
        try:
            completed = self.lifecycle.complete()
        except Exception as exc:  # noqa: BLE001 - the group goes on at the hook's timeout anyway
            self.log("warning", reason=f"could not complete the lifecycle action: {aws.describe(exc)}")
            return
        self.log("lifecycle", completed=completed)  # False: no action was pending (no hook, Spot)
