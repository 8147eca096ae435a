#!/usr/bin/env python3
"""Chaos, fault injection and SIGTERM drain against a local endpoint; prints one table.

    python bench/chaos.py                 # the long versions (make chaos)
    python bench/chaos.py --quick         # a few seconds' worth, to try it out
    python bench/chaos.py --scenario kill --jobs 2000 --kills 40

Every scenario runs the real CLIs as processes: ``sendjobs`` submits the files (in waves, since
moto slows down as a queue gets deep), ``workers`` × ``getjobs`` process them through the
observing, fault-injecting proxy (testing/faultproxy.py) in front of moto's server, and a
seeded chaos loop signals random workers (SIGKILL, or SIGTERM for the drain scenario) and
starts a replacement each time. Each job's command appends "<job id> <worker>" to a shared log
before it works, so every execution is counted, including those cut short by a kill.

At the end it checks: every input has exactly one output with the right content (lost = 0),
nothing is left in the queue, and it counts duplicated executions, duplicate output writes (S3
writes the endpoint accepted per output key, seen by the proxy), dead-lettered messages and
redeliveries by cause — the endpoint's own duplicates (moto hands a message out twice under
concurrent receives, or again after a successful delete) apart from the tool's.

The test suite (tests/test_chaos.py, tests/test_faults.py) runs the same code with small sizes.
Everything binds to 127.0.0.1; every child is stopped by its PID; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from filejobs import aws  # noqa: E402
from filejobs.ops import resources  # noqa: E402
from testing.faultproxy import KINDS, FaultProxy  # noqa: E402
from testing.redeliveries import (ENDPOINT_AFTER_DELETE, ENDPOINT_DELETE_REFUSED, ENDPOINT_IN_FLIGHT,  # noqa: E402
                                  TOOL, classify_redeliveries)

REGION = "us-east-1"

# The job command: log the execution, take a little time, then write input + a trailer.
# `read` and `printf` are shell built-ins: no extra process per job besides `sleep`/`cat`.
COMMAND = """#!/bin/sh
IFS= read -r id < "$1"
printf '%s %s\\n' "$id" "$CHAOS_WORKER" >> "$CHAOS_LOG"
if [ "$CHAOS_SLEEP" != "0" ]; then sleep "$CHAOS_SLEEP"; fi
{ cat "$1"; printf 'processed\\n'; } > "$2"
"""
TRAILER = b"processed\n"


@dataclass
class Scenario:
    name: str = "kill"
    jobs: int = 200
    workers: int = 4
    concurrency: int = 2
    kills: int = 5  # this many signals over the run, one every ~kill_every_s from the start
    max_kills: int = 200
    kill_every_s: float = 1.2  # mean interval between signals
    kill_signal: int = signal.SIGKILL
    fault_rate: float = 0.0
    waves: int = 1
    seed: int = 1
    visibility_s: int = 6
    max_receive_count: int = 10
    job_seconds: float = 0.0
    grace_s: float = 5.0
    retry_delay_s: float = 1.0
    timeout_s: float = 240.0  # the whole run, hard bound


@dataclass
class Result:
    scenario: str
    jobs: int = 0
    workers: int = 0
    kills: int = 0
    injected_faults: int = 0
    faults_by_kind: dict = field(default_factory=dict)
    faults_by_op: dict = field(default_factory=dict)
    requests: int = 0
    sdk_retries: int = 0
    sendjobs_exit: list = field(default_factory=list)
    files_sent: int = 0
    messages_sent: int = 0
    sender_duplicates: int = 0  # messages sent twice for one file (a SendMessageBatch response lost)
    lost: int = 0
    wrong_content: int = 0
    #: Each wrong output: its key, the bytes expected and the bytes found (both cut to 200), their sizes.
    wrong_outputs: list = field(default_factory=list)
    extra_outputs: int = 0
    executions: int = 0
    duplicated_executions: int = 0
    duplicate_writes: int = 0
    dlq: int = 0
    left_in_queue: int = 0
    redeliveries: dict = field(default_factory=dict)
    endpoint_duplicates: int = 0
    tool_redeliveries: int = 0
    worker_events: dict = field(default_factory=dict)
    worker_exit_codes: dict = field(default_factory=dict)
    tracebacks: int = 0
    stale_job_dirs: int = 0
    timed_out: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Worker:
    def __init__(self, slot: int, gen: int, proc: subprocess.Popen, app: str, log_path: str):
        self.slot, self.gen, self.proc, self.app, self.log_path = slot, gen, proc, app, log_path


def _env(base: dict, url: str, app: str) -> dict:
    env = {k: v for k, v in base.items() if not k.startswith(("AWS_", "GETJOBS_"))}
    env.update(AWS_ENDPOINT_URL=url, AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true", AWS_SDK_UA_APP_ID=app,
               PYTHONUNBUFFERED="1")
    return env


def make_inputs(root: str, jobs: int, waves: int, seed: int) -> tuple[list[str], dict[str, bytes]]:
    """``jobs`` files split over ``waves`` folders; the first line of each is its unique id."""
    rng = random.Random(seed)
    expected: dict[str, bytes] = {}
    dirs = []
    for w in range(waves):
        d = os.path.join(root, f"wave{w:02d}")
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
    for i in range(jobs):
        w = i % waves
        rel = f"wave{w:02d}/f{i:05d}.txt"
        body = f"job-{i:05d}\n".encode() + rng.randbytes(rng.randrange(16, 512)).hex().encode() + b"\n"
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(body)
        expected[rel] = body
    return dirs, expected


def run(endpoint: str, sc: Scenario, *, workdir: str | None = None, log=lambda *_: None,
        base_env: dict | None = None) -> Result:
    """Run one scenario against ``endpoint`` (moto's server) and return what was measured."""
    started = time.monotonic()
    hard_deadline = started + sc.timeout_s
    base_env = dict(os.environ if base_env is None else base_env)
    own_tmp = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="filejobs-chaos-")
    res = Result(scenario=sc.name, jobs=sc.jobs, workers=sc.workers)
    rng = random.Random(sc.seed)
    tag = uuid.uuid4().hex[:8]
    bucket, queue = f"chaos-{tag}", f"chaos-{tag}"
    clients = aws.make_clients(aws.Target(region=REGION, endpoint_url=endpoint))
    s3, sqs = clients.s3, clients.sqs
    made = resources.create_all(s3, sqs, bucket=bucket, queue=queue, region=REGION, settings=resources.QueueSettings(
        visibility_timeout_s=sc.visibility_s, max_receive_count=sc.max_receive_count))
    data = os.path.join(workdir, "data")
    wave_dirs, expected = make_inputs(data, sc.jobs, sc.waves, sc.seed)
    script = os.path.join(workdir, "cmd.sh")
    with open(script, "w") as fh:
        fh.write(COMMAND)
    os.chmod(script, 0o755)
    exec_log = os.path.join(workdir, "executions.log")
    open(exec_log, "w").close()
    logs_dir = os.path.join(workdir, "logs")
    os.makedirs(logs_dir, exist_ok=True)

    proxy = FaultProxy(endpoint, rate=sc.fault_rate, seed=sc.seed, timeout_delay_s=1.0)
    url = proxy.start()
    workers: dict[int, Worker] = {}
    retired: list[Worker] = []
    kills: dict[str, float] = {}
    senders: list[subprocess.Popen] = []

    def start_worker(slot: int, gen: int) -> Worker:
        app = f"w{slot}g{gen}"
        env = _env(base_env, url, app)
        env.update(CHAOS_LOG=exec_log, CHAOS_WORKER=app, CHAOS_SLEEP=f"{sc.job_seconds:g}")
        log_path = os.path.join(logs_dir, f"{app}.log")
        heartbeat = max(1.0, sc.visibility_s / 3)
        # With faults, transfers go through botocore, as sendjobs' uploads do (send_wave says why).
        transfers = ["--transfers", "botocore"] if sc.fault_rate else []
        with open(log_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "getjobs.py"), "--concurrency", str(sc.concurrency), *transfers,
                 "--wait-time", "1", "--visibility-timeout", str(sc.visibility_s), "--heartbeat", f"{heartbeat:g}",
                 "--retry-delay", f"{sc.retry_delay_s:g}", "--max-retry-delay", "5", "--grace", f"{sc.grace_s:g}",
                 "--log-format", "json", "--bucket", bucket, "--input-prefix", "in/", "--output-prefix", "out/",
                 os.path.join(workdir, "work", f"slot{slot}"), ".out", made.queue_url, REGION, script],
                env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        return Worker(slot, gen, proc, app, log_path)

    def send_wave(w: int) -> subprocess.Popen:
        env = _env(base_env, url, f"sendjobs{w}")
        env["XDG_STATE_HOME"] = os.path.join(workdir, "state")
        out = open(os.path.join(logs_dir, f"sendjobs{w}.json"), "w")
        err = open(os.path.join(logs_dir, f"sendjobs{w}.err"), "w")
        # With faults, uploads go through botocore: the proxy bounds faults to the first attempts by
        # botocore's amz-sdk-request header, which the AWS CRT does not send (its retries under
        # faults are tested in tests/e2e/test_send_crt.py).
        uploader = ["--uploader", "botocore"] if sc.fault_rate else []
        proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "sendjobs.py"), "--json", "-q", "--concurrency", "16", *uploader,
             wave_dirs[w], bucket, f"in/wave{w:02d}/", f"out/wave{w:02d}/", made.queue_url, REGION],
            env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        out.close()
        err.close()
        return proc

    def depth() -> int:
        a = sqs.get_queue_attributes(QueueUrl=made.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    def outputs() -> int:
        n = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/"):
            n += len(page.get("Contents", []))
        return n

    try:
        wave = 0
        senders.append(send_wave(wave))
        wave += 1
        for slot in range(sc.workers):
            workers[slot] = start_worker(slot, 0)
        gens = Counter()
        next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * sc.kill_every_s
        next_check = 0.0
        done = False
        settle_since = None
        while time.monotonic() < hard_deadline:
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 0.5
                d = depth()
                if wave < sc.waves and senders[-1].poll() is not None and d < max(20, sc.jobs // sc.waves // 2):
                    senders.append(send_wave(wave))
                    wave += 1
                all_sent = wave >= sc.waves and all(p.poll() is not None for p in senders)
                if all_sent and d == 0 and outputs() >= len(expected):
                    # Settle: a message can reappear (moto's delete quirk) within a visibility timeout.
                    settle_since = settle_since or now
                    if res.kills >= sc.kills and now - settle_since >= 1.0:
                        done = True
                        break
                else:
                    settle_since = None
            if now >= next_kill and res.kills < min(sc.kills, sc.max_kills):
                slot = rng.randrange(sc.workers)
                victim = workers[slot]
                if victim.proc.poll() is None:
                    kills[victim.app] = time.monotonic()
                    victim.proc.send_signal(sc.kill_signal)
                    res.kills += 1
                    log(f"  {signal.Signals(sc.kill_signal).name} {victim.app} (pid {victim.proc.pid}), "
                        f"kill {res.kills}")
                retired.append(victim)
                gens[slot] += 1
                workers[slot] = start_worker(slot, gens[slot])
                next_kill = now + rng.uniform(0.5, 1.5) * sc.kill_every_s
            for slot, w in list(workers.items()):  # a worker that died on its own is restarted too
                if w.proc.poll() is not None:
                    retired.append(w)
                    gens[slot] += 1
                    workers[slot] = start_worker(slot, gens[slot])
            time.sleep(0.1)
        res.timed_out = not done
    finally:
        for w in list(workers.values()):
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + sc.grace_s + 15
        for w in list(workers.values()) + retired:
            try:
                w.proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        for p in senders:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        proxy.stop()
    res.seconds = round(time.monotonic() - started, 1)

    # ---------------------------------------------------------------- verification
    res.sendjobs_exit = [p.returncode for p in senders]
    for w in range(len(senders)):
        try:
            with open(os.path.join(logs_dir, f"sendjobs{w}.json")) as fh:
                res.files_sent += json.loads(fh.read().strip().splitlines()[-1])["files_sent"]
        except (OSError, ValueError, IndexError, KeyError):
            pass
    res.messages_sent = sum(e.data.get("sent", 0) for e in proxy.events
                            if e.op in ("sqs:SendMessageBatch", "sqs:SendMessage") and e.app.startswith("sendjobs")
                            and e.data.get("queue") == queue)
    res.sender_duplicates = max(0, res.messages_sent - res.files_sent)
    out_keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/"):
        out_keys.update(o["Key"] for o in page.get("Contents", []))
    want = {f"out/{rel}.out": body + TRAILER for rel, body in expected.items()}
    res.lost = len(set(want) - out_keys)
    res.extra_outputs = len(out_keys - set(want))

    def check(key: str) -> dict | None:
        got = s3.get_object(Bucket=bucket, Key=key)
        body = got["Body"].read()
        if body == want[key]:
            return None
        return {"key": key, "expected": want[key][:200], "actual": body[:200], "expected_size": len(want[key]),
                "actual_size": len(body), "metadata": got.get("Metadata", {}),
                "writes": [(e.app, e.status) for e in proxy.events if e.op == "s3:PUT" and e.data.get("key") == key]}

    with ThreadPoolExecutor(max_workers=4) as pool:
        res.wrong_outputs = [w for w in pool.map(check, sorted(set(want) & out_keys)) if w]
    res.wrong_content = len(res.wrong_outputs)

    with open(exec_log) as fh:
        runs = Counter(line.split(" ", 1)[0] for line in fh if line.strip())
    res.executions = sum(runs.values())
    res.duplicated_executions = sum(c - 1 for c in runs.values() if c > 1)
    writes = proxy.s3_writes(bucket, "out/")
    res.duplicate_writes = sum(c - 1 for c in writes.values() if c > 1)
    res.left_in_queue = depth()
    a = sqs.get_queue_attributes(QueueUrl=made.dlq_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    res.dlq = sum(int(v) for v in a.values())
    why, _ = classify_redeliveries(proxy.events, queue=queue, kills=kills)
    res.redeliveries = dict(why)
    res.endpoint_duplicates = sum(why.get(k, 0) for k in (ENDPOINT_IN_FLIGHT, ENDPOINT_AFTER_DELETE,
                                                           ENDPOINT_DELETE_REFUSED))
    res.tool_redeliveries = why.get(TOOL, 0)
    res.injected_faults = proxy.injected
    res.faults_by_kind = dict(proxy.faults)
    res.faults_by_op = dict(proxy.faults_by_op)
    res.requests = proxy.requests
    res.sdk_retries = proxy.retried
    events: Counter = Counter()
    for w in list(workers.values()) + retired:
        res.worker_exit_codes[w.app] = w.proc.returncode
        with open(w.log_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if "Traceback" in line:
                    res.tracebacks += 1
                try:
                    events[json.loads(line).get("event", "?")] += 1
                except ValueError:
                    events["non-json line"] += 1
    res.worker_events = dict(events)
    for d, dirs, _ in os.walk(os.path.join(workdir, "work")):
        res.stale_job_dirs += sum(1 for x in dirs if x.startswith("job-"))
        dirs[:] = [x for x in dirs if not x.startswith("job-")]
    if own_tmp:
        shutil.rmtree(workdir, ignore_errors=True)
    return res


# --------------------------------------------------------------------------- CLI

TABLE_COLUMNS = [("scenario", "scenario"), ("jobs", "jobs"), ("workers", "workers"), ("kills", "kills"),
                 ("injected faults", "injected_faults"), ("lost", "lost"),
                 ("duplicated executions", "duplicated_executions"), ("sender dups", "sender_duplicates"),
                 ("duplicate writes", "duplicate_writes"),
                 ("DLQ", "dlq"), ("left in queue", "left_in_queue"), ("endpoint dups", "endpoint_duplicates"),
                 ("tool redeliveries", "tool_redeliveries"), ("seconds", "seconds")]


def table(results: list[Result]) -> str:
    rows = [[h for h, _ in TABLE_COLUMNS]] + [[str(getattr(r, k)) for _, k in TABLE_COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def scenarios(quick: bool, jobs: int | None, kills: int | None, seed: int) -> dict[str, Scenario]:
    if quick:
        base = dict(jobs=jobs or 120, kills=kills or 5, seed=seed, timeout_s=180)
        return {
            "kill": Scenario(name="kill", workers=4, kill_every_s=1.0, **base),
            "faults": Scenario(name="faults", workers=2, kills=0, max_kills=0, fault_rate=0.10, visibility_s=10,
                               jobs=jobs or 80, seed=seed, timeout_s=180),
            "term": Scenario(name="term", workers=4, kill_signal=signal.SIGTERM, job_seconds=1.0, grace_s=0.5,
                             kill_every_s=1.0, jobs=40, kills=kills or 5, seed=seed, visibility_s=30,
                             timeout_s=180),
        }
    return {
        "kill": Scenario(name="kill", jobs=jobs or 1000, workers=4, concurrency=2, kills=kills or 25, max_kills=60,
                         kill_every_s=1.6, waves=5, job_seconds=0.1, seed=seed, timeout_s=900),
        "faults": Scenario(name="faults", jobs=jobs or 1000, workers=4, concurrency=2, kills=0, max_kills=0,
                           fault_rate=0.10, waves=5, visibility_s=10, seed=seed, timeout_s=900),
        "kill+faults": Scenario(name="kill+faults", jobs=jobs or 1000, workers=4, concurrency=2, kills=kills or 25,
                                max_kills=60, kill_every_s=1.6, fault_rate=0.10, waves=5, visibility_s=10,
                                job_seconds=0.1, seed=seed, timeout_s=900),
        "term": Scenario(name="term", jobs=200, workers=4, concurrency=2, kill_signal=signal.SIGTERM,
                         job_seconds=1.0, grace_s=0.5, kills=kills or 25, max_kills=60, kill_every_s=1.0,
                         visibility_s=30, seed=seed, timeout_s=600),
    }


def start_endpoint() -> tuple[str, subprocess.Popen]:
    """moto's server in its own process via ``jobctl local`` (127.0.0.1, a free port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "filejobs.cli", "local"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("export AWS_ENDPOINT_URL="):
        proc.kill()
        raise SystemExit(f"chaos: error: the local endpoint did not start ({line!r})")
    return line.split("=", 1)[1], proc


def ok(r: Result) -> bool:
    clean = (r.lost == 0 and r.wrong_content == 0 and r.extra_outputs == 0 and r.left_in_queue == 0
             and r.dlq == 0 and r.tracebacks == 0 and not r.timed_out and r.tool_redeliveries == 0
             and all(c == 0 for c in r.sendjobs_exit) and r.files_sent == r.jobs)
    return clean


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute in all)")
    ap.add_argument("--scenario", action="append", choices=["kill", "faults", "kill+faults", "term"],
                    help="run only these (repeatable); default: all")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--kills", type=int, default=None)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--json", metavar="FILE", help="also write the full results as JSON")
    args = ap.parse_args(argv)
    plan = scenarios(args.quick, args.jobs, args.kills, args.seed)
    chosen = args.scenario or list(plan)
    chosen = [c for c in chosen if c in plan]
    url, proc = start_endpoint()
    results = []
    try:
        for name in chosen:
            sc = plan[name]
            print(f"chaos: {name}: {sc.jobs} jobs, {sc.workers} workers, ≥{sc.kills} "
                  f"{signal.Signals(sc.kill_signal).name if sc.kills else 'no'} signals, "
                  f"{sc.fault_rate:.0%} faults, seed {sc.seed}", file=sys.stderr, flush=True)
            r = run(url, sc, log=lambda t: print(t, file=sys.stderr, flush=True))
            results.append(r)
            detail = {k: v for k, v in r.as_dict().items() if k in (
                "faults_by_kind", "requests", "sdk_retries", "redeliveries", "worker_events", "stale_job_dirs",
                "sendjobs_exit", "files_sent", "messages_sent", "executions", "sender_duplicates",
                "wrong_content", "extra_outputs", "tracebacks", "timed_out")}
            print(f"chaos: {name}: {json.dumps(detail)}", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.as_dict() for r in results], fh, indent=2)
    bad = [r.scenario for r in results if not ok(r)]
    if bad:
        print(f"chaos: FAILED: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
