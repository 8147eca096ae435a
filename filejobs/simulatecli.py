"""``jobctl simulate``: the click layer over ``filejobs.ops.simulate`` (no AWS call, no account needed)."""

from __future__ import annotations

import json

import click

from .deploycli import TemplateCommand, template_values


def _parsed(parse):
    def callback(ctx, param, value):
        if value is None or value == ():
            return value
        try:
            return tuple(parse(v) for v in value) if isinstance(value, tuple) else parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return callback


def _rate(value):
    from .ops.simulate import rate

    return rate(value)


def _notice(value):
    from .ops.simulate import spot_notice

    return spot_notice(value)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


def _simulated(specs):
    from .ops.simulate import SIMULATED

    return [s for s in specs if s.name in SIMULATED]


@click.command(cls=TemplateCommand, parameters=_simulated)
@click.option("--jobs", type=click.IntRange(min=1, max=1_000_000), default=None,
              help="How many jobs (with --job-seconds @FILE: drawn from the file's durations; default: one per line).")
@click.option("--job-seconds", "job_seconds", required=True, metavar="SECONDS|LOW..HIGH|@FILE",
              help="Each job's duration: a fixed value, a uniform range, or a file of durations (one per line).")
@click.option("--straggler", "stragglers", multiple=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="One more job of this length, sent first (repeatable).")
@click.option("--arrival", type=click.Choice(["burst", "rate"]), default=None,
              help="burst: every job sent at once [default]; rate: at --rate.")
@click.option("--rate", "rate_per_min", callback=_parsed(_rate), default=None, metavar="N/min",
              help="Send the jobs at a steady rate (200/min, 5/s, 3000/h).")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same run.")
@click.option("--instance-price", "price", type=click.FloatRange(min=0), default=None, metavar="USD/h",
              help="Price of one instance-hour, for the cost estimate (e.g. the Spot price of your types).")
@click.option("--boot-seconds", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="From launch to a polling worker (boot, dnf, the wheelhouse install).")
@click.option("--spot-rate", type=click.FloatRange(min=0, max=60), default=0.0, show_default=True,
              metavar="PER_HOUR", help="Spot interruptions per Spot instance-hour, drawn with the seed.")
@click.option("--spot-notice", "spot_notices", multiple=True, callback=_parsed(_notice), metavar="MINUTE:COUNT",
              help="COUNT Spot instances get a two-minute interruption notice at MINUTE (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="The figures, cost and minute-by-minute series as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="The minute-by-minute series as CSV.")
def simulate(jobs, job_seconds, stragglers, arrival, rate_per_min, seed, price, boot_seconds, spot_rate,
             spot_notices, as_json, as_csv, **parameters):
    """Replay the shipped template's scaling rules on a workload, minute by minute, before deploying.

    The template's own alarms and policies (1-minute metrics seen a minute late, evaluation periods,
    missing data, warm-up, partial scale-in) run a simulated fleet: boot, slots, scale-in protection
    while busy, the termination hook's drain, Spot notices. Prints the time to the first instance and
    to drain, peak instances, instance-minutes, an estimated cost, busy instances terminated (0 is
    the design) and a chart of jobs and instances.

    \b
    Examples:
      jobctl simulate --jobs 10000 --job-seconds 30
      jobctl simulate --jobs 5000 --job-seconds 20..90 --rate 200/min --max-size 20 --instance-price 0.04
      jobctl simulate --jobs 1000 --job-seconds 60 --straggler 3600 --max-size 50
      jobctl simulate --job-seconds @durations.txt --spot-notice 10:5 --csv > series.csv
    """
    from .ops import simulate as ops

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    if arrival == "burst" and rate_per_min is not None:
        raise click.UsageError("--arrival burst and --rate exclude each other")
    if arrival == "rate" and rate_per_min is None:
        raise click.UsageError("--arrival rate needs --rate")
    try:
        durations = ops.durations(job_seconds, jobs, seed=seed, read=_read)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--job-seconds") from None
    scenario = ops.Scenario(durations_s=tuple(stragglers) + tuple(durations),
                            described=ops.describe_durations(job_seconds, tuple(stragglers)),
                            rate_per_min=rate_per_min, parameters=template_values(parameters), seed=seed,
                            boot_s=boot_seconds, spot_rate_per_hour=spot_rate, spot_notices=spot_notices or (),
                            instance_price_usd_h=price)
    report = ops.run(scenario)
    if as_json:
        click.echo(json.dumps(ops.as_json(report), indent=2))
    elif as_csv:
        click.echo(ops.as_csv(report), nl=False)
    else:
        click.echo(ops.text(report), nl=False)
    return 0
