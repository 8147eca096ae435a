"""CLI error catalogue: bad invocations of both tools end with the right exit code, one clear
line on stderr (``prog: error: ...``) and never a traceback.

Exit codes: 2 for usage errors (click's convention), 1 for everything found at run time.
Cases that would talk to AWS run with no endpoint only where the tool must stop before any
request leaves the machine (bad region, no credentials); everything else uses the local endpoint.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from testing.helpers import REGION, ROOT, list_keys, run_tool, unique

pytestmark = pytest.mark.e2e


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def base_env(tmp_path):
    """A clean environment: no endpoint, no credentials, no instance metadata lookups."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GETJOBS_"))}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-creds"),
               AWS_EC2_METADATA_DISABLED="true", XDG_STATE_HOME=str(tmp_path / "state"), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def layout(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.txt").write_text("a\n")
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "work").mkdir()
    return tmp_path


CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# (id, tool, argv (with {data} {file} {work} {bucket} {queue} placeholders), env extras, exit code, stderr words)
# env extras: "creds" = fake keys, "endpoint" = the local endpoint, "down" = a closed loopback port.
CASES = [
    ("send-missing-directory", "sendjobs", ["{tmp}/nope", "b-x", "in/", "out/", "q", REGION], [], 2, ["does not exist"]),
    ("send-file-not-directory", "sendjobs", ["{file}", "b-x", "in/", "out/", "q", REGION], [], 2, ["is a file"]),
    ("send-malformed-region", "sendjobs", ["{data}", "b-x", "in/", "out/", "q", "not a region"], ["creds"], 1,
     ["invalid AWS region", "not a region"]),
    ("send-no-region", "sendjobs", ["{data}", "b-x", "in/", "out/", "q"], ["creds"], 1, ["no AWS region"]),
    ("send-no-credentials", "sendjobs", ["{data}", "b-x", "in/", "out/", "q", REGION], [], 1, ["no AWS credentials"]),
    ("send-missing-bucket", "sendjobs", ["{data}", "{nobucket}", "in/", "out/", "{queue}", REGION], ["endpoint"], 1,
     ["bucket", "does not exist"]),
    ("send-missing-queue", "sendjobs", ["{data}", "{bucket}", "in/", "out/", "{noqueue}", REGION], ["endpoint"], 1,
     ["queue", "does not exist"]),
    ("send-endpoint-down", "sendjobs", ["{data}", "b-x", "in/", "out/", "q", REGION], ["creds", "down"], 1,
     ["cannot reach the endpoint"]),
    ("send-concurrency-zero", "sendjobs", ["--concurrency", "0", "{data}", "b-x", "in/", "out/", "q", REGION], [], 2,
     ["--concurrency"]),
    ("send-concurrency-text", "sendjobs", ["--concurrency", "many", "{data}", "b-x", "in/", "out/", "q", REGION], [], 2,
     ["--concurrency"]),
    ("send-unknown-option", "sendjobs", ["--bogus", "{data}", "b-x", "in/", "out/", "q", REGION], [], 2, ["--bogus"]),
    ("send-too-few-arguments", "sendjobs", ["{data}", "b-x"], [], 2, ["missing argument"]),
    ("send-state-dir-is-a-file", "sendjobs", ["--state-dir", "{file}", "{data}", "b-x", "in/", "out/", "q", REGION],
     ["creds"], 2, ["--state-dir"]),
    ("get-missing-command", "getjobs", ["{work}", ".out", "q", REGION], [], 2, ["missing COMMAND"]),
    ("get-handler-and-command", "getjobs", ["--handler", "os.path:join", "{work}", ".out", "q", REGION, "cp"], [], 2,
     ["not both"]),
    ("get-bad-handler", "getjobs", ["--handler", "no_such_module_x:f", "{work}", ".out", "q", REGION], [], 2,
     ["--handler"]),
    ("get-work-dir-is-a-file", "getjobs", ["{file}", ".out", "q", REGION, "cp"], [], 2, ["WORK_DIR"]),
    ("get-bad-region", "getjobs", ["{work}", ".out", "q", "Mars-9", "cp"], ["creds"], 1, ["invalid AWS region"]),
    ("get-no-credentials", "getjobs", ["{work}", ".out", "q", REGION, "cp"], [], 1, ["no AWS credentials"]),
    ("get-missing-queue", "getjobs", ["--wait-time", "0", "{work}", ".out", "{noqueue}", REGION, "cp"], ["endpoint"], 1,
     ["queue", "does not exist"]),
    ("get-endpoint-down", "getjobs", ["{work}", ".out", "q", REGION, "cp"], ["creds", "down"], 1,
     ["cannot reach the endpoint"]),
    ("get-visibility-too-small", "getjobs", ["--visibility-timeout", "2", "{work}", ".out", "q", REGION, "cp"], [], 2,
     ["--visibility-timeout"]),
    ("get-negative-timeout", "getjobs", ["--job-timeout", "-1", "{work}", ".out", "q", REGION, "cp"], [], 2,
     ["--job-timeout"]),
    ("get-bad-log-format", "getjobs", ["--log-format", "xml", "{work}", ".out", "q", REGION, "cp"], [], 2,
     ["--log-format"]),
    ("get-wait-time-too-long", "getjobs", ["--wait-time", "21", "{work}", ".out", "q", REGION, "cp"], [], 2,
     ["--wait-time"]),
    ("get-heartbeat-vs-visibility", "getjobs", ["--visibility-timeout", "10", "--heartbeat", "9", "--wait-time", "0",
                                                "{work}", ".out", "{queue}", REGION, "cp"], ["endpoint"], 1,
     ["heartbeat"]),
    ("get-bad-env-option", "getjobs", ["{work}", ".out", "q", REGION, "cp"], ["env-concurrency"], 2,
     ["concurrency"]),
]


@pytest.fixture(scope="module")
def real(endpoint):
    """One bucket and queue on the local endpoint for the cases that need them to exist."""
    import boto3
    from filejobs.ops import resources
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    bucket, queue = unique("b"), unique("q")
    resources.create_all(s3, sqs, bucket=bucket, queue=queue, region=REGION)
    return {"bucket": bucket, "queue": queue, "endpoint": endpoint, "s3": s3}


def _check_one_line(proc: subprocess.CompletedProcess, tool: str, code: int, words: list[str]) -> None:
    err = proc.stderr
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code, (proc.returncode, err)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith(f"{tool}: error: "), lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), (w, lines[0])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_invocation(case, base_env, layout, real):
    name, tool, argv, extras, code, words = case
    env = dict(base_env)
    if "creds" in extras:
        env.update(CREDS)
    if "endpoint" in extras:
        env.update(CREDS, AWS_ENDPOINT_URL=real["endpoint"])
    if "down" in extras:
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_closed_port()}"
    if "env-concurrency" in extras:
        env["GETJOBS_CONCURRENCY"] = "lots"
    values = {"tmp": str(layout), "data": str(layout / "data"), "file": str(layout / "afile"),
              "work": str(layout / "work"), "bucket": real["bucket"], "queue": real["queue"],
              "nobucket": unique("nob"), "noqueue": unique("noq")}
    args = [a.format(**values) for a in argv]
    started = time.monotonic()
    proc = run_tool(tool, *args, env=env, timeout=60)
    elapsed = time.monotonic() - started
    _check_one_line(proc, tool, code, words)
    assert elapsed < 30, f"{name} took {elapsed:.1f}s to fail"
    if name == "send-missing-bucket":
        assert proc.stdout == ""


def test_region_from_aws_region_env(base_env, layout, real):
    """sendjobs' help says REGION falls back to $AWS_REGION (and `jobctl local` prints
    `export AWS_REGION=...`): leaving REGION out with AWS_REGION set must work."""
    env = dict(base_env, **CREDS, AWS_ENDPOINT_URL=real["endpoint"], AWS_REGION=REGION)
    proc = run_tool("sendjobs", layout / "data", real["bucket"], unique("in") + "/", "out/", real["queue"], "-q",
                    env=env, timeout=60)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 0, proc.stderr


needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv not installed")


@needs_setpriv
def test_unreadable_file_is_named_once(base_env, layout, real):
    """An unreadable file (as root: CAP_DAC_OVERRIDE dropped with setpriv so mode 000 bites):
    exit 1, the readable files are still sent, and with --quiet the failure is one line."""
    data = layout / "data"
    secret = data / "secret.txt"
    secret.write_text("private\n")
    secret.chmod(0)
    env = dict(base_env, **CREDS, AWS_ENDPOINT_URL=real["endpoint"])
    prefix = unique("in") + "/"
    argv = ["--quiet", str(data), real["bucket"], prefix, "out/", real["queue"], REGION]
    drop = "-dac_override,-dac_read_search"
    if os.geteuid() == 0:
        cmd = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", sys.executable,
               os.path.join(ROOT, "sendjobs.py")] + argv
    else:
        cmd = [sys.executable, os.path.join(ROOT, "sendjobs.py")] + argv
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert list_keys(real["s3"], real["bucket"], prefix) == [prefix + "a.txt"]
    mentions = [line for line in proc.stderr.splitlines() if "secret.txt" in line]
    assert mentions and all("Permission denied" in m for m in mentions), proc.stderr
    assert len(mentions) == 1, f"--quiet should name the failed file once, got:\n{proc.stderr}"


@pytest.mark.parametrize("argv", [["sendjobs.py", "--help"], ["sendjobs.py", "--concurrency", "0", "d", "b", "i/", "o/",
                                                               "q", REGION],
                                  ["getjobs.py", "--version"], ["getjobs.py", "--wait-time", "21", "w", ".out", "q",
                                                                REGION, "cp"],
                                  ["-m", "filejobs.cli", "--help"], ["-m", "filejobs.cli", "status"]])
def test_help_version_and_usage_errors_answer_without_loading_boto3(argv, base_env):
    """boto3 costs more to import than all the rest of a tool: it is loaded when the first session
    is made, so a question about the tool or a mistyped option is answered at once."""
    script = [os.path.join(ROOT, argv[0]), *argv[1:]] if argv[0].endswith(".py") else argv
    proc = subprocess.run([sys.executable, "-X", "importtime", *script], env=base_env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert proc.returncode in (0, 2) and "click" in imported, proc.stderr[-2000:]
    assert not {"boto3", "botocore.session", "s3transfer"} & imported, proc.stderr[-2000:]
