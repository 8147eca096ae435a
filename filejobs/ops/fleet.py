"""The event loop behind ``replay.run``: jobs, instances and the group, second by second between
the minute boundaries where CloudWatch evaluates the alarms and Auto Scaling acts.

Everything happens at event times (a job becomes visible, a slot frees, an instance is ready, a
notice arrives, a drain ends); the minute boundaries close the datapoints (maximum over the minute,
as the alarms read them with ``Stat: Maximum``), run ``scaling.Rules`` and reconcile the group. See
``replay`` for what is modelled and the AWS pages it follows.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque

from .replay import DRAIN_MARGIN_S, SPOT_NOTICE_S, Fleet, Result, Row, Workload, scale_in_order
from .scaling import Model, Rules


class _Instance:
    """One worker instance. ``leaving``: the group no longer counts it (terminating or interrupted);
    ``draining``: its worker has seen the notice and takes no more jobs."""

    def __init__(self, number: int, launched_s: float, ready_s: float, spot: bool):
        self.number, self.launched_s, self.ready_s, self.spot = number, launched_s, ready_s, spot
        self.running: dict[int, int] = {}  # slot -> job
        self.state = "booting"  # booting, ready, draining, gone
        self.leaving = False
        self.interrupted = False  # a Spot interruption: EC2 reclaims it at the deadline
        self.deadline = math.inf  # when it is terminated whatever the worker does
        self.protected_from = math.inf
        self.unprotect_at = -math.inf
        self.token = 0  # bumped when its jobs are taken away, so their finish events are ignored
        self.busy_since = math.inf  # when it last went from idle to running a job

    @property
    def active(self) -> bool:
        return self.state in ("booting", "ready") and not self.leaving

    def protected(self, t: float) -> bool:
        return t >= self.protected_from if self.running else t < self.unprotect_at


def _next_is_spot(active: list[_Instance], group) -> bool:
    """The group's InstancesDistribution: OnDemandBaseCapacity first, then the On-Demand percentage."""
    total = len(active) + 1
    need = min(total, group.on_demand_base) + math.ceil(
        max(0, total - group.on_demand_base) * group.on_demand_percent / 100)
    return sum(not i.spot for i in active) >= need


class FleetRun:
    def __init__(self, model: Model, workload: Workload, fleet: Fleet):
        if model.worker is None:
            raise ValueError("the template gives the workers no settings (no user data)")
        self.model, self.workload, self.fleet = model, workload, fleet
        self.rules = Rules(model)
        self.rng = random.Random(fleet.seed)
        self.hook = model.group.drain_timeout_s is not None if fleet.lifecycle_hook is None else fleet.lifecycle_hook
        self.drain_timeout_s = model.group.drain_timeout_s or model.worker.grace_s + 60
        self.warmup_s = self.rules.warmup_s()
        self.events: list = []
        self.seq = itertools.count()
        self.visible: deque[int] = deque()
        self.free: list[tuple[_Instance, int]] = []
        self.instances: list[_Instance] = []
        self.desired = model.min_size
        self.in_flight = 0
        self.remaining = len(workload.durations_s)
        self.peak = {"visible": 0, "in_flight": 0}
        self.minutes: list[dict] = []
        self.result = Result(jobs=len(workload.durations_s))

    # ------------------------------------------------------------------ the loop

    def _push(self, t: float, kind: str, *args) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, args))

    def run(self) -> Result:
        for job in range(len(self.workload.durations_s)):
            self._push(self.workload.arrival_s(job), "visible", job, False)
        for t, count in self.fleet.spot_notices:
            self._push(t, "spot", count)
        self._push(60.0, "minute", 1)
        t = 0.0
        while self.events:
            t, _, kind, args = heapq.heappop(self.events)
            if getattr(self, f"_on_{kind}")(t, *args) is False:
                break
        for inst in self.instances:
            if inst.state != "gone":
                self._bill(inst, t)
        return self.result

    def _note(self) -> None:
        self.peak["visible"] = max(self.peak["visible"], len(self.visible))
        self.peak["in_flight"] = max(self.peak["in_flight"], self.in_flight)

    # ------------------------------------------------------------------ jobs

    def _on_visible(self, t: float, job: int, was_cut: bool) -> None:
        if was_cut:
            self.in_flight -= 1
        self.visible.append(job)
        self._note()
        self._dispatch(t)

    def _dispatch(self, t: float) -> None:
        while self.visible and self.free:
            i = self.rng.randrange(len(self.free))  # any idle poller may get the message
            self.free[i], self.free[-1] = self.free[-1], self.free[i]
            inst, slot = self.free.pop()
            self._start(t, inst, slot, self.visible.popleft())

    def _start(self, t: float, inst: _Instance, slot: int, job: int) -> None:
        inst.busy_since = t if not inst.running else inst.busy_since
        if not inst.running and not inst.protected(t):
            inst.protected_from = t + self.fleet.protect_lag_s  # the worker protects itself once busy
        elif not inst.running:
            inst.protected_from = -math.inf  # still protected from its last job
        inst.running[slot] = job
        self.in_flight += 1
        self._note()
        if self.result.first_job_s is None:
            self.result.first_job_s = t
        duration, timeout = self.workload.durations_s[job], self.model.worker.job_timeout_s
        failed = timeout is not None and duration > timeout
        self._push(t + (timeout if failed else duration), "finish", inst, slot, job, inst.token, failed)

    def _on_finish(self, t: float, inst: _Instance, slot: int, job: int, token: int, failed: bool) -> None:
        if token != inst.token or inst.running.get(slot) != job:
            return  # released or cut meanwhile
        del inst.running[slot]
        self.in_flight -= 1
        self.remaining -= 1
        self.result.drained_s = t
        if failed:
            self.result.jobs_failed += 1
        else:
            self.result.jobs_done += 1
        if not inst.running:
            inst.unprotect_at = t + self.fleet.idle_grace_s
        if inst.state == "ready":
            self.free.append((inst, slot))
            self._dispatch(t)
        elif inst.state == "draining" and not inst.running:
            self._finish_drain(t, inst)

    def _take_jobs(self, inst: _Instance) -> list[int]:
        jobs = list(inst.running.values())
        inst.running.clear()
        inst.token += 1
        self.free = [(i, s) for i, s in self.free if i is not inst]
        return jobs

    # ------------------------------------------------------------------ instances

    def _launch(self, t: float) -> None:
        spot = _next_is_spot([i for i in self.instances if i.active], self.model.group)
        inst = _Instance(len(self.instances), t, t + self.fleet.boot_s, spot=spot)
        self.instances.append(inst)
        self._push(inst.ready_s, "ready", inst)
        if self.result.first_instance_s is None:
            self.result.first_instance_s = t
        live = sum(i.state != "gone" for i in self.instances)
        self.result.peak_instances = max(self.result.peak_instances, live)

    def _on_ready(self, t: float, inst: _Instance) -> None:
        if inst.state == "booting":
            inst.state = "ready"
            self.free.extend((inst, s) for s in range(self.model.worker.slots))
            self._dispatch(t)
        elif inst.state == "draining" and not inst.running:
            # Terminated while booting: the worker starts, reads the notice and completes at once.
            self._finish_drain(min(t + self.fleet.notice_poll_s, inst.deadline), inst)

    def _leave(self, t: float, inst: _Instance, deadline: float) -> None:
        """The group lets ``inst`` go: its worker sees the notice within a poll and drains."""
        inst.leaving = True
        inst.deadline = min(inst.deadline, deadline)
        self._push(t + self.fleet.notice_poll_s * self.rng.random(), "notice", inst)
        self._push(inst.deadline, "deadline", inst)

    def _on_notice(self, t: float, inst: _Instance) -> None:
        if inst.state in ("gone", "draining"):
            return
        booting = inst.state == "booting"
        inst.state = "draining"
        self.free = [(i, s) for i, s in self.free if i is not inst]
        if booting:
            return  # its worker is not running yet: _on_ready completes the drain
        if not inst.running:
            self._finish_drain(t, inst)
        else:
            end = min(t + self.model.worker.grace_s, inst.deadline - DRAIN_MARGIN_S)
            self._push(max(t, end), "drain_end", inst, inst.token)

    def _on_drain_end(self, t: float, inst: _Instance, token: int) -> None:
        if token != inst.token or inst.state != "draining":
            return
        for job in self._take_jobs(inst):  # jobs that could not finish in time: visibility 0
            self.result.jobs_released += 1
            self.in_flight -= 1
            self.visible.append(job)
        self._note()
        self._dispatch(t)
        self._finish_drain(t, inst)

    def _finish_drain(self, t: float, inst: _Instance) -> None:
        """The worker completes the lifecycle action (a Spot instance waits for EC2 to reclaim it)."""
        if inst.interrupted:
            return  # the deadline event terminates it
        self._terminate(t, inst)

    def _on_deadline(self, t: float, inst: _Instance) -> None:
        if inst.state != "gone" and t >= inst.deadline:
            self._terminate(t, inst)

    def _terminate(self, t: float, inst: _Instance) -> None:
        for job in self._take_jobs(inst):  # cut: the message comes back after its visibility timeout
            self.result.jobs_cut += 1
            self._push(t + self.model.worker.visibility_timeout_s, "visible", job, True)
        inst.state = "gone"
        self._bill(inst, t)
        if self.remaining == 0 and all(i.state == "gone" for i in self.instances):
            self.result.empty_s = t

    def _bill(self, inst: _Instance, t: float) -> None:
        self.result.instance_seconds += max(60.0, t - inst.launched_s)  # per second, 60 s minimum

    def _interrupt(self, t: float, inst: _Instance) -> None:
        self.result.interruptions += 1
        inst.interrupted = True
        self._leave(t, inst, t + SPOT_NOTICE_S)

    def _on_spot(self, t: float, count: int) -> None:
        spot = [i for i in self.instances if i.active and i.spot]
        for inst in self.rng.sample(spot, min(count, len(spot))):
            self._interrupt(t, inst)

    def _on_spot_one(self, t: float, inst: _Instance) -> None:
        if inst.active:
            self._interrupt(t, inst)

    # ------------------------------------------------------------------ the group, every minute

    def _on_minute(self, t: float, k: int) -> bool:
        self._close_minute(t)
        m = k - 1 - self.fleet.metric_delay_min
        values = dict(self.minutes[m]) if m >= 0 else {}
        if m in self.fleet.missing_desired:
            values["desired"] = None
        warming = sum(1 for i in self.instances if i.active and t - i.launched_s < self.warmup_s)
        step = self.rules.step(k, values, desired=self.desired, warming=warming)
        self.desired = step.capacity_after
        self._reconcile(t)
        now = self.minutes[-1]
        self.result.series.append(Row(minute=k - 1, visible=now["visible"], in_flight=now["in_flight"],
                                      desired=self.desired, instances=sum(i.state != "gone" for i in self.instances),
                                      busy=sum(bool(i.running) for i in self.instances), in_alarm=step.in_alarm,
                                      policy=step.chosen, visible_end=len(self.visible), in_flight_end=self.in_flight))
        if self.remaining == 0 and self.desired <= self.model.min_size and \
                all(i.state == "gone" for i in self.instances) or k >= self.fleet.max_minutes:
            return False
        self._spot_draws(t)
        self._push(t + 60.0, "minute", k + 1)
        return True

    def _close_minute(self, t: float) -> None:
        """The datapoints of the minute ending at ``t`` (maxima over the minute)."""
        head = self.visible[0] if self.visible else None
        self.minutes.append({
            "visible": self.peak["visible"], "in_flight": self.peak["in_flight"], "desired": self.desired,
            "in_service": sum(i.active for i in self.instances), "dead_letters": 0,
            "oldest_age_s": 0 if head is None else t - self.workload.arrival_s(head)})
        self.peak = {"visible": len(self.visible), "in_flight": self.in_flight}

    def _reconcile(self, t: float) -> None:
        active = [i for i in self.instances if i.active]
        for _ in range(self.desired - len(active)):
            self._launch(t)
        surplus = len(active) - self.desired
        if surplus <= 0:
            return
        # Scale-in never picks a protected instance; the rest waits for its protection to clear.
        for inst in scale_in_order(self.rng, [i for i in active if not i.protected(t)])[:surplus]:
            # Busy: a job started before this instant (a same-instant start is a tie: Result.busy_terminated).
            if inst.running and inst.busy_since < t:
                self.result.busy_terminated += 1
            if self.hook:
                self._leave(t, inst, t + self.drain_timeout_s)
            else:
                self._terminate(t, inst)

    def _spot_draws(self, t: float) -> None:
        rate = self.fleet.spot_rate_per_hour / 60
        if rate <= 0:
            return
        for inst in self.instances:
            if inst.active and inst.spot and self.rng.random() < rate:
                self._push(t + 60 * self.rng.random(), "spot_one", inst)
