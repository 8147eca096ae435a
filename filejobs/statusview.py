"""A batch's status for people: the lines ``jobctl status`` and ``sendjobs --wait`` print, and the
exit status of a wait (CLI glue)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import click

from . import aws, message
from .clitools import Fail
from .ops.arrivals import prefix_status
from .ops.listing import ListingError
from .ops.status import BatchStatus, StatusError, batch_status, latest_batch, wait_for

#: Exit statuses of a wait (``sendjobs --wait``, ``jobctl status --wait``). 124 is what GNU
#: ``timeout`` returns when time ran out, so scripts can tell "not finished yet" from "failed".
EXIT_DONE, EXIT_FAILED, EXIT_TIMED_OUT = 0, 1, 124

WAIT_EXIT_HELP = """\b
Exit status with --wait:
  0    every job is done
  1    an error (one line on stderr), or at least one job failed (listed with its reason)
  2    bad usage
  124  --timeout passed with jobs still pending (the last line says how many)
  130  interrupted (Ctrl-C)"""


@dataclass(frozen=True)
class StatusQuery:
    """What to look at: one batch (by id, default the latest), or with ``input_prefix`` every
    file under that prefix (then ``output_prefix`` is needed, and ``queue`` is optional)."""

    bucket: str
    batch_id: str | None = None
    extension: str = ".out"
    batch_prefix: str = "batches/"
    errors_prefix: str = "errors/"
    input_prefix: str | None = None
    output_prefix: str | None = None
    queue: str | None = None


def progress_line(s: BatchStatus) -> str:
    pct = 100 * (s.done + s.failed) / s.total if s.total else 100
    parts = [f"batch {s.batch_id}" if s.prefix is None else f"prefix {message.printable(s.prefix)}",
             f"{s.done}/{s.total} done ({pct:.0f}%)", f"{s.failed} failed",
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
    lines += [f"warning: {w}" for w in s.warnings]
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


def timed_out_line(s: BatchStatus, timeout_s: float) -> str:
    what = f"batch {s.batch_id}" if s.prefix is None else f"prefix {message.printable(s.prefix)}"
    return (f"timed out after {timeout_s:g}s: {s.pending} of {s.total} jobs still pending ({what}, "
            f"{s.done} done, {s.failed} failed)")


def _poller(clients, q: StatusQuery, *, wait: bool):
    """A function returning the current status of what ``q`` names."""
    if q.input_prefix is not None:
        queue_url = aws.resolve_queue_url(clients.sqs, q.queue) if q.queue else None
        headers: dict = {}  # manifest headers, read once per wait
        return lambda: prefix_status(clients, bucket=q.bucket, input_prefix=q.input_prefix,
                                     output_prefix=q.output_prefix, ext=q.extension, errors_prefix=q.errors_prefix,
                                     batch_prefix=q.batch_prefix, queue_url=queue_url, headers=headers)
    # A wait follows one batch, even if a newer one starts meanwhile.
    batch_id = q.batch_id or (latest_batch(clients.s3, q.bucket, q.batch_prefix) if wait else None)
    return lambda: batch_status(clients, bucket=q.bucket, batch_id=batch_id, ext=q.extension,
                                batch_prefix=q.batch_prefix, errors_prefix=q.errors_prefix)


def show_status(clients, q: StatusQuery, *, wait=False, interval_s=5.0, timeout_s=None, as_json=False,
                quiet=False) -> int:
    """``jobctl status`` and ``sendjobs --wait``: print the status (waiting first, with ``wait``) and
    return the exit status (``EXIT_*``; without ``wait`` always 0)."""
    tty = sys.stderr.isatty()

    def update(s):
        if not quiet:
            click.echo(("\r" + progress_line(s) + "   ") if tty else progress_line(s), err=True, nl=not tty)

    try:
        poll = _poller(clients, q, wait=wait)
        if wait:
            result = wait_for(poll, interval_s=interval_s, timeout_s=timeout_s, on_update=update)
            if tty and not quiet:
                click.echo("", err=True)
        else:
            result = poll()
    except (StatusError, ListingError) as exc:
        raise Fail(str(exc)) from None
    except aws.AWS_ERRORS as exc:
        raise Fail(aws.describe(exc, bucket=q.bucket, queue=q.queue)) from None
    timed_out = wait and not result.finished
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "pending": result.pending, "finished": result.finished,
                               "timed_out": timed_out}))
    if not quiet or result.failed:
        lines = report_lines(result)
        # While waiting, the progress line was just printed; don't repeat it.
        for line in (lines[1:] if wait and not tty and not quiet else lines):
            click.echo(line, err=True)
    if not wait:
        return EXIT_DONE
    if timed_out:
        click.echo(timed_out_line(result, timeout_s), err=True)
        return EXIT_TIMED_OUT
    return EXIT_FAILED if result.failed else EXIT_DONE
