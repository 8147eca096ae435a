"""jobctl: the companion commands — local endpoint, quick-start resources, demo.

``sendjobs`` and ``getjobs`` keep the original tutorial's invocations; everything that is neither
submitting nor working lives here.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import click

from . import aws, resources
from .clitools import Fail, Group, aws_options


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli():
    """Companion commands for sendjobs/getjobs: a local AWS endpoint, quick-start resources, the demo."""


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
    clients = aws.make_clients(target)
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
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Directory to process (default: examples/data).")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), default="demo-output", show_default=True,
              help="Where the results are downloaded.")
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
def demo(data_dir, output_dir, workers, concurrency):
    """The whole pipeline on the embedded endpoint: submit examples/data, run workers, show results."""
    from .demo import repo_root, run_demo
    from .local import LocalEndpointUnavailable

    data_dir = data_dir or os.path.join(repo_root(), "examples", "data")
    try:
        return run_demo(data_dir=data_dir, output_dir=os.path.abspath(output_dir), workers=workers,
                        concurrency=concurrency)
    except LocalEndpointUnavailable as exc:
        raise Fail(str(exc)) from None


def main():
    cli(prog_name="jobctl")


if __name__ == "__main__":
    main()
