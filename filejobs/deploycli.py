"""The operator commands of jobctl: ``deploy``, ``destroy`` and ``simulate`` (thin click layers over
``filejobs.ops.deploy``, ``destroy`` and ``simulate``).

Their template options are made from the shipped template's Parameters when a command first needs
them, so ``import filejobs.cli`` needs no PyYAML (the ``deploy`` extra): without it ``jobctl status``
works and these commands say, in one line, what to install. Tests inject the AWS clients, the clock,
the sleeper and the artifact builder through ``ctx.obj`` (``{"services": region -> Services,
"build_artifact": ...}``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile

import click

from . import aws
from .clitools import Command, Fail, aws_options, connect
from .ops.cfn import OpsError, Services


def _fail(exc: BaseException) -> click.ClickException:
    from .ops.cfn import explain

    err = explain(exc)
    out = Fail(str(err))
    out.exit_code = err.exit_code
    return out


def _template():
    from .ops.template import TemplateError, load_template

    try:
        return load_template()
    except TemplateError as exc:
        raise Fail(str(exc)) from None


class _TemplateOption(click.Option):
    """An option that is a template parameter (listed under its ParameterGroups label in --help)."""

    def __init__(self, *args, spec, **kwargs):
        super().__init__(*args, **kwargs)
        self.spec = spec


class _Checked(click.ParamType):
    """A value CloudFormation would accept for one parameter (its pattern, range or list form)."""

    def __init__(self, spec):
        self.spec = spec
        self.name = "number" if spec.type == "Number" else "list" if spec.is_list else "text"

    def convert(self, value, param, ctx):
        try:
            return self.spec.check(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _option(spec) -> click.Option:
    choices = click.Choice(list(spec.allowed_values)) if spec.allowed_values else _Checked(spec)
    metavar = None if spec.allowed_values else "N" if spec.type == "Number" else "A,B,..." if spec.is_list else "TEXT"
    # No click default: an option not given is not sent, so an update keeps the stack's value.
    shown = f"  [default: {spec.default}]" if spec.default not in (None, "") else ""
    return _TemplateOption([spec.option, spec.name], spec=spec, type=choices, default=None, metavar=metavar,
                           help=spec.help() + shown)


class TemplateCommand(Command):
    """A command whose options include template parameters, made when first needed."""

    def __init__(self, *args, parameters=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._select = parameters
        self._made = False

    def get_params(self, ctx):
        if not self._made:
            from .ops.stackparams import param_specs

            self.params.extend(_option(s) for s in self._select(param_specs(_template())))
            self._made = True
        return super().get_params(ctx)

    def format_options(self, ctx, formatter):
        params = self.get_params(ctx)
        own = [p.get_help_record(ctx) for p in params
               if isinstance(p, click.Option) and not isinstance(p, _TemplateOption)]
        with formatter.section("Options"):
            formatter.write_dl([r for r in own if r])
        groups: dict[str, list] = {}
        for p in params:
            if isinstance(p, _TemplateOption):
                groups.setdefault(p.spec.group, []).append(p.get_help_record(ctx))
        for label, records in groups.items():
            with formatter.section(f"Template parameters: {label}"):
                formatter.write_dl(records)


def template_values(kwargs: dict) -> dict:
    """The template parameters given on the command line, by the template's names."""
    return {k: v for k, v in kwargs.items() if k[:1].isupper() and v is not None}


def _services(ctx, region, endpoint_url, profile) -> Services:
    injected = ctx.obj.get("services") if isinstance(ctx.obj, dict) else None
    if injected:
        return injected(region)
    clients = connect(aws.Target(region=region, endpoint_url=endpoint_url, profile=profile))
    return Services(cloudformation=clients.client("cloudformation"), s3=clients.s3, sqs=clients.sqs,
                    autoscaling=clients.client("autoscaling"), cloudwatch=clients.client("cloudwatch"),
                    ec2=clients.client("ec2"), region=clients.session.region_name)


def _say(line: str) -> None:
    click.echo(line, err=True)


def _confirmer(yes: bool):
    def confirm(question: str) -> bool:
        if yes:
            return True
        try:
            return click.confirm(question, default=False, err=True)
        except click.exceptions.Abort:  # no terminal (end of input): not a yes
            return False
    return confirm


def _operate(fn):
    """Run one operation; every failure is one line with its exit status."""
    from .ops.artifact import ArtifactError

    try:
        return fn()
    except (OpsError, aws.AwsSetupError) as exc:
        raise _fail(exc) from None
    except ArtifactError as exc:
        raise Fail(f"cannot build the worker artifact: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - botocore's, as one line (explain)
        if exc.__class__.__module__.startswith(("botocore", "boto3")):
            raise _fail(exc) from None
        raise


# --------------------------------------------------------------------------- deploy

_ARCHIVE_RE = re.compile(r"^[A-Za-z0-9._+-]+\.tar\.gz$")


def _artifact_builder(ctx, path: str | None, workdir: str):
    injected = ctx.obj.get("build_artifact") if isinstance(ctx.obj, dict) else None
    if injected:
        return injected
    from .ops import artifact

    if path:
        return lambda: artifact.Artifact(path=path, key=f"code/{os.path.basename(path)}",
                                         sha256=artifact.sha256_of(path))
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "filejobs", "wheels")

    def build():
        _say("building the worker artifact (the pinned wheelhouse) from the installed package ...")
        return artifact.build_wheelhouse(workdir, cache_dir=cache)
    return build


def _check_archive(ctx, param, value):
    if value and not _ARCHIVE_RE.match(os.path.basename(value)):
        raise click.BadParameter("the archive's name must be letters, digits and ._+- ending in .tar.gz")
    return value


@click.command(cls=TemplateCommand, parameters=lambda specs: [s for s in specs if s.name != "CodeKey"])
@click.argument("stack")
@click.option("--region", default=None, help="Default: $AWS_REGION or the profile's.")
@aws_options
@click.option("--yes", "-y", is_flag=True, help="Apply without asking (the plan or change set is still shown).")
@click.option("--artifact", "artifact_path", type=click.Path(exists=True, dir_okay=False), callback=_check_archive,
              default=None, help="Upload this wheelhouse archive (python -m filejobs.ops.artifact) instead of "
                                 "building one from the installed package.")
@click.option("--json", "as_json", is_flag=True, help="Print the stack's settings and commands as JSON on stdout.")
@click.pass_context
def deploy(ctx, stack, region, endpoint_url, profile, yes, artifact_path, as_json, **parameters):
    """Create or update STACK from the shipped template and upload the worker artifact.

    A new stack is shown (parameters and resources) before it is created; an existing one gets a
    change set, shown before it is applied; a run that changes nothing says so. Options not given
    keep the stack's current values (or the template's defaults, shown, for a new stack); the
    default network is the region's default VPC. Prints the sendjobs command, the workers'
    settings, the status command and the dashboard URL.

    Exit status: 3 no credentials, 4 a missing permission, 5 the stack rolled back, 6 the stack
    cannot be updated in its state.
    """
    from .ops import deploy as ops

    svc = _services(ctx, region, endpoint_url, profile)
    with tempfile.TemporaryDirectory(prefix="filejobs-artifact-") as workdir:
        request = ops.DeployRequest(stack=stack, parameters=template_values(parameters))
        result = _operate(lambda: ops.deploy(svc, request, template=_template(),
                                             build_artifact=_artifact_builder(ctx, artifact_path, workdir),
                                             confirm=_confirmer(yes), say=_say))
    info = ops.usage(result.stack, svc.region)
    if as_json:
        click.echo(json.dumps({**info, "action": result.action, "artifact_uploaded": result.artifact_uploaded},
                              indent=2))
    else:
        click.echo("\n".join(ops.usage_lines(info)))
    return 0


# --------------------------------------------------------------------------- destroy


@click.command(cls=Command)
@click.argument("stack")
@click.option("--region", default=None, help="Default: $AWS_REGION or the profile's.")
@aws_options
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (what will be deleted is still shown).")
@click.option("--keep-bucket", is_flag=True, help="Keep the bucket and its data (inputs, outputs, error records).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Most time to wait for running jobs to finish or be released [default: the stack's "
                   "GraceSeconds + VisibilityTimeout + 120 s].")
@click.option("--force", is_flag=True, help="Do not wait for running jobs: delete at once (jobs still running "
                                            "are cut; their outputs may be lost).")
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON on stdout.")
@click.pass_context
def destroy(ctx, stack, region, endpoint_url, profile, yes, keep_bucket, timeout_s, force, as_json):
    """Tear STACK down: stop new work, let running jobs finish or be released, purge the queues,
    empty and delete the bucket it created, delete the stack.

    Shows what will be deleted and asks first. Nothing is deleted before the workers are drained
    (unless --force); every step can be repeated, so running this again after an interruption
    finishes the job (also for a bucket a plain delete-stack left behind).

    Exit status: 3 no credentials, 4 a missing permission, 5 the stack could not be deleted,
    6 the stack is busy (in progress), 7 the workers did not drain within --timeout.
    """
    from .ops import destroy as ops

    svc = _services(ctx, region, endpoint_url, profile)
    request = ops.DestroyRequest(stack=stack, keep_bucket=keep_bucket, force=force, timeout_s=timeout_s)
    result = _operate(lambda: ops.destroy(svc, request, confirm=_confirmer(yes), say=_say))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif result["deleted"]:
        bucket = result.get("bucket")
        tail = f"; bucket {bucket} {'deleted' if result['bucket_deleted'] else 'kept'}" if bucket else ""
        click.echo(f"destroyed {result['stack']}{tail}")
    return 0


def register(group: click.Group) -> None:
    """Add deploy, destroy and simulate to jobctl."""
    from .simulatecli import simulate

    for command in (deploy, destroy, simulate):
        group.add_command(command)
