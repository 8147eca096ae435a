"""A moto account for the operator commands (``jobctl deploy``/``destroy``): their clients recorded
(``testing.awsstub.Calls``), a fake clock whose sleeps can make things happen, and the CLI run with
click's CliRunner, the clients injected through ``ctx.obj``."""

from __future__ import annotations

import copy
import gzip
import io
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable


from filejobs import aws
from filejobs import cli as jobctl
from filejobs.ops.cfn import Services
from testing.awsstub import Calls
from testing.helpers import REGION, cli_runner
from testing import helpers

SERVICES = ("cloudformation", "s3", "sqs", "autoscaling", "cloudwatch", "ec2")


@dataclass
class FakeClock:
    """Time that moves only when slept; ``on_sleep(n)`` runs at the n-th sleep (a worker finishing
    a job, a hook completing)."""

    t: float = 0.0
    sleeps: list = field(default_factory=list)
    on_sleep: Callable[[int], None] | None = None

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.sleeps.append(seconds)
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


@dataclass
class OpsEnv:
    session: object
    calls: Calls
    clients: dict  # recorded, possibly answered: what the commands use
    plain: dict  # the same services, not recorded: what a test uses to look or to act
    clock: FakeClock

    def services(self, region: str | None = None) -> Services:
        return Services(**self.clients, region=REGION, clock=self.clock.now, sleep=self.clock.sleep)

    def jobctl(self, *args, input: str | None = None):
        """Run ``jobctl ARGS`` in-process; ``result.exit_code``, ``.stdout``, ``.stderr``."""
        return cli_runner().invoke(jobctl.cli, [str(a) for a in args], obj={"services": self.services},
                                  prog_name="jobctl", input=input)


_parsed: dict[str, object] = {}


def _remember_moto_template_parses() -> None:
    """moto reads a stack's template with PyYAML's pure-Python loader on every create, update,
    change set and comparison (0.2 s for ours; about 20 CPU-seconds of the deploy and destroy
    tests). Its result depends on the text alone, so each text is parsed once per process and
    handed out as a copy moto may change."""
    from moto.cloudformation import models

    if getattr(models.Stack.parse_template, "_remembered", False):
        return
    parse = models.Stack.parse_template

    def parse_template(template: str):
        if template not in _parsed:
            _parsed[template] = parse(template)
        return copy.deepcopy(_parsed[template])

    def change_set_parse(self) -> None:  # moto's ChangeSet parses the same way (YAML, else JSON)
        self.template_dict = parse_template(self.template)

    parse_template._remembered = True
    models.Stack.parse_template = staticmethod(parse_template)
    models.ChangeSet._parse_template = change_set_parse


class _OnFirstUse(dict):
    """Clients made when a test first asks for them: most tests look at two services of six."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, name):
        self[name] = self._make(name)
        return self[name]


@contextmanager
def ops_env():
    from moto import mock_aws

    _remember_moto_template_parses()
    helpers.one_moto_key_pair()
    with mock_aws():
        session = helpers.session(REGION)
        calls = Calls()
        clients = {name: calls.attach(session.client(name, config=aws.client_config())) for name in SERVICES}
        plain = _OnFirstUse(session.client)
        yield OpsEnv(session, calls, clients, plain, FakeClock())


def write_artifact(path: str, payload: bytes = b"wheels") -> str:
    """A small stand-in for the wheelhouse archive (``--artifact``), byte-identical for one payload."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("wheelhouse/requirements.txt")
        info.size, info.mtime = len(payload), 0
        tar.addfile(info, io.BytesIO(payload))
    return path


def error_line(result) -> str:
    """A CLI failure's line: the only ``jobctl: error:`` line, the last on stderr, no traceback anywhere."""
    # click before 8.2 echoes prompt answers to stdout, so the error may follow a prompt on its line.
    lines = [line[line.find("jobctl: error: "):] if "jobctl: error: " in line else line
             for line in result.stderr.strip().splitlines()]
    errors = [line for line in lines if line.startswith("jobctl: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return errors[0]
