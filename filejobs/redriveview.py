"""``jobctl redrive`` for people: progress and outcome lines, the exit status (CLI glue)."""

from __future__ import annotations

import json
import sys

import click

from . import aws
from .clitools import Fail
from .ops import movetask
from .ops.redrive import RedriveOptions, dead_letter_queue, redrive
from .ops.status import StatusError
from .statusview import EXIT_DONE, EXIT_FAILED, EXIT_TIMED_OUT


def _say(text: str) -> None:
    click.echo(text, err=True)


def outcome_line(queue: str, r) -> str:
    """What happened, in one line."""
    if r.status == movetask.COMPLETED:
        return f"moved {r.moved} messages back to {queue} ({r.method})" + (
            f"; cleared {r.errors_cleared} failure records" if r.errors_cleared else "")
    if r.status in (movetask.RUNNING, movetask.CANCELLING):
        return (f"the move task is {r.status} ({r.moved} moved so far); see it finish with "
                f"'jobctl redrive {queue} --status'")
    task = r.task or {}
    why = f" ({task['failure_reason']})" if task.get("failure_reason") else ""
    of = f" of {task['to_move']}" if task.get("to_move") is not None else ""
    return f"the move task {r.status}{why} after moving {r.moved}{of} messages back to {queue}"


def show_redrive(clients, *, queue: str, options: RedriveOptions, as_json: bool) -> int:
    tty = sys.stderr.isatty()

    def update(task: movetask.MoveTask) -> None:
        click.echo(("\r" + task.line() + "   ") if tty else task.line(), err=True, nl=not tty)

    try:
        result = redrive(clients, queue=queue, options=options, on_update=update)
    except StatusError as exc:
        raise Fail(str(exc)) from None
    except aws.AWS_ERRORS as exc:
        raise Fail(aws.describe(exc, queue=queue, bucket=options.errors_bucket)) from None
    if tty and result.task and options.follow:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    if options.dry_run:
        _say(f"{result.available} messages in the dead-letter queue would be moved back to {queue}")
        return EXIT_DONE
    _say(outcome_line(queue, result) if result.available else "nothing to move: the dead-letter queue is empty")
    for note in result.notes:
        _say(note)
    if result.status in (movetask.FAILED, movetask.CANCELLED):
        return EXIT_FAILED
    if result.status in (movetask.RUNNING, movetask.CANCELLING) and options.follow:
        return EXIT_TIMED_OUT
    return EXIT_DONE


def show_move_tasks(clients, *, queue: str, as_json: bool) -> int:
    """``jobctl redrive QUEUE --status``: the recent move tasks of QUEUE's dead-letter queue."""
    try:
        _, _, dlq_arn, _ = dead_letter_queue(clients.sqs, queue)
        tasks = movetask.recent(clients.sqs, source_arn=dlq_arn)
    except StatusError as exc:
        raise Fail(str(exc)) from None
    except movetask.MoveTaskUnsupported:
        raise Fail("this endpoint has no message move tasks (ListMessageMoveTasks); "
                   "jobctl redrive moves by receive/send/delete there and reports when it is done") from None
    except aws.AWS_ERRORS as exc:
        raise Fail(aws.describe(exc, queue=queue)) from None
    if as_json:
        click.echo(json.dumps([t.as_dict() for t in tasks]))
    if not tasks:
        _say(f"no move task for the dead-letter queue of {queue}")
    for t in tasks:
        _say(t.line())
    return EXIT_DONE
