"""A batch's status for people: the lines ``jobctl status`` and ``sendjobs --wait`` print (CLI glue)."""

from __future__ import annotations

import json
import sys

import click

from . import message
from .clitools import Fail
from .ops.status import BatchStatus, StatusError, batch_status, latest_batch, wait_for_batch


def progress_line(s: BatchStatus) -> str:
    pct = 100 * (s.done + s.failed) / s.total if s.total else 100
    parts = [f"batch {s.batch_id}", f"{s.done}/{s.total} done ({pct:.0f}%)", f"{s.failed} failed",
             f"{s.in_progress} in progress", f"{s.waiting} waiting"]
    if s.jobs_per_s:
        parts.append(f"{s.jobs_per_s:g} jobs/s")
    if s.eta_s is not None and not s.finished:
        parts.append(f"ETA {int(s.eta_s)}s")
    return "  ".join(parts)


def report_lines(s: BatchStatus, *, max_failures: int = 20) -> list[str]:
    lines = [progress_line(s)]
    q = []
    if s.queue_visible is not None:
        q.append(f"queue: {s.queue_visible} visible, {s.queue_in_flight} in flight")
    if s.dlq_visible is not None:
        q.append(f"dead-letter queue: {s.dlq_visible}")
    q.append("oldest message: " + (f"{s.oldest_age_s:.0f}s" if s.oldest_age_s is not None else "n/a"))
    lines.append("; ".join(q))
    if s.failures:
        shown = s.failures[:max_failures]
        lines.append(f"failed ({s.failed}):")
        for f in shown:
            tail = (f.get("stderr_tail") or "").strip().splitlines()
            detail = f" | {tail[-1]}" if tail else ""
            lines.append(f"  {message.printable(f['input_key'])}: {f.get('reason')} "
                         f"(attempts: {f.get('attempts')}){detail}")
        if s.failed > len(shown):
            lines.append(f"  … and {s.failed - len(shown)} more (--json for all counts)")
    return lines


def show_status(clients, *, bucket, batch_id, extension, batch_prefix="batches/", errors_prefix="errors/",
                wait=False, interval=5.0, timeout=None, as_json=False, quiet=False) -> int:
    """``jobctl status`` and ``sendjobs --wait``: print the status (waiting first, with ``wait``) and
    return the exit code: 1 when a job failed or the wait timed out."""
    kwargs = dict(bucket=bucket, ext=extension, batch_prefix=batch_prefix, errors_prefix=errors_prefix)
    tty = sys.stderr.isatty()

    def update(s):
        if not quiet:
            click.echo(("\r" + progress_line(s) + "   ") if tty else progress_line(s), err=True, nl=not tty)

    try:
        if wait:
            if batch_id is None:
                batch_id = latest_batch(clients.s3, bucket, batch_prefix)
            result = wait_for_batch(clients, batch_id=batch_id, interval_s=interval, timeout_s=timeout,
                                    on_update=update, **kwargs)
            if tty and not quiet:
                click.echo("", err=True)
        else:
            result = batch_status(clients, batch_id=batch_id, **kwargs)
    except StatusError as exc:
        raise Fail(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    if not quiet or result.failed:
        lines = report_lines(result)
        # While waiting, the progress line was just printed; don't repeat it.
        for line in (lines[1:] if wait and not tty and not quiet else lines):
            click.echo(line, err=True)
    if not wait:
        return 0
    if not result.finished:
        click.echo(f"timed out with {result.pending} jobs pending", err=True)
        return 1
    return 1 if result.failed else 0
