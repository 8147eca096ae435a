"""What the three CLIs share: one-line errors, logging to stderr, AWS target options."""

from __future__ import annotations

import os
import sys

import click

from . import aws


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _OneLineErrors:
    """Every error a user can cause ends as ``prog: error: <one line>`` with a non-zero exit:
    usage errors exit 2 (click's convention), domain errors 1, Ctrl-C 130. Never a traceback
    (set FILEJOBS_DEBUG=1 to see one for an unexpected error)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        prog = prog_name or self.name
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{prog} --help')"
            click.echo(f"{prog}: error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"{prog}: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo(f"{prog}: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except (aws.AwsSetupError,) as exc:
            click.echo(f"{prog}: error: {_one_line(exc)}", err=True)
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - the promise is "never a traceback"
            if os.environ.get("FILEJOBS_DEBUG"):
                raise
            click.echo(f"{prog}: error: {_one_line(aws.describe(exc))}", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class Command(_OneLineErrors, click.Command):
    pass


class Group(_OneLineErrors, click.Group):
    command_class = click.Command


class Fail(click.ClickException):
    """A domain error: one line, exit 1."""

    exit_code = 1


def version_option(fn):
    """``--version``: the package version, the same for the three tools."""
    from . import __version__

    return click.version_option(__version__, "--version", message="%(prog)s (filejobs) %(version)s")(fn)


def aws_options(fn):
    """--endpoint-url and --profile, the same on every tool."""
    fn = click.option("--endpoint-url", metavar="URL", default=None,
                      help="Send requests to this endpoint instead of AWS (a local endpoint such as moto). "
                           "Default: $AWS_ENDPOINT_URL.")(fn)
    fn = click.option("--profile", metavar="NAME", default=None,
                      help="AWS named profile (default: $AWS_PROFILE or the default chain).")(fn)
    return fn


def connect(target: aws.Target, **kwargs) -> aws.Clients:
    """Clients for ``target``; a set-up problem is one line (exit 1) and a region this botocore does
    not know yet is only a warning (AWS opens regions faster than old installs learn of them)."""
    try:
        clients = aws.make_clients(target, **kwargs)
    except aws.AwsSetupError as exc:
        raise Fail(str(exc)) from None
    region = clients.session.region_name
    if not target.resolved_endpoint and not aws.is_known_region(clients.session, region):
        click.echo(f"warning: region {region!r} is not in this botocore's endpoint list; trying it anyway", err=True)
    return clients


def prefix(value: str) -> str:
    """Prefixes are used as given ("input/"), like the original tool; a leading "/" is dropped
    because S3 keys starting with "/" are almost never what was meant."""
    return value.lstrip("/")
