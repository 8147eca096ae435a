"""Helpers shared by tests/ and bench/: isolation from real AWS, unique names, running the CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "us-east-1"


def isolate_aws(monkeypatch, tmp_path) -> None:
    """No test can reach a real account: fake keys, no profile, no user config, a private state
    folder. Module-scoped fixtures call it with their own ``pytest.MonkeyPatch.context()``."""
    for var in list(os.environ):
        if var.startswith(("AWS_", "GETJOBS_")):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


_loader = None


def session(region: str = REGION, **kwargs):
    """A boto3 session whose service models are read once per process: each new session re-reads
    them (about 0.2 s for the six services the operator commands use), which made up a good part
    of the suite's time. Credentials and configuration are still resolved per session."""
    global _loader
    import boto3
    import botocore.loaders
    import botocore.session

    if _loader is None:
        _loader = botocore.loaders.Loader()
    core = botocore.session.Session()
    core.register_component("data_loader", _loader)
    return boto3.Session(botocore_session=core, region_name=region, **kwargs)


def vanish_during_walk(monkeypatch, rel: str) -> None:
    """sendjobs' walk yields ``rel`` and then the file is gone, as if deleted between the walk and
    its upload."""
    from filejobs.send import sender

    real_walk = sender.walk

    def walk_then_delete(*args, **kw):
        for f in real_walk(*args, **kw):
            if f.rel == rel:
                os.unlink(f.path)
            yield f

    monkeypatch.setattr(sender, "walk", walk_then_delete)


def cli_runner():
    """click's CliRunner with stderr apart from stdout: the default from click 8.2, an option before
    (click 8.1 is what Python 3.9 gets)."""
    import inspect

    from click.testing import CliRunner

    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


def worker_python() -> str | None:
    """An interpreter the workers' wheelhouse installs on (its wheels need Python >= 3.10; the
    workers run 3.12): this one, or another on PATH when the tests run on 3.9."""
    import shutil

    if sys.version_info >= (3, 10):
        return sys.executable
    for name in ("python3.12", "python3.13", "python3.11", "python3.10"):
        found = shutil.which(name)  # a pyenv shim is found but may not run: ask it
        if found and subprocess.run([found, "-c", "import venv"], capture_output=True).returncode == 0:
            return found
    return None


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_tool(tool: str, *args, env: dict, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``./sendjobs.py``/``./getjobs.py`` (or ``jobctl``) as a user would, as a subprocess."""
    argv = ([sys.executable, "-m", "filejobs.cli"] if tool == "jobctl"
            else [sys.executable, os.path.join(ROOT, f"{tool}.py")])
    return subprocess.run(argv + [str(a) for a in args], env=env, cwd=kwargs.pop("cwd", ROOT), capture_output=True,
                          text=True, timeout=timeout, **kwargs)


@contextmanager
def stalling(env: dict, *, after_requests: int):
    """``(proxy, env)``: the endpoint of ``env`` behind a proxy that holds every request after the
    first ``after_requests`` until ``proxy.release()``. A client run with the new ``env`` can be
    stopped (Ctrl-C, SIGKILL) while it is certainly mid-run, however fast the machine: waiting for
    "30 jobs queued" raced with a sender that finished all 200 files before the signal came."""
    from testing.faultproxy import FaultProxy

    with FaultProxy(env["AWS_ENDPOINT_URL"], observe=False, hold_after=after_requests) as proxy:
        try:
            yield proxy, dict(env, AWS_ENDPOINT_URL=proxy.url)
        finally:
            proxy.release()


def list_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def drain_queue(sqs, url: str, *, max_rounds: int = 5) -> list[dict]:
    """Receive (without deleting) what is visible in a queue."""
    got = []
    for _ in range(max_rounds):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            break
        got += batch
    return got


class RecordingLog:
    """An event log for tests: keeps ``(event, fields)`` and metric names instead of printing."""

    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.metrics: list[tuple[str, float | None]] = []

    def __call__(self, event: str, **fields) -> None:
        self.events.append((event, fields))

    def metric(self, name: str, *, duration_s: float | None = None, **dimensions: str) -> None:
        self.metrics.append((name, duration_s))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]

    def of(self, event: str) -> list[dict]:
        return [f for e, f in self.events if e == event]


def endpoint_kind(url: str) -> str:
    """moto, localstack or other, from what the endpoint answers."""
    for kind, path, check in (("localstack", "/_localstack/health", lambda body: "services" in json.loads(body)),
                              ("moto", "/moto-api/data.json", lambda body: isinstance(json.loads(body), dict))):
        try:
            with urllib.request.urlopen(url.rstrip("/") + path, timeout=30) as answer:
                if answer.status == 200 and check(answer.read()):
                    return kind
        except (urllib.error.URLError, ValueError, OSError):
            continue
    return "other"
