"""``jobctl simulate``: how the shipped template's scaling rules will run a workload, before deploying.

The template's own alarms and policies (``scaling.load_model`` reads ``filejobs/infra/stack.yaml``,
the given parameters over its defaults) drive a simulated fleet minute by minute (``replay.run``:
1-minute metrics that reach the alarms a minute late, evaluation periods, missing data, warm-up,
scale-in protection, partial scale-in, the termination hook, Spot notices). This module turns a
workload description into that run and its result into figures, an estimated cost and a chart.

Pure: no boto3, no click, no I/O but reading a durations file through the ``read`` it is given.
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Callable

from . import chart, replay, scaling
from .replay import Fleet, Result, Workload

#: The template parameters that change what the replay does (a test checks that no other does).
SIMULATED = ("MaxSize", "SlotsPerInstance", "MessagesPerInstance", "QuietMinutes", "JobTimeout", "GraceSeconds",
             "VisibilityTimeout", "OnDemandBaseCapacity", "OnDemandPercentageAboveBase", "MaxMessageAgeSeconds")

# Requests per job as measured by the benchmarks (bench/README.md, "Results", runs of 2026-11-28):
# sendjobs 1.100 per file = 1 PutObject + 1/10 SendMessageBatch; getjobs 2.213 per job on moto
# (2.232 on fauxqs, start-up lookups included) = 1 GetObject + 1 PutObject + ReceiveMessage and
# DeleteMessageBatch for 10 jobs each (0.213 SQS requests per job).
SEND_S3_PUTS, SEND_SQS = 1.0, 0.1
WORK_S3_GETS, WORK_S3_PUTS, WORK_SQS = 1.0, 1.0, 0.213
# us-east-1 list prices, as setup.md section 4 cites them (read 2026-12-04): S3 PUT $0.005 and GET
# $0.0004 per 1,000 requests, SQS $0.40 per million (beyond the free tier).
PRICES_READ = "2026-12-04"
S3_PUT_USD, S3_GET_USD, SQS_USD = 0.005 / 1000, 0.0004 / 1000, 0.40 / 1_000_000

_RANGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\.\.\s*(\d+(?:\.\d+)?)\s*$")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|min|m|h|hour))?\s*$")
_PER_MINUTE = {None: 1.0, "s": 60.0, "sec": 60.0, "min": 1.0, "m": 1.0, "h": 1 / 60, "hour": 1 / 60}


@dataclass(frozen=True)
class Scenario:
    durations_s: tuple  # one per job, in sending order (stragglers first)
    described: str  # the job durations in words ("60 s", "20..90 s", "durations from FILE")
    rate_per_min: float | None = None  # None: all sent at once
    parameters: dict = field(default_factory=dict)  # template parameters over the defaults
    seed: int = 0
    boot_s: float = 120.0
    spot_rate_per_hour: float = 0.0
    spot_notices: tuple = ()  # (seconds, instances)
    instance_price_usd_h: float | None = None

    @property
    def jobs(self) -> int:
        return len(self.durations_s)


def describe_durations(spec: str, stragglers: tuple = ()) -> str:
    spec = spec.strip()
    words = f"durations from {spec[1:]}" if spec.startswith("@") else f"{spec} s"
    return words + "".join(f" + one of {s:g} s" for s in stragglers)


def durations(spec: str, jobs: int | None, *, seed: int = 0, read: Callable[[str], str] | None = None) -> list[float]:
    """Job durations from ``30``, ``20..90`` (uniform, seeded) or ``@FILE`` (one per line: the jobs
    themselves, or, with ``jobs``, a distribution drawn from). ValueError says what is wrong."""
    spec = spec.strip()
    if spec.startswith("@"):
        values = _read_durations(spec[1:], read)
        return values if jobs is None else random.Random(seed).choices(values, k=jobs)
    if jobs is None:
        raise ValueError("--jobs is needed unless --job-seconds is @FILE")
    m = _RANGE_RE.match(spec)
    if m:
        low, high = float(m.group(1)), float(m.group(2))
        if low > high:
            raise ValueError(f"{spec!r}: the range must go from low to high")
        rng = random.Random(seed)
        return [rng.uniform(low, high) for _ in range(jobs)]
    try:
        value = float(spec)
    except ValueError:
        raise ValueError(f"{spec!r} is not SECONDS, LOW..HIGH or @FILE") from None
    if value < 0 or not math.isfinite(value):
        raise ValueError(f"{spec!r}: a duration is a number of seconds >= 0")
    return [value] * jobs


def _read_durations(path: str, read) -> list[float]:
    text = read(path)
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            values.append(float(line))
        except ValueError:
            raise ValueError(f"{path}:{number}: {line!r} is not a number of seconds") from None
        if values[-1] < 0 or not math.isfinite(values[-1]):
            raise ValueError(f"{path}:{number}: a duration is a number of seconds >= 0")
    if not values:
        raise ValueError(f"{path}: no durations in it")
    return values


def rate(spec: str) -> float:
    """Jobs per minute from ``200/min``, ``5/s``, ``3000/h`` (a bare number is per minute)."""
    m = _RATE_RE.match(spec)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{spec!r} is not a rate such as 200/min, 5/s or 3000/h")
    return float(m.group(1)) * _PER_MINUTE[m.group(2)]


def spot_notice(spec: str) -> tuple[float, int]:
    """``MINUTE:COUNT``: that many Spot instances get a two-minute interruption notice then."""
    try:
        minute, count = spec.split(":")
        out = float(minute) * 60, int(count)
    except ValueError:
        raise ValueError(f"{spec!r} is not MINUTE:COUNT") from None
    if out[0] < 0 or out[1] < 1:
        raise ValueError(f"{spec!r}: MINUTE >= 0 and COUNT >= 1")
    return out


# --------------------------------------------------------------------------- the run


@dataclass
class Report:
    scenario: Scenario
    settings: dict  # the simulated parameters, defaults included
    result: Result
    cost: dict
    notified: dict = field(default_factory=dict)  # alarm that notifies (SNS) -> first minute in ALARM


def run(scenario: Scenario, template: dict | None = None) -> Report:
    template = model_template(template)
    model = scaling.load_model(template, scenario.parameters)
    workload = Workload(tuple(scenario.durations_s), scenario.rate_per_min)
    defaults = {k: str(v.get("Default", "")) for k, v in (template.get("Parameters") or {}).items()}
    settings = {k: str(scenario.parameters.get(k, defaults.get(k, ""))) for k in SIMULATED}
    fleet = Fleet(boot_s=scenario.boot_s, spot_rate_per_hour=scenario.spot_rate_per_hour,
                  spot_notices=tuple(scenario.spot_notices), seed=scenario.seed,
                  max_minutes=horizon_minutes(scenario, model))
    result = replay.run(model, workload, fleet)
    notifying = {name for name, alarm in model.alarms.items()
                 if alarm.actions and all(action in model.topics for action in alarm.actions)}
    notified: dict = {}
    for row in result.series:
        for name in notifying.intersection(row.in_alarm):
            notified.setdefault(name, row.minute)
    return Report(scenario, settings, result, cost(result, scenario.instance_price_usd_h), notified)


def horizon_minutes(scenario: Scenario, model) -> int:
    """When the replay stops whatever happens: a day, or twice what the work needs at full size."""
    slots = max(1, model.max_size * model.worker.slots)
    sending = 0 if not scenario.rate_per_min else scenario.jobs / scenario.rate_per_min
    work = sum(scenario.durations_s) / 60 / slots + max(scenario.durations_s, default=0) / 60
    return max(24 * 60, math.ceil(2 * (sending + work) + scenario.boot_s / 60 + 120))


def model_template(template: dict | None) -> dict:
    from .template import load_template

    return template if template is not None else load_template()


def cost(result: Result, price_usd_h: float | None) -> dict:
    """Instances at ``price_usd_h`` (per second, as EC2 bills Linux) and requests at the measured
    figures; a job run again after a release or a cut downloads its input again."""
    reruns = result.jobs_released + result.jobs_cut
    puts = result.jobs * (SEND_S3_PUTS + WORK_S3_PUTS)
    gets = result.jobs * WORK_S3_GETS + reruns
    sqs = result.jobs * (SEND_SQS + WORK_SQS) + reruns * 0.1
    requests_usd = puts * S3_PUT_USD + gets * S3_GET_USD + sqs * SQS_USD
    hours = result.instance_seconds / 3600
    instances_usd = None if price_usd_h is None else hours * price_usd_h
    return {"instance_hours": round(hours, 3), "instance_price_usd_h": price_usd_h,
            "instances_usd": None if instances_usd is None else round(instances_usd, 4),
            "s3_puts": round(puts), "s3_gets": round(gets), "sqs_requests": round(sqs),
            "requests_usd": round(requests_usd, 4),
            "total_usd": None if instances_usd is None else round(instances_usd + requests_usd, 4),
            "prices_read": PRICES_READ}


# --------------------------------------------------------------------------- what is printed


def _minutes(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds / 60:.1f} min"


def headline(report: Report, width: int = 80) -> list[str]:
    s, p = report.scenario, report.settings
    when = "all sent at once" if s.rate_per_min is None else f"sent at {s.rate_per_min:g}/min"
    spot = f"; Spot notices {', '.join(f'{n} at {t / 60:g} min' for t, n in s.spot_notices)}" if s.spot_notices else ""
    spot += f"; {s.spot_rate_per_hour:g} Spot interruptions per instance-hour" if s.spot_rate_per_hour else ""
    first = f"{s.jobs:,} jobs ({s.described}), {when}{spot}"
    second = (f"MaxSize {p['MaxSize']}, {p['SlotsPerInstance']} slots per instance, +1 instance per "
              f"{p['MessagesPerInstance']} waiting, {p['QuietMinutes']} quiet min")
    return textwrap.wrap(first, width) + textwrap.wrap(second, width)


def summary_lines(report: Report, width: int = 80) -> list[str]:
    r, c = report.result, report.cost
    pad = " " * 19
    if c["instances_usd"] is None:
        money = [f"${c['requests_usd']:.4f} in requests; instances: give --instance-price"]
    else:
        money = [f"${c['total_usd']:.2f}: {c['instance_hours']:.2f} instance-hours x ${c['instance_price_usd_h']:g}/h",
                 f"{pad}+ ${c['requests_usd']:.4f} in requests"]
    requests = (f"({c['s3_puts']:,} S3 PUT, {c['s3_gets']:,} GET, {c['sqs_requests']:,} SQS: the requests per job "
                f"measured in bench/README.md at us-east-1 list prices read {c['prices_read']})")
    return headline(report, width) + [
        "",
        f"first instance     {_minutes(r.first_instance_s)} after the first job was sent",
        f"first job started  {_minutes(r.first_job_s)}",
        f"drained            {_minutes(r.drained_s)} (the last job done)",
        f"back to 0          {_minutes(r.empty_s)}",
        f"peak instances     {r.peak_instances}",
        f"instance-minutes   {r.instance_minutes:,.1f}",
        f"busy terminated    {r.busy_terminated} (instances scale-in took while they ran a job)",
        "alarm notices      " + (", ".join(f"{a} from minute {m}" for a, m in sorted(report.notified.items()))
                                 or "none (dead letters, oldest job, boot failures)"),
        f"jobs               {r.jobs_done:,} done, {r.jobs_failed:,} over JobTimeout, "
        + (f"{r.jobs_lost:,} not done when the replay stopped" if r.empty_s is None and r.jobs_lost else
           f"{r.jobs_lost:,} lost"),
        f"                   {r.jobs_released:,} released by a drain, {r.jobs_cut:,} cut, "
        f"{r.interruptions} Spot interruptions",
        f"estimated cost     {money[0]}", *money[1:],
        *textwrap.wrap(requests, width, initial_indent=pad, subsequent_indent=pad),
    ]


def text(report: Report, width: int = 80) -> str:
    return "\n".join(summary_lines(report, width) + [""] + chart.render(report.result.series, width=width)) + "\n"


def as_json(report: Report) -> dict:
    r = report.result
    return {"scenario": {"jobs": report.scenario.jobs,
                         **{k: v for k, v in asdict(report.scenario).items() if k != "durations_s"}},
            "settings": report.settings, "result": r.as_dict(), "cost": report.cost, "notified": report.notified,
            "series": [asdict(row) for row in r.series]}


def as_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["minute", "visible", "in_flight", "desired", "instances", "busy", "in_alarm", "policy"])
    for row in report.result.series:
        writer.writerow([row.minute, row.visible, row.in_flight, row.desired, row.instances, row.busy,
                         " ".join(row.in_alarm), row.policy or ""])
    return out.getvalue()
