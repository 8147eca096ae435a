#!/usr/bin/env python3
"""getjobs: a worker that long-polls SQS and runs a command on each job's input file."""

from __future__ import annotations

import os
import sys

import click

from filejobs import aws, crt
from filejobs.clitools import (
    Command,
    Fail,
    aws_options,
    connect,
    prefix,
    version_option,
)
from filejobs.command import CommandError
from filejobs.command import parse as parse_command
from filejobs.events import EventLog
from filejobs.message import Allowed
from filejobs.runner import CommandRunner, HandlerRunner, ProgramError, resolve_program
from filejobs.worker import FatalWorkerError, Worker, WorkerConfig

#: Log lines are written together, at most this long after an event (``events.LineBuffer``).
LOG_FLUSH_S = 0.1

EPILOG = """\b
Examples:
  getjobs /var/tmp .out my-queue eu-west-1 cp
  getjobs --concurrency 8 --bucket my-bucket --input-prefix input/ --output-prefix output/ \\
      /var/tmp/work .png my-queue eu-west-1 convert -resize 50%
  getjobs /var/tmp/work .pdf my-queue eu-west-1 pandoc {input} -o {output}
  getjobs --s3-events --bucket my-bucket --input-prefix input/ --output-prefix output/ \\
      /var/tmp/work .out my-queue eu-west-1 cp
  getjobs --exit-when-idle 30 --handler mypkg.jobs:thumbnail /tmp/work .jpg my-queue us-east-1

\b
Options go before WORK_DIR; everything after COMMAND is passed to it. The command runs as
COMMAND [ARGS...] INPUT_PATH OUTPUT_PATH (no shell), or, when its words name placeholders, as
written with them replaced inside each word: {input} {output} (local paths), {name} {stem} {ext}
(of the input's file name), {key} (the input's S3 key), {outdir} (an empty directory whose files are
all uploaded under the output key); {{ and }} are literal braces. A {name}, {stem} or {key} that would
start an argument with '-' before any '--' fails its job instead of running. It gets FILEJOBS_INPUT_KEY,
FILEJOBS_OUTPUT_KEY, FILEJOBS_BUCKET, FILEJOBS_BATCH_ID, FILEJOBS_ATTEMPT and FILEJOBS_MESSAGE_ID in
its environment. A 0 exit with the output written (a file, or a directory whose files are all
uploaded) makes the job done; its output lands at
OUTPUT_PREFIX + the input's path below INPUT_PREFIX + OUTPUT_EXTENSION.

\b
COMMAND is found once, at start-up: a name with a slash (scripts/process.sh, ./run) is a path from
the folder getjobs is started in; any other name is looked up on PATH. A missing or non-executable
program (or a --handler that cannot be imported or called) exits 2 before any job is received.

\b
Trust: messages are untrusted. Keys that are absolute or contain a '..' segment are always refused;
with --bucket/--input-prefix/--output-prefix (recommended in production) the message must also stay
inside them. Refused messages go to the dead-letter queue without touching S3. With --s3-events,
S3 event notifications (direct or through SNS) for objects created under --input-prefix are jobs
too; S3's test event, removals and folder markers are deleted, events for another bucket or prefix
are refused.
Every option can also be set by an environment variable (shown as 'env var:'), e.g. for systemd."""


@click.command(cls=Command, epilog=EPILOG, context_settings={
    "help_option_names": ["-h", "--help"], "allow_interspersed_args": False, "auto_envvar_prefix": "GETJOBS",
    "show_default": True, "max_content_width": 100})
@version_option
@click.argument("work_dir", type=click.Path(file_okay=False, dir_okay=True, writable=True))
@click.argument("output_extension")
@click.argument("queue")
@click.argument("region")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@aws_options
@click.option("--concurrency", type=click.IntRange(1, 512), default=1, show_envvar=True, help="Jobs run at once.")
@click.option("--handler", metavar="MODULE:FUNCTION", default=None, show_envvar=True,
              help="Call FUNCTION(input_path, output_path) in-process instead of a COMMAND.")
@click.option("--bucket", default=None, show_envvar=True, help="Only accept jobs for this bucket.")
@click.option("--input-prefix", default=None, show_envvar=True, help="Only accept inputs under this prefix.")
@click.option("--output-prefix", default=None, show_envvar=True, help="Only accept outputs under this prefix.")
@click.option("--s3-events", is_flag=True, show_envvar=True,
              help="Also take S3 event notifications as jobs (files that land in the bucket on their own); "
                   "needs --bucket, --input-prefix and --output-prefix (outputs and error records outside the "
                   "input prefix).")
@click.option("--errors-prefix", default="errors/", show_envvar=True,
              help="Where a job's final failure is recorded (exit code, stderr tail).")
@click.option("--job-timeout", type=click.FloatRange(min=0, min_open=True), default=None, show_envvar=True,
              metavar="SECONDS", help="Kill a command (its whole process group) after this long.")
@click.option("--visibility-timeout", type=click.IntRange(5, 43200), default=None, show_envvar=True,
              metavar="SECONDS", help="Visibility timeout for received messages (default: the queue's).")
@click.option("--heartbeat", type=click.FloatRange(min=0, min_open=True), default=None, show_envvar=True,
              metavar="SECONDS", help="Extend a running job's visibility this often (default: a third of the "
                                      "visibility timeout; at most half of it).")
@click.option("--grace", type=click.FloatRange(min=0), default=60.0, show_envvar=True, metavar="SECONDS",
              help="On SIGTERM/SIGINT, time running jobs get to finish before their messages are released.")
@click.option("--retry-delay", type=click.FloatRange(min=0), default=10.0, show_envvar=True, metavar="SECONDS",
              help="First retry delay of a failed job; doubles per attempt.")
@click.option("--max-retry-delay", type=click.FloatRange(min=0, max=43199), default=900.0, show_envvar=True,
              metavar="SECONDS", help="Cap of the retry delay.")
@click.option("--exit-when-idle", type=click.FloatRange(min=0), default=None, show_envvar=True, metavar="SECONDS",
              help="Exit once no message came for this long (demos, tests, one-off runs).")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None, show_envvar=True,
              help="Exit after this many messages.")
@click.option("--wait-time", type=click.IntRange(0, 20), default=20, show_envvar=True, metavar="SECONDS",
              help="Long-poll wait per receive.")
@click.option("--protect-instance", is_flag=True, show_envvar=True,
              help="On EC2 in an Auto Scaling group: scale-in protection while jobs run (instance id via IMDSv2).")
@click.option("--watch-notices", is_flag=True, show_envvar=True,
              help="On EC2: read the instance metadata (IMDSv2) every 5 s. On a Spot interruption or an Auto Scaling "
                   "termination, stop receiving, let running jobs finish within --grace (ending 10 s before the "
                   "notice's deadline at the latest), release the rest at once, exit 0.")
@click.option("--autoscaling-group", metavar="NAME", default=None, show_envvar=True,
              help="The instance's Auto Scaling group, for --protect-instance and --lifecycle-hook (without it "
                   "the group is looked up with DescribeAutoScalingInstances).")
@click.option("--lifecycle-hook", metavar="NAME", default=None, show_envvar=True,
              help="With --watch-notices and --autoscaling-group: complete this termination lifecycle hook's "
                   "action once the worker has drained, so the group need not wait for the hook's timeout.")
@click.option("--transfers", type=click.Choice(crt.CHOICES), default="auto", show_envvar=True,
              envvar=["GETJOBS_TRANSFERS", "FILEJOBS_UPLOADER"],
              help="What downloads inputs and uploads outputs up to 1 MiB: the AWS CRT (pip install 'filejobs[crt]'), "
                   "botocore, or auto: the CRT when it is installed and usable. Larger files always go through "
                   "botocore.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_envvar=True,
              help="One line per event on stderr (written in batches, within 0.1 s); json suits CloudWatch Logs.")
@click.option("--metrics", is_flag=True, show_envvar=True,
              help="Also print CloudWatch embedded-metric-format lines on stdout (JobsDone, JobsFailed, JobDuration).")
def cli(work_dir, output_extension, queue, region, command, endpoint_url, profile, concurrency, handler, bucket,
        input_prefix, output_prefix, s3_events, errors_prefix, job_timeout, visibility_timeout, heartbeat, grace,
        retry_delay, max_retry_delay, exit_when_idle, max_jobs, wait_time, protect_instance, watch_notices,
        autoscaling_group, lifecycle_hook, transfers, log_format, metrics):
    """Process jobs from QUEUE (a name or URL) in REGION: download each input into a private folder
    under WORK_DIR, run COMMAND on it, upload the result, then delete the message.

    Runs until stopped (first SIGTERM/SIGINT drains, a second aborts), or see --exit-when-idle / --max-jobs.
    """
    if handler and command:
        raise click.UsageError("give COMMAND or --handler, not both")
    if not handler and not command:
        raise click.UsageError("missing COMMAND (or --handler MODULE:FUNCTION)")
    if lifecycle_hook and not (watch_notices and autoscaling_group):
        raise click.UsageError("--lifecycle-hook needs --watch-notices and --autoscaling-group")
    if os.path.exists(work_dir) and not os.path.isdir(work_dir):
        raise click.BadParameter("not a directory", param_hint="WORK_DIR")
    if s3_events and None in (bucket, input_prefix, output_prefix):
        raise click.UsageError("--s3-events needs --bucket, --input-prefix and --output-prefix "
                               "(event messages name no prefixes)")
    if s3_events:
        _refuse_event_loops(prefix(input_prefix), output=prefix(output_prefix), errors=prefix(errors_prefix))
    runner = _runner(handler, command)
    config = WorkerConfig(
        work_dir=os.path.abspath(work_dir), extension=output_extension, queue=queue,
        allowed=Allowed(bucket=bucket, input_prefix=None if input_prefix is None else prefix(input_prefix),
                        output_prefix=None if output_prefix is None else prefix(output_prefix), s3_events=s3_events),
        concurrency=concurrency, job_timeout_s=job_timeout, visibility_timeout_s=visibility_timeout,
        heartbeat_s=heartbeat, grace_s=grace, exit_when_idle_s=exit_when_idle, max_jobs=max_jobs,
        wait_time_s=wait_time, retry_base_s=retry_delay, retry_max_s=max_retry_delay,
        errors_prefix=prefix(errors_prefix))
    log = EventLog(fmt=log_format, metrics=metrics, dimensions={"Queue": aws.queue_name(queue)},
                   flush_s=LOG_FLUSH_S)
    try:
        target = aws.Target(region=region, endpoint_url=endpoint_url, profile=profile)
        clients = connect(target, max_pool_connections=concurrency * 2 + 8)
        on_ec2 = ec2_parts(clients, log=log, protect=protect_instance, watch=watch_notices,
                           group=autoscaling_group, hook=lifecycle_hook, drain_timeout_s=grace + 60)
        worker = Worker(config, clients, runner, log=log, **on_ec2,
                        crt_putter=_crt_putter(transfers, clients, bucket=bucket, concurrency=concurrency))
        worker.install_signal_handlers()
        worker.run()
    except FatalWorkerError as exc:
        raise Fail(str(exc)) from None
    finally:
        log.close()  # before click prints an error: the lines stay in order
    return 0


def _crt_putter(choice: str, clients, *, bucket: str | None, concurrency: int):
    """The AWS CRT client for small transfers, or None for botocore: chosen as sendjobs chooses
    (``crt.choose``); without --bucket, each job's bucket is checked as it comes."""
    try:
        chosen = crt.choose(choice, clients, bucket, os.environ)
    except ValueError as exc:
        raise Fail(str(exc)) from None
    if chosen != "crt":
        return None
    # 2 × concurrency job threads: a job's upload overlaps the next job's download.
    return crt.CrtPutter(clients, connections=concurrency * 2)


def ec2_parts(clients, *, log, protect: bool, watch: bool, group: str | None, hook: str | None,
              drain_timeout_s: float) -> dict:
    """The worker's EC2 helpers: scale-in protection, the notice watcher, the lifecycle action.
    ``drain_timeout_s``: the lifecycle hook's heartbeat (the stack sets it to the grace + 60 s)."""
    if not (protect or watch):
        return {}
    from filejobs import ec2
    option = "--protect-instance" if protect else "--watch-notices"
    try:
        instance = ec2.instance_id()  # also shows that the metadata can be read
        autoscaling = clients.client("autoscaling") if protect or hook else None
        protector = ec2.InstanceProtector(autoscaling, instance, group, log=log) if protect else None
    except Exception as exc:  # noqa: BLE001
        raise Fail(f"{option}: {aws.describe(exc)}") from None
    if not instance:
        raise Fail(f"{option}: the instance metadata gave no instance id")
    return {"protector": protector,
            "notices": ec2.NoticeWatcher(ec2.Imds(), drain_timeout_s=drain_timeout_s) if watch else None,
            "lifecycle": ec2.LifecycleAction(autoscaling, group, hook, instance) if hook else None}


def _refuse_event_loops(input_prefix: str, *, output: str, errors: str) -> None:
    """With --s3-events, every object created under the input prefix is a job: an output or an error
    record written there would be one too, and so on forever."""
    for option, value in (("--output-prefix", output), ("--errors-prefix", errors)):
        if value.startswith(input_prefix) or (option == "--output-prefix" and input_prefix.startswith(value)):
            raise click.UsageError(f"with --s3-events, {option} {value!r} must not overlap --input-prefix "
                                   f"{input_prefix!r} (what the worker writes there would become new jobs)")


def _runner(handler: str | None, command: tuple[str, ...]):
    """The runner, with the command line parsed once at start-up: a bad template never reaches a job."""
    if handler:
        try:
            return HandlerRunner(handler)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--handler") from None
    try:
        parse_command(command)  # a bad template is reported before a missing program
        program = resolve_program(command[0], start_dir=os.getcwd(), search_path=os.environ.get("PATH"))
        return CommandRunner(parse_command((program, *command[1:])))
    except (CommandError, ProgramError) as exc:
        raise click.BadParameter(str(exc), param_hint="COMMAND") from None


def main():  # console_scripts entry point
    cli(prog_name=os.path.basename(sys.argv[0]).removesuffix(".py") or "getjobs")


if __name__ == "__main__":
    main()
