"""Replays of the template's scaling rules: from queue metrics (``simulate``) or from a workload run
by a simulated fleet of workers (``run``), minute by minute, with the rules of ``scaling.Rules``.

Pure (no boto3, no I/O, no real time); a seed makes a run repeatable. ``run`` models, per instance:
launch, boot (``Fleet.boot_s``), jobs taken by free slots as they become visible, scale-in
protection while busy (set ``protect_lag_s`` after a receive, cleared ``idle_grace_s`` after the
last job, as ``filejobs.ec2.InstanceProtector`` does), and, per group, what Auto Scaling does with a
new desired capacity: launch the missing instances, or terminate surplus *unprotected* ones. A
protected instance is never terminated by scale-in; if too few instances are unprotected, the desired
capacity is lowered anyway and the surplus goes once their protection is cleared.
https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html
A terminated instance with the template's termination lifecycle hook drains: it stops receiving,
lets its jobs run up to the grace period and releases the rest (visibility 0), then completes the
lifecycle action; without the hook its running jobs are cut and come back after the visibility
timeout. A Spot interruption gives two minutes' notice and drains the same way; the group replaces
the instance. Metrics are per minute (maximum over the minute), seen by the alarms
``metric_delay_min`` minutes after their minute ends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .scaling import Minute, Model, Rules

SPOT_NOTICE_S = 120  # https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html
DRAIN_MARGIN_S = 10  # a drain ends this long before a hard deadline, to release and complete in time


# --------------------------------------------------------------------------- replay of queue metrics


@dataclass(frozen=True)
class Sample:
    """One minute of metrics. ``capacity`` overrides the desired capacity that minute (None: the
    replay's own); ``None`` for a metric means no datapoint; ``desired_missing`` drops the group's
    desired-capacity datapoint that minute (group metrics are best effort)."""

    visible: float | None = 0
    in_flight: float | None = 0
    capacity: int | None = None
    dead_letters: float | None = 0
    oldest_age_s: float | None = 0
    desired_missing: bool = False


def simulate(model: Model, samples: Iterable[Sample], *, capacity: int = 0,
             warmup_s: int | None = None) -> list[Minute]:
    """Replay ``samples`` (one per minute) from ``capacity``; one ``Minute`` per sample. Instances
    the replay adds warm up for ``warmup_s`` (default: what the template's policies use)."""
    rules = Rules(model)
    warmup = rules.warmup_s() if warmup_s is None else warmup_s
    launches: list[tuple[int, int]] = []  # (minute, count)
    out = []
    for t, sample in enumerate(samples):
        if sample.capacity is not None:
            capacity = sample.capacity
        values = {"visible": sample.visible, "in_flight": sample.in_flight, "oldest_age_s": sample.oldest_age_s,
                  "dead_letters": sample.dead_letters, "desired": None if sample.desired_missing else capacity,
                  "in_service": capacity}
        warming = sum(n for at, n in launches if (t - at) * 60 < warmup)
        minute = rules.step(t, values, desired=capacity, warming=warming)
        if minute.capacity_after > capacity:
            launches.append((t, minute.capacity_after - capacity))
        capacity = minute.capacity_after
        out.append(minute)
    return out


# --------------------------------------------------------------------------- workload and fleet


@dataclass(frozen=True)
class Workload:
    """Jobs: their durations and when each is sent (all at once, or at a steady rate)."""

    durations_s: tuple[float, ...]
    rate_per_min: float | None = None  # None: a burst at t=0

    @classmethod
    def of(cls, jobs: int, seconds: float | tuple[float, float] | Sequence[float], *,
           rate_per_min: float | None = None, seed: int = 0) -> Workload:
        """``seconds``: one duration, a (low, high) range drawn uniformly, or one per job."""
        if isinstance(seconds, (int, float)):
            durations = [float(seconds)] * jobs
        elif isinstance(seconds, tuple) and len(seconds) == 2 and jobs != 2:
            rng = random.Random(seed)
            durations = [rng.uniform(*seconds) for _ in range(jobs)]
        else:
            durations = [float(s) for s in seconds]
            if len(durations) != jobs:
                raise ValueError(f"{len(durations)} durations for {jobs} jobs")
        return cls(tuple(durations), rate_per_min)

    def plus(self, *durations_s: float) -> Workload:
        """The same jobs and a few more sent first (a straggler, say)."""
        return Workload(tuple(durations_s) + self.durations_s, self.rate_per_min)

    def arrival_s(self, index: int) -> float:
        return 0.0 if not self.rate_per_min else index * 60.0 / self.rate_per_min


@dataclass(frozen=True)
class Fleet:
    """How instances and workers behave (seconds unless named otherwise)."""

    boot_s: float = 120.0  # launch to the worker polling: boot, dnf, wheelhouse install
    protect_lag_s: float = 0.5  # a receive to its SetInstanceProtection taking effect
    idle_grace_s: float = 10.0  # idle this long, the worker clears the protection
    notice_poll_s: float = 5.0  # the worker reads the metadata notices this often
    metric_delay_min: int = 1  # minutes after its end a minute's datapoint reaches the alarms
    missing_desired: frozenset = frozenset()  # minutes with no GroupDesiredCapacity datapoint
    spot_notices: tuple[tuple[float, int], ...] = ()  # (time, how many Spot instances) interrupted
    spot_rate_per_hour: float = 0.0  # interruptions per Spot instance-hour, drawn with the seed
    lifecycle_hook: bool | None = None  # None: whatever the template deploys
    seed: int = 0
    max_minutes: int = 24 * 60


@dataclass(frozen=True)
class Row:
    """One minute of a run: the datapoints it produced (maxima over the minute, as the alarms read
    them), the queue as the minute ended, and what the group did then."""

    minute: int
    visible: int
    in_flight: int
    desired: int
    instances: int
    busy: int
    in_alarm: tuple[str, ...]
    policy: str | None
    visible_end: int = 0
    in_flight_end: int = 0


@dataclass
class Result:
    jobs: int
    first_instance_s: float | None = None
    first_job_s: float | None = None
    drained_s: float | None = None  # the last job done
    empty_s: float | None = None  # back to zero instances after the last job
    peak_instances: int = 0
    instance_seconds: float = 0.0  # billed: per second, at least 60 s per instance
    jobs_done: int = 0
    jobs_failed: int = 0  # killed by the job timeout
    jobs_released: int = 0  # released by a drain (visibility 0), run again elsewhere
    jobs_cut: int = 0  # killed by a termination without drain; back after the visibility timeout
    # Instances scale-in chose while they ran a job started before that instant (one started at the
    # very instant is a tie the replay's whole-second times make common and AWS all but never has).
    # Only the lag between a receive and its protection (Fleet.protect_lag_s) allows one; the
    # termination hook then drains the instance, so nothing is cut.
    busy_terminated: int = 0
    interruptions: int = 0
    series: list[Row] = field(default_factory=list)

    @property
    def instance_minutes(self) -> float:
        return self.instance_seconds / 60

    @property
    def jobs_lost(self) -> int:
        return self.jobs - self.jobs_done - self.jobs_failed

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "series"}
        out.update(instance_minutes=round(self.instance_minutes, 1), jobs_lost=self.jobs_lost)
        return out


def run(model: Model, workload: Workload, fleet: Fleet = Fleet()) -> Result:
    """Run ``workload`` on the group ``model`` describes, until every job is done and the group is
    back to its minimum (or ``fleet.max_minutes``)."""
    from .fleet import FleetRun  # the engine imports this module's types

    return FleetRun(model, workload, fleet).run()


def scale_in_order(rng: random.Random, candidates: list) -> list:
    """Auto Scaling's default termination policy balances AZs, then prefers the oldest launch
    template, then the instance closest to its next billing hour: for one AZ-balanced group of one
    template that is effectively arbitrary, so the replay picks at random (seeded)."""
    order = list(candidates)
    rng.shuffle(order)
    return order
