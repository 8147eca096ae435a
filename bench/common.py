"""Shared pieces of the benchmarks: local endpoints, child processes with peak RSS, test data.

Endpoints
  * moto: ``moto_server -H 127.0.0.1`` in its own process (never in the benchmark's process, so
    the server does not share the client's GIL).
  * fauxqs 1.9.2 (``npm install fauxqs@1.9.2`` into bench/.fauxqs): it listens on all interfaces,
    so it is only started inside an isolated network namespace (``run_all.py`` re-executes itself
    under ``unshare --net``); ``fauxqs_endpoint`` refuses to start otherwise.

Every child is started and stopped by PID; nothing is killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
#: The checkout whose sendjobs.py/getjobs.py are measured (another one, e.g. a patched copy, with
#: FILEJOBS_ROOT=...; the harness itself always comes from this folder).
ROOT = os.path.abspath(os.environ.get("FILEJOBS_ROOT") or os.path.dirname(HERE))
PY = sys.executable
REGION = "us-east-1"
FAUXQS_DIR = os.path.join(HERE, ".fauxqs")
FAUXQS_APP = os.path.join(FAUXQS_DIR, "node_modules", "fauxqs", "dist", "app.js")
NETNS_FLAG = "FILEJOBS_BENCH_NETNS"

sys.path.insert(0, ROOT)

import counting  # noqa: E402  (bench/, next to this file)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"endpoint process exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"endpoint did not open port {port} in {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Endpoint:
    name: str
    url: str
    version: str
    proc: subprocess.Popen = field(repr=False, default=None)


@contextlib.contextmanager
def moto_endpoint():
    import moto

    port = free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(PY), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_port(port, proc)
        yield Endpoint("moto", f"http://127.0.0.1:{port}", f"moto {moto.__version__} (server mode)", proc)
    finally:
        _stop(proc)


def in_netns() -> bool:
    return os.environ.get(NETNS_FLAG) == "1"


def fauxqs_available() -> bool:
    return os.path.exists(FAUXQS_APP) and shutil.which("node") is not None


@contextlib.contextmanager
def fauxqs_endpoint():
    if not in_netns():
        raise RuntimeError("fauxqs listens on all interfaces: run it only inside `unshare --net` (see run_all.py)")
    if not fauxqs_available():
        raise RuntimeError("fauxqs is not installed: (cd bench/.fauxqs && npm install fauxqs@1.9.2)")
    with open(os.path.join(FAUXQS_DIR, "node_modules", "fauxqs", "package.json"), encoding="utf-8") as fh:
        version = json.load(fh)["version"]
    port = free_port()
    # The package's cli.js forces per-request JSON logging, which costs the server CPU we want to
    # leave to the benchmark; start it through the package's own API with the logger off.
    launcher = (f"import {{ startFauxqs }} from {json.dumps('file://' + FAUXQS_APP)};"
                f"await startFauxqs({{ port: {port}, logger: false }});")
    proc = subprocess.Popen(["node", "--input-type=module", "-e", launcher], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=FAUXQS_DIR)
    try:
        wait_port(port, proc)
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        yield Endpoint("fauxqs", f"http://127.0.0.1:{port}", f"fauxqs {version} (node {node})", proc)
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- clients and data


def bench_env(endpoint: Endpoint, state_dir: str, **extra) -> dict:
    """Environment of a CLI child: loopback endpoint, throwaway credentials, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GETJOBS_"))}
    env.update({"AWS_ENDPOINT_URL": endpoint.url, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "XDG_STATE_HOME": state_dir, "PYTHONPATH": HERE, "PYTHONDONTWRITEBYTECODE": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def clients_for(endpoint: Endpoint, pool: int = 64):
    from filejobs import aws

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    return aws.make_clients(aws.Target(region=REGION, endpoint_url=endpoint.url), max_pool_connections=pool)


def make_bucket(s3) -> str:
    bucket = unique("bench")
    s3.create_bucket(Bucket=bucket)
    return bucket


def make_queue(sqs, visibility_s: int = 600) -> tuple[str, str]:
    name = unique("benchq")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility_s)})["QueueUrl"]
    return name, url


def make_files(directory: str, count: int, size: int) -> str:
    """``count`` distinct files of ``size`` bytes, 1,000 per subdirectory."""
    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        sub = os.path.join(directory, f"d{i // 1000:03d}")
        if i % 1000 == 0:
            os.makedirs(sub, exist_ok=True)
        head = f"file {i}\n".encode()
        with open(os.path.join(sub, f"f{i:06d}.dat"), "wb") as fh:
            fh.write(head + os.urandom(max(0, size - len(head))) if size >= len(head) else head[:size])
    return directory


def make_flat_files(directory: str, count: int, size: int) -> str:
    """Like ``make_files`` but in one directory: the original sendjobs listed non-recursively."""
    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        with open(os.path.join(directory, f"f{i:06d}.dat"), "wb") as fh:
            fh.write(os.urandom(size))
    return directory


def sparse_file(path: str, size: int) -> str:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


# --------------------------------------------------------------------------- child processes


@dataclass
class ChildRun:
    argv: list
    rc: int
    wall_s: float
    #: Peak RSS of the child's process tree: its own high-water mark plus that of every helper
    #: process it started (see launcher.py). For a single-process tool, the exact ``ru_maxrss``.
    maxrss_mib: float
    cpu_s: float
    counts: dict | None
    stdout: str
    stderr: str
    #: Voluntary + involuntary context switches (``wait4``), the child and its waited-for children.
    switches: int = 0
    processes: int = 1
    #: CPU of the child process itself (sampled from /proc; the rest of ``cpu_s`` is its helpers').
    own_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return (self.counts or {}).get("requests", 0)

    @property
    def active_s(self) -> float:
        return (self.counts or {}).get("active_s") or self.wall_s


class Launcher:
    """The launcher process (launcher.py): a fresh small interpreter that forks every child, so
    the children's peak RSS is not floored by the harness's own (see launcher.py)."""

    _proc: subprocess.Popen | None = None

    @classmethod
    def run(cls, request: dict) -> dict:
        if cls._proc is None or cls._proc.poll() is not None:
            cls._proc = subprocess.Popen([PY, "-I", "-S", os.path.join(HERE, "launcher.py")], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, bufsize=1)
        cls._proc.stdin.write(json.dumps(request) + "\n")
        cls._proc.stdin.flush()
        answer = json.loads(cls._proc.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"launcher: {answer['error']}")
        return answer


def run_child(argv: list, env: dict, *, timeout: float, instrument: bool = True, delay_ms: float = 0,
              cwd: str = ROOT) -> ChildRun:
    """Run a CLI as a child of the launcher, which waits for it with ``wait4`` (CPU of the child and
    its waited-for children, context switches, peak RSS), optionally through ``instrument.py``
    (request counts, latency)."""
    counts_file = None
    env = dict(env)
    if instrument:
        fd, counts_file = tempfile.mkstemp(prefix="bench-counts-", suffix=".json")
        os.close(fd)
        env["BENCH_COUNTS_FILE"] = counts_file
        env["BENCH_DELAY_MS"] = str(delay_ms)
        argv = [PY, os.path.join(HERE, "instrument.py")] + list(argv)
    argv = [str(a) for a in argv]
    if not os.path.isabs(argv[0]):
        argv[0] = shutil.which(argv[0]) or argv[0]
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        r = Launcher.run({"argv": argv, "env": env, "cwd": cwd, "stdout": out, "stderr": err, "timeout": timeout})
        with open(out, "rb") as fh:
            stdout = fh.read().decode("utf-8", "replace")
        with open(err, "rb") as fh:
            stderr = fh.read().decode("utf-8", "replace")
    counts = None
    if counts_file:
        counts = counting.merge(counts_file)
        os.unlink(counts_file)
    peak_kib = r["maxrss_kib"] if r["processes"] <= 1 else r["child_hwm_kib"] + r["others_hwm_kib"]
    return ChildRun(argv=argv, rc=r["rc"], wall_s=r["wall_s"], maxrss_mib=peak_kib / 1024,
                    cpu_s=r["utime_s"] + r["stime_s"], counts=counts, stdout=stdout, stderr=stderr,
                    switches=r["nvcsw"] + r["nivcsw"], processes=max(1, r["processes"]),
                    own_cpu_s=r["child_cpu_sampled_s"] if r["processes"] > 1 else r["utime_s"] + r["stime_s"])


def check(run: ChildRun, what: str) -> ChildRun:
    if run.rc != 0:
        tail = "\n".join(run.stderr.splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {run.rc}):\n{tail}")
    return run


def count_keys(s3, bucket: str, prefix: str) -> int:
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += len(page.get("Contents", []))
    return n


def queue_depth(sqs, url: str) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                              "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def aws_cli() -> str | None:
    """awscli v1 is a baseline tool, not a project dependency: the venv's if present, else the system's."""
    venv_aws = os.path.join(os.path.dirname(PY), "aws")
    if os.path.exists(venv_aws):
        return venv_aws
    found = shutil.which("aws")
    if found and "/shims/" in found and shutil.which("pyenv"):
        # A pyenv shim is a shell script that runs pyenv before the CLI: it would add its own
        # processes and CPU to the baseline's figures. Measure the CLI itself.
        real = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True).stdout.strip()
        found = real or found
    return found


def reexec_in_netns() -> None:
    """Re-run this process inside a new, empty network namespace (loopback only), where fauxqs's
    all-interfaces listener is unreachable from outside and nothing reaches the network. Root or
    user namespaces are needed (``unshare --net``)."""
    if in_netns():
        return
    unshare = shutil.which("unshare")
    if not unshare:
        raise RuntimeError("unshare (util-linux) is needed to run fauxqs in an isolated network namespace")
    os.environ[NETNS_FLAG] = "1"
    argv = [unshare, "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", PY] + sys.argv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(unshare, argv)
