#!/usr/bin/env python3
"""sendjobs: upload every file of a directory to S3 and send one job per file to SQS."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import click

from filejobs import aws, crt
from filejobs.clitools import Command, Fail, aws_options, connect, prefix, version_option
from filejobs.events import EventLog
from filejobs.message import printable
from filejobs.progress import Progress, human_bytes
from filejobs.send import FatalSendError, SendConfig, Sender, SendSummary
from filejobs.send.procs import default_processes, usable_cpus
from filejobs.statusview import StatusQuery, show_status

EXAMPLE = """\b
Examples:
  sendjobs ./photos my-bucket input/ output/ my-queue eu-west-1
  sendjobs --include '*.jpg' --exclude 'tmp/*' ./photos my-bucket input/ output/ \\
      https://sqs.eu-west-1.amazonaws.com/123456789012/my-queue
  AWS_ENDPOINT_URL=http://127.0.0.1:5000 sendjobs ./examples/data demo-bucket input/ output/ demo-queue us-east-1

Rerunning the same command resumes: files already sent are skipped (see README, "Resume").

\b
Exit status:
  0    every file was sent (with --wait: and every job is done)
  1    an error (one line on stderr), a file that could not be sent (named),
       or with --wait a job that failed (listed with its reason)
  2    bad usage (options, arguments, DIRECTORY)
  124  --wait --timeout passed with jobs still pending (the last line says how many)
  130  interrupted (Ctrl-C); rerun the same command to resume"""


@click.command(cls=Command, epilog=EXAMPLE, context_settings={"help_option_names": ["-h", "--help"],
                                                               "max_content_width": 100})
@version_option
@click.argument("directory", type=click.Path(exists=True, file_okay=False, dir_okay=True, readable=True,
                                             executable=True))
@click.argument("bucket")
@click.argument("input_prefix")
@click.argument("output_prefix")
@click.argument("queue")
@click.argument("region", required=False)
@aws_options
@click.option("--recursive/--no-recursive", default=True, show_default=True,
              help="Walk subdirectories (keys keep the relative path). --no-recursive is the original flat listing.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only files whose relative path or name matches (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Skip files and directories whose relative path or name matches (repeatable).")
@click.option("--follow-symlinks", is_flag=True,
              help="Follow symlinks that stay inside DIRECTORY (links out of it are always skipped).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=32, show_default=True,
              help="Files uploaded at once.")
@click.option("--processes", type=click.IntRange(1, 64), default=None, metavar="N",
              help="Upload processes, so more than one core can work; they start once a run has more than 256 "
                   "files (default: from the number of cores, 1 with the AWS CRT; 1 = upload in sendjobs' own "
                   "threads).")
@click.option("--uploader", type=click.Choice(crt.CHOICES), default="auto", show_default=True,
              envvar="FILEJOBS_UPLOADER", show_envvar=True,
              help="What uploads small files (up to 1 MiB): the AWS CRT (pip install 'filejobs[crt]'), botocore, "
                   "or auto: the CRT when it is installed and usable.")
@click.option("--force", is_flag=True, help="Upload and send every file again, ignoring what earlier runs sent.")
@click.option("--dry-run", is_flag=True, help="List what would be sent (JSON lines on stdout); touch nothing.")
@click.option("--batch-prefix", default="batches/", show_default=True, metavar="PREFIX",
              help="Where the batch manifest is written in BUCKET.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the resume journals (default: $XDG_STATE_HOME/filejobs or ~/.local/state/filejobs).")
@click.option("--wait", is_flag=True,
              help="After sending, wait until every job of the batch is done or failed (exit 1 if any failed). "
                   "With nothing new to send, waits for the last batch sent from this directory.")
@click.option("--output-extension", "extension", default=".out", show_default=True, metavar="EXT",
              help="With --wait: the workers' OUTPUT_EXTENSION (how outputs are named).")
@click.option("--wait-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True, metavar="SECONDS")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="With --wait: stop waiting after this long, with a last status line (exit 124).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only errors.")
def cli(directory, bucket, input_prefix, output_prefix, queue, region, endpoint_url, profile, recursive,
        include, exclude, follow_symlinks, concurrency, processes, uploader, force, dry_run, batch_prefix, state_dir,
        wait, extension, wait_interval, timeout, as_json, quiet):
    """Upload every file in DIRECTORY to s3://BUCKET/INPUT_PREFIX and send one job per file to QUEUE
    (a name or a URL). Workers (getjobs) write results under OUTPUT_PREFIX.

    REGION falls back to $AWS_REGION / the profile's region. A message is sent only after its file
    is in S3; failed files are named and make the exit status 1.
    """
    if timeout is not None and not wait:
        raise click.UsageError("--timeout goes with --wait")
    config = SendConfig(directory=directory, bucket=bucket, input_prefix=prefix(input_prefix),
                        output_prefix=prefix(output_prefix), queue=queue, recursive=recursive,
                        include=include, exclude=exclude, follow_symlinks=follow_symlinks,
                        concurrency=concurrency, force=force, dry_run=dry_run,
                        batch_prefix=prefix(batch_prefix), state_dir=state_dir)
    target = aws.Target(region=region, endpoint_url=endpoint_url, profile=profile)
    clients = (aws.Clients(s3=None, sqs=None) if dry_run
               else connect(target, max_pool_connections=concurrency + 16))
    if not dry_run:
        config = _upload_settings(config, clients, uploader=uploader, processes=processes)
    summary = send(config, clients, quiet=quiet)
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
    if not quiet:
        _print_summary(summary, dry_run=dry_run, log=_errlog)
    elif summary.files_failed:
        # Quiet: each failed file was named once as it failed; one closing line says what it means.
        _errlog(f"{summary.files_failed} of {summary.files_seen} files failed; rerun the same command to retry them")
    if summary.interrupted:
        return 130
    if wait and not dry_run:
        code = wait_for_sent(clients, config, summary, extension=extension, interval_s=wait_interval,
                             timeout_s=timeout, quiet=quiet)
        return code or (0 if summary.ok else 1)
    return 0 if summary.ok else 1


def _upload_settings(config: SendConfig, clients, *, uploader: str, processes: int | None) -> SendConfig:
    """Who uploads: the CRT (natively multi-threaded: one process is enough) or botocore, in
    ``processes`` processes (from the cores unless given)."""
    try:
        chosen = crt.choose(uploader, clients, config.bucket, os.environ)
    except ValueError as exc:
        raise Fail(str(exc)) from None
    if processes is None:
        processes = 1 if chosen == "crt" else default_processes(usable_cpus())
    return replace(config, uploader=chosen, processes=processes)


def _errlog(text: str) -> None:
    click.echo(text, err=True)


def send(config: SendConfig, clients, *, quiet: bool) -> SendSummary:
    """Run the sender with the progress line (a TTY only) and the event log on stderr."""
    # --quiet: failures only, each named once as it happens.
    log = EventLog(fmt="plain", only={"failed"} if quiet else None)
    with Progress(label="sent", enabled=None if not quiet and not config.dry_run else False) as progress:
        if progress.enabled:
            _count_in_background(config, progress)
        sender = Sender(config, clients, log=log, emit=click.echo, progress=progress)
        try:
            return sender.run()
        except FatalSendError as exc:
            raise Fail(str(exc)) from None
        except KeyboardInterrupt:
            sender.stop()
            raise


def wait_for_sent(clients, config: SendConfig, summary: SendSummary, *, extension: str, interval_s: float,
                  timeout_s: float | None, quiet: bool) -> int:
    """--wait: follow the batch this run sent, or with nothing new sent, the last one sent from here."""
    batch = summary.batch_id if summary.manifest_key else summary.last_batch_id
    if batch is None:
        raise Fail("nothing was sent, so there is no batch to wait for")
    query = StatusQuery(bucket=config.bucket, batch_id=batch, extension=extension, batch_prefix=config.batch_prefix)
    return show_status(clients, query, wait=True, interval_s=interval_s, timeout_s=timeout_s, quiet=quiet)


def _count_in_background(config, progress):
    """The progress total comes from a cheap second walk (names and stat only) running alongside."""
    import threading

    from filejobs.send.walk import walk

    def count():
        progress.total = sum(1 for _ in walk(config.directory, recursive=config.recursive, include=config.include,
                                             exclude=config.exclude, follow_symlinks=config.follow_symlinks))

    threading.Thread(target=count, daemon=True, name="count").start()


def _print_summary(s, *, dry_run, log):
    d = s.as_dict()
    if dry_run:
        log(f"dry run: {s.files_sent} files would be sent ({human_bytes(s.bytes_uploaded)} to upload), "
            f"{s.files_skipped} already sent, {s.files_failed} unusable")
        return
    log(f"batch {s.batch_id}: {s.files_sent} sent, {s.files_skipped} skipped (already sent), "
        f"{s.files_failed} failed; {human_bytes(s.bytes_uploaded)} uploaded in {s.seconds:.1f}s "
        f"({d['files_per_s']} files/s, {d['mib_per_s']} MiB/s)")
    if s.interrupted:
        log("interrupted: rerun the same command to resume")
    if s.failures:
        log(f"failed files ({s.files_failed}):")
        for f in s.failures[:20]:
            log(f"  {printable(f.rel)}: {f.reason}")
        if s.files_failed > 20:
            log(f"  … and {s.files_failed - 20} more (--json lists up to 1,000)")


def main():  # console_scripts entry point
    cli(prog_name=os.path.basename(sys.argv[0]).removesuffix(".py") or "sendjobs")


if __name__ == "__main__":
    main()
