"""Helpers shared by tests/ and bench/: isolation from real AWS, unique names, running the CLIs."""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "us-east-1"


#: moto builds its whole public AMI catalogue (thousands of images, each with random ids) whenever
#: an account's EC2 backend is first used: about 0.1 s per mock_aws test that touches EC2. No test
#: needs a real AMI (a launch template's ImageId is not looked up), so the catalogue is left out.
MOTO_EC2_LOAD_DEFAULT_AMIS = "false"


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
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", MOTO_EC2_LOAD_DEFAULT_AMIS)


def once_per_run(tmp_path_factory, name: str, compute):
    """``compute()`` once per test run, by whichever pytest-xdist worker asks first; the others wait
    for it and get a copy of its result (pickled). Without xdist, simply ``compute()``. For a
    module- or session-scoped fixture that several workers would otherwise each build in full."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return compute()
    shared = tmp_path_factory.getbasetemp().parent / f"once-{run}"  # the run's folder, above each worker's
    shared.mkdir(exist_ok=True)
    done = shared / f"{name}.pickle"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, by an exception too
        if done.exists():
            return pickle.loads(done.read_bytes())
        value = compute()
        partial = shared / f"{name}.partial"
        partial.write_bytes(pickle.dumps(value))
        partial.rename(done)
        return value


def _remember_answers(module, name: str) -> None:
    """Replace ``module.name``, a function whose answer depends on its arguments alone, by one
    that works each answer out once per process."""
    work_out = getattr(module, name)
    if getattr(work_out, "remembers_answers", False):
        return
    answers: dict = {}

    def remembered(*args):
        if args not in answers:
            answers[args] = work_out(*args)
        return answers[args]

    remembered.remembers_answers = True
    setattr(module, name, remembered)


def one_moto_key_pair() -> None:
    """moto's KMS makes a fresh RSA-2048 key pair for every key it creates, symmetric ones included
    (35 ms each; the stack has a key, and the deploy tests make dozens of stacks). No test uses the
    key material, so one pair per key spec serves them all. In-process moto (mock_aws) only."""
    from moto.kms import models

    _remember_answers(models, "generate_private_key")


def share_botocore_models() -> None:
    """Every botocore session in this process reads its service models, endpoints and partitions
    through one loader. Each new session otherwise re-reads and re-parses them (about 10 ms of JSON
    per client); the suite makes hundreds of sessions, one per CLI run through CliRunner and per
    moto test. What a session resolves from the environment (credentials, region, configuration) is
    untouched: only the read-only model files are shared."""
    import botocore.session

    _remember_answers(botocore.session, "create_loader")


def session(region: str = REGION, **kwargs):
    """A boto3 session for a test (the service models shared, ``share_botocore_models``);
    credentials and configuration are resolved per session."""
    import boto3

    share_botocore_models()
    return boto3.Session(region_name=region, **kwargs)


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
