"""jobctl: the companion commands — batch status and redrive, a local endpoint, quick-start resources.

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
from .clitools import Fail, Group, aws_options, connect, version_option
from .deploycli import register as register_operator_commands


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@version_option
def cli():
    """Companion commands for sendjobs/getjobs: batch status and redrive, a local AWS endpoint,
    quick-start resources."""


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
def create(bucket, queue, region, endpoint_url, profile, visibility_timeout, max_receive_count):
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
    except Exception as exc:  # noqa: BLE001
        raise Fail(aws.describe(exc, bucket=bucket, queue=queue)) from None
    click.echo(json.dumps({"bucket": created.bucket, "queue_url": created.queue_url,
                           "dlq_url": created.dlq_url}, indent=2))
    return 0


@cli.command()
@click.argument("bucket")
@click.argument("batch_id", required=False)
@click.option("--region", default=None, help="Default: $AWS_REGION or the profile's.")
@aws_options
@click.option("--ext", "extension", default=".out", show_default=True,
              help="The workers' OUTPUT_EXTENSION (how a job's output key is named).")
@click.option("--batch-prefix", default="batches/", show_default=True)
@click.option("--errors-prefix", default="errors/", show_default=True)
@click.option("--wait", is_flag=True, help="Poll until every job is done or failed; exit 1 if any failed.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True, metavar="SECONDS")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="With --wait: give up after this long (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
def status(bucket, batch_id, region, endpoint_url, profile, extension, batch_prefix, errors_prefix, wait, interval,
           timeout, as_json):
    """Counts of a batch (default: the latest in BUCKET): done, failed (with reasons), in progress,
    waiting; throughput, ETA, queue depth, in-flight count, dead-letter queue and oldest message age.

    State comes from S3 and SQS only, so it works from any machine. A status of a 1,000-job batch
    costs about 7 requests, of a 100,000-job batch about 106.
    """
    from .statusview import show_status

    clients = connect(aws.Target(region=region, endpoint_url=endpoint_url, profile=profile))
    return show_status(clients, bucket=bucket, batch_id=batch_id, extension=extension, batch_prefix=batch_prefix,
                       errors_prefix=errors_prefix, wait=wait, interval=interval, timeout=timeout, as_json=as_json)


@cli.command()
@click.argument("queue")
@click.option("--region", default=None, help="Default: $AWS_REGION or the profile's.")
@aws_options
@click.option("--dry-run", is_flag=True, help="Only count what would be moved.")
@click.option("--max", "max_messages", type=click.IntRange(min=1), default=None,
              help="Move at most this many (by receive/send/delete).")
@click.option("--bucket", default=None,
              help="Also clear the failure records under --errors-prefix in this bucket (so status shows the "
                   "redriven jobs as pending).")
@click.option("--errors-prefix", default="errors/", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def redrive(queue, region, endpoint_url, profile, dry_run, max_messages, bucket, errors_prefix, as_json):
    """Move the messages of QUEUE's dead-letter queue back to QUEUE (after fixing the command).

    Uses SQS StartMessageMoveTask where available, otherwise receive/send/delete in batches of 10,
    up to the number of messages the dead-letter queue held when it began.
    """
    from .ops.status import StatusError
    from .ops.redrive import redrive as do_redrive

    clients = connect(aws.Target(region=region, endpoint_url=endpoint_url, profile=profile))
    try:
        result = do_redrive(clients, queue=queue, dry_run=dry_run, max_messages=max_messages,
                            errors_bucket=bucket, errors_prefix=errors_prefix)
    except StatusError as exc:
        raise Fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001
        raise Fail(aws.describe(exc, queue=queue)) from None
    if as_json:
        click.echo(json.dumps(result.__dict__))
    if dry_run:
        click.echo(f"{result.available} messages in the dead-letter queue would be moved back to {queue}", err=True)
    else:
        click.echo(f"moved {result.moved} messages back to {queue} ({result.method or 'nothing to move'})"
                   + (f"; cleared {result.errors_cleared} failure records" if result.errors_cleared else ""), err=True)
    return 0


register_operator_commands(cli)  # deploy, destroy, simulate (filejobs/deploycli.py)


def main():
    cli(prog_name="jobctl")


if __name__ == "__main__":
    main()
