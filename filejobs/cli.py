"""jobctl: the companion commands — batch status and redrive, deploy/destroy/simulate, a local endpoint, quick-start resources.

``sendjobs`` and ``getjobs`` keep the original tutorial's invocations; everything that is neither
submitting nor working lives here.
"""

from __future__ import annotations

import json
import signal
import sys

import click

from . import aws
from .ops import resources
from .clitools import Fail, Group, aws_options, connect, prefix, version_option
from .deploycli import register as register_operator_commands
from .statusview import WAIT_EXIT_HELP, StatusQuery, show_status


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@version_option
def cli():
    """Companion commands for sendjobs/getjobs: batch status and redrive, a local AWS endpoint,
    quick-start resources, and deploying, tearing down and simulating the AWS stack."""


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--bucket", default=None, help="Also create this bucket.")
@click.option("--queue", default=None, help="Also create this queue and QUEUE-dlq with a redrive policy.")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--max-receive-count", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--visibility-timeout", type=click.IntRange(0, 43200), default=60, show_default=True)
def local(port, bucket, queue, region, max_receive_count, visibility_timeout):
    """Run the embedded AWS endpoint (moto's server on 127.0.0.1) until Ctrl-C.

    Prints the environment to point sendjobs/getjobs at it; no account or credentials needed.
    """
    from .local import LocalEndpoint, LocalEndpointUnavailable

    try:
        endpoint = LocalEndpoint(port)
    except LocalEndpointUnavailable as exc:
        raise Fail(str(exc)) from None
    url = endpoint.start()
    try:
        if bucket or queue:
            clients = aws.make_clients(aws.Target(region=region, endpoint_url=url))
            if bucket:
                resources.ensure_bucket(clients.s3, bucket, region)
            if queue:
                resources.ensure_queue(clients.sqs, queue, resources.QueueSettings(
                    visibility_timeout_s=visibility_timeout, max_receive_count=max_receive_count))
        click.echo(f"export AWS_ENDPOINT_URL={url}")
        click.echo(f"export AWS_REGION={region}")
        click.echo("local endpoint running; Ctrl-C to stop", err=True)
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    finally:
        endpoint.stop()
    return 0


@cli.command()
@click.argument("bucket")
@click.argument("queue")
@click.option("--region", default=None, help="Default: $AWS_REGION or the profile's.")
@aws_options
@click.option("--visibility-timeout", type=click.IntRange(0, 43200), default=60, show_default=True, metavar="SECONDS")
@click.option("--max-receive-count", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Attempts before SQS moves a job to QUEUE-dlq.")
@click.option("--watch", "watch_prefix", default=None, metavar="PREFIX",
              help="Also send an S3 event to QUEUE for every object created under PREFIX in BUCKET (workers then "
                   "need --bucket, --input-prefix PREFIX and --output-prefix); the queue policy allows only BUCKET.")
def create(bucket, queue, region, endpoint_url, profile, visibility_timeout, max_receive_count, watch_prefix):
    """Create BUCKET (Block Public Access on), QUEUE and QUEUE-dlq with a redrive policy.

    Idempotent. Works on real AWS for a quick start (infra/stack.yaml is the production path)
    and on a local endpoint (--endpoint-url or $AWS_ENDPOINT_URL).
    """
    target = aws.Target(region=region, endpoint_url=endpoint_url, profile=profile)
    clients = connect(target)
    try:
        created = resources.create_all(clients.s3, clients.sqs, bucket=bucket, queue=queue,
                                       region=clients.session.region_name,
                                       settings=resources.QueueSettings(visibility_timeout_s=visibility_timeout,
                                                                        max_receive_count=max_receive_count))
        watched = None if watch_prefix is None else resources.watch(
            clients.s3, clients.sqs, bucket=bucket, queue_url=created.queue_url, prefix=prefix(watch_prefix))
    except aws.AWS_ERRORS as exc:
        raise Fail(aws.describe(exc, bucket=bucket, queue=queue)) from None
    out = {"bucket": created.bucket, "queue_url": created.queue_url, "dlq_url": created.dlq_url}
    if watched:
        out["watch"] = {"prefix": watched.prefix, "notification_id": watched.configuration_id,
                        "queue_policy_sid": watched.policy_sid}
    click.echo(json.dumps(out, indent=2))
    return 0


@cli.command(epilog=WAIT_EXIT_HELP)
@click.argument("bucket")
@click.argument("batch_id", required=False)
@click.option("--region", default=None, help="Default: $AWS_REGION or the profile's.")
@aws_options
@click.option("--ext", "extension", default=".out", show_default=True,
              help="The workers' OUTPUT_EXTENSION (how a job's output key is named).")
@click.option("--prefix", "input_prefix", default=None, metavar="INPUT_PREFIX",
              help="No batch: compare every file under INPUT_PREFIX with its output under --output-prefix "
                   "(files that arrive on their own, or many batches).")
@click.option("--output-prefix", default=None, metavar="PREFIX", help="With --prefix: where the outputs are.")
@click.option("--queue", default=None, metavar="QUEUE",
              help="With --prefix: the job queue (name or URL), to split pending jobs into in progress and waiting.")
@click.option("--batch-prefix", default="batches/", show_default=True)
@click.option("--errors-prefix", default="errors/", show_default=True)
@click.option("--wait", is_flag=True, help="Poll until every job is done or failed; exit 1 if any failed.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True, metavar="SECONDS")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="With --wait: give up after this long (exit 124).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
def status(bucket, batch_id, region, endpoint_url, profile, extension, input_prefix, output_prefix, queue,
           batch_prefix, errors_prefix, wait, interval, timeout, as_json):
    """Counts of a batch (default: the latest in BUCKET), or with --prefix of every file under a
    prefix: done, failed (with reasons), in progress, waiting; throughput, ETA, queue depth,
    in-flight count, dead-letter queue and oldest message age.

    State comes from S3 and SQS only, so it works from any machine. A status of a 1,000-job batch
    costs about 7 requests, of a 100,000-job batch about 106 (on S3; see README for other stores).
    """
    if input_prefix is None and (output_prefix is not None or queue is not None):
        raise click.UsageError("--output-prefix and --queue go with --prefix")
    if input_prefix is not None and (batch_id is not None or output_prefix is None):
        raise click.UsageError("--prefix needs --output-prefix, and no BATCH_ID")
    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    clients = connect(aws.Target(region=region, endpoint_url=endpoint_url, profile=profile))
    query = StatusQuery(bucket=bucket, batch_id=batch_id, extension=extension, batch_prefix=prefix(batch_prefix),
                        errors_prefix=prefix(errors_prefix),
                        input_prefix=None if input_prefix is None else prefix(input_prefix),
                        output_prefix=None if output_prefix is None else prefix(output_prefix), queue=queue)
    return show_status(clients, query, wait=wait, interval_s=interval, timeout_s=timeout, as_json=as_json)


REDRIVE_EXIT_HELP = """\b
Exit status:
  0    moved (a move task COMPLETED), nothing to move, or --dry-run/--status/--no-wait
  1    an error, or the move task FAILED or was CANCELLED (failure records kept)
  2    bad usage
  124  --timeout passed while the move task was still running (failure records kept)"""


@cli.command(epilog=REDRIVE_EXIT_HELP)
@click.argument("queue")
@click.option("--region", default=None, help="Default: $AWS_REGION or the profile's.")
@aws_options
@click.option("--dry-run", is_flag=True, help="Only count what would be moved.")
@click.option("--status", "show_tasks", is_flag=True,
              help="Show the recent move tasks of QUEUE's dead-letter queue (to see a --no-wait move finish).")
@click.option("--max", "max_messages", type=click.IntRange(min=1), default=None,
              help="Move at most this many (by receive/send/delete).")
@click.option("--bucket", default=None,
              help="Also clear the failure records under --errors-prefix in this bucket of the jobs moved (so status "
                   "shows them as pending).")
@click.option("--errors-prefix", default="errors/", show_default=True)
@click.option("--batch-prefix", default="batches/", show_default=True)
@click.option("--no-wait", is_flag=True,
              help="Start the move task and return; failure records are then kept (see --status).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Follow the move task at most this long (exit 124 if it is still running).")
@click.option("--json", "as_json", is_flag=True)
def redrive(queue, region, endpoint_url, profile, dry_run, show_tasks, max_messages, bucket, errors_prefix,
            batch_prefix, no_wait, timeout, as_json):
    """Move the messages of QUEUE's dead-letter queue back to QUEUE (after fixing the command).

    Uses SQS StartMessageMoveTask where available and follows the task until it has ended, with
    its progress on stderr; otherwise receive/send/delete in batches of 10, up to the number of
    messages the dead-letter queue held when it began. With --bucket, clears the failure records
    of the jobs it saw moved: after a COMPLETED task every record that was there before the move
    began, after a move by hand those of the messages moved; a record written again meanwhile (the
    job failed once more) stays, and none is cleared when the task failed, was cancelled or still runs.
    """
    from .redriveview import show_move_tasks, show_redrive

    clients = connect(aws.Target(region=region, endpoint_url=endpoint_url, profile=profile))
    if show_tasks:
        return show_move_tasks(clients, queue=queue, as_json=as_json)
    if no_wait and timeout is not None:
        raise click.UsageError("--no-wait and --timeout exclude each other")
    from .ops.redrive import RedriveOptions

    options = RedriveOptions(dry_run=dry_run, max_messages=max_messages, errors_bucket=bucket,
                             errors_prefix=prefix(errors_prefix), batch_prefix=prefix(batch_prefix),
                             follow=not no_wait, timeout_s=timeout)
    return show_redrive(clients, queue=queue, options=options, as_json=as_json)


register_operator_commands(cli)  # deploy, destroy, simulate (filejobs/deploycli.py)


def main():
    cli(prog_name="jobctl")


if __name__ == "__main__":
    main()
