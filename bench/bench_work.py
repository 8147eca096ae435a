#!/usr/bin/env python3
"""getjobs benchmarks (issue 4). The real CLIs run as child processes on one endpoint; each
variant drains its own queue, pre-filled with one message per input object of the same bucket
(the same N files of 4 KiB for every variant), and writes under its own output prefix.

Variants: the original worker loop's port (``baselines/original_getjobs.py``, one job at a time,
legacy message bodies), ``getjobs --handler handlers:copy`` and the minimal hand-written loop
(``baselines/minimal_worker.py``) at the same concurrency, and both again with 30 ms added to
every request. Throughput is jobs ÷ the child's active window (first request → last completed
call, measured by ``instrument.py``; interpreter start-up excluded for every tool alike).

Standalone: ``python bench/bench_work.py --endpoint moto --jobs 300``; issue 14 (worker side):
``python bench/bench_work.py --endpoint fauxqs --what alternate --jobs 2000 --reps 3
--compare-root ../old-checkout`` runs old getjobs, this getjobs through botocore ("new"), through
the AWS CRT ("crt", when the ``crt`` extra is installed) and the minimal loop in turn, each round in
the same order (``--delay-ms 30`` for the latency model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import REGION, ROOT, check, run_child  # noqa: E402

GETJOBS = os.path.join(ROOT, "getjobs.py")
ORIGINAL = os.path.join(common.HERE, "baselines", "original_getjobs.py")
MINIMAL = os.path.join(common.HERE, "baselines", "minimal_worker.py")
HANDLER = "handlers:copy"


class Fixture:
    """A bucket holding N input objects; fresh queues of jobs on demand."""

    def __init__(self, ep, jobs: int, size: int = 4096, work: str | None = None):
        from filejobs import message
        from filejobs.message import Job

        self.ep, self.jobs, self.size = ep, jobs, size
        self.clients = common.clients_for(ep)
        self.bucket = common.make_bucket(self.clients.s3)
        self.tmp = tempfile.mkdtemp(prefix="bench-work-", dir=work)
        self.names = [f"f{i:06d}.dat" for i in range(jobs)]

        def put(name):
            body = f"job {name}\n".encode() + os.urandom(size - 16)
            return self.clients.s3.put_object(Bucket=self.bucket, Key="input/" + name, Body=body[:size])["ETag"]

        with ThreadPoolExecutor(8) as pool:
            self.etags = list(pool.map(put, self.names))
        self._v1 = [message.encode(Job(bucket=self.bucket, input_key="input/" + n, input_prefix="input/",
                                       output_prefix="{OUT}", size=size, etag=e))
                    for n, e in zip(self.names, self.etags)]

    def queue(self, out_prefix: str, *, legacy: bool = False, count: int | None = None) -> tuple[str, str]:
        """A new queue holding ``count`` (default all) jobs that write under ``out_prefix``."""
        sqs = self.clients.sqs
        name, url = common.make_queue(sqs)
        n = self.jobs if count is None else count
        if legacy:
            bodies = [json.dumps(["process", self.bucket, "input/", out_prefix, nm]) for nm in self.names[:n]]
        else:
            bodies = [b.replace("{OUT}", out_prefix) for b in self._v1[:n]]
        for i in range(0, n, 10):
            r = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": b}
                                                              for k, b in enumerate(bodies[i:i + 10])])
            if r.get("Failed"):
                raise RuntimeError(f"could not queue jobs: {r['Failed'][:2]}")
        return name, url

    def outputs(self, prefix: str) -> int:
        return common.count_keys(self.clients.s3, self.bucket, prefix)

    def workdir(self, label: str) -> str:
        path = os.path.join(self.tmp, label)
        os.makedirs(path, exist_ok=True)
        return path

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def _result(run, jobs: int, outputs: int, label: str) -> dict:
    if outputs < jobs:
        raise RuntimeError(f"{label}: only {outputs} of {jobs} outputs written\n{run.stderr[-2000:]}")
    return {"jobs": jobs, "active_s": run.active_s, "wall_s": run.wall_s, "jobs_per_s": jobs / run.active_s,
            "requests": run.requests, "requests_per_job": run.requests / jobs, "rss_mib": run.maxrss_mib,
            "cpu_s": run.cpu_s, "cpu_ms_per_job": 1000 * run.cpu_s / jobs, "switches_per_job": run.switches / jobs,
            "ops": (run.counts or {}).get("by_operation")}


def run_getjobs(fx: Fixture, label: str, *, concurrency: int, delay_ms: float = 0, count: int | None = None,
                root: str = ROOT, transfers: str | None = None) -> dict:
    """getjobs of this checkout, or of another one (``root``: an older commit, measured beside it);
    ``transfers``: its --transfers (crt / botocore), or None for the default (and older checkouts)."""
    n = fx.jobs if count is None else count
    out = f"out-{label}/"
    qname, _ = fx.queue(out, count=n)
    env = common.bench_env(fx.ep, fx.workdir(label + "-state"))
    argv = [os.path.join(root, "getjobs.py"), "--concurrency", str(concurrency), "--handler", HANDLER, "--max-jobs", str(n),
            "--exit-when-idle", "20", "--wait-time", "2", fx.workdir(label), ".out", qname, REGION]
    if transfers:
        argv[1:1] = ["--transfers", transfers]
    run = check(run_child(argv, env, timeout=1800, delay_ms=delay_ms), f"getjobs ({label})")
    return _result(run, n, fx.outputs(out), label)


def run_minimal(fx: Fixture, label: str, *, concurrency: int, delay_ms: float = 0, count: int | None = None) -> dict:
    n = fx.jobs if count is None else count
    out = f"out-{label}/"
    qname, _ = fx.queue(out, count=n)
    env = common.bench_env(fx.ep, fx.workdir(label + "-state"))
    argv = [MINIMAL, "--concurrency", str(concurrency), "--handler", HANDLER, "--max-jobs", str(n),
            "--deadline", "900", fx.workdir(label), ".out", qname, REGION]
    run = check(run_child(argv, env, timeout=1800, delay_ms=delay_ms), f"minimal worker ({label})")
    return _result(run, n, fx.outputs(out), label)


def run_original(fx: Fixture, label: str, *, delay_ms: float = 0, count: int | None = None) -> dict:
    n = fx.jobs if count is None else count
    out = f"out-{label}/"
    qname, _ = fx.queue(out, legacy=True, count=n)
    env = common.bench_env(fx.ep, fx.workdir(label + "-state"))
    argv = [ORIGINAL, "--handler", HANDLER, "--max-jobs", str(n), "--deadline", "900", fx.workdir(label), ".out",
            qname, REGION]
    run = check(run_child(argv, env, timeout=1800, delay_ms=delay_ms), f"original worker ({label})")
    return _result(run, n, fx.outputs(out), label)


def alternate(fx: Fixture, *, concurrency: int, reps: int, compare_root: str | None, delay_ms: float = 0) -> dict:
    """getjobs through botocore and (with the ``crt`` extra) through the AWS CRT, and another
    checkout's getjobs as "old", beside the minimal loop, ``reps`` rounds, alternating within each
    round. Returns label → list of results."""
    from filejobs import crt

    runners = {"new": lambda label: run_getjobs(fx, label, concurrency=concurrency, delay_ms=delay_ms,
                                                transfers="botocore")}
    if crt.available():
        runners["crt"] = lambda label: run_getjobs(fx, label, concurrency=concurrency, delay_ms=delay_ms,
                                                   transfers="crt")
    runners["minimal"] = lambda label: run_minimal(fx, label, concurrency=concurrency, delay_ms=delay_ms)
    if compare_root:
        runners = {"old": lambda label: run_getjobs(fx, label, concurrency=concurrency, root=compare_root,
                                                    delay_ms=delay_ms),
                   **runners}
    out: dict = {label: [] for label in runners}
    for rep in range(reps):
        for label, run in runners.items():
            r = run(f"{label}-{rep}")
            out[label].append(r)
            print(f"   {label:8} run {rep + 1}: {r['cpu_ms_per_job']:.2f} ms CPU/job, "
                  f"{r['switches_per_job']:.0f} switches/job, {r['jobs_per_s']:.0f} jobs/s, "
                  f"{r['requests_per_job']:.3f} requests/job, {r['rss_mib']:.0f} MiB", flush=True)
    return out


def _summary(runs: dict) -> None:
    for label, rs in runs.items():
        def mm(key):
            values = sorted(r[key] for r in rs)
            return f"{values[(len(values) - 1) // 2]:.2f} ({values[0]:.2f}–{values[-1]:.2f})"
        print(f"{label:8} CPU ms/job {mm('cpu_ms_per_job')}, jobs/s {mm('jobs_per_s')}, "
              f"switches/job {mm('switches_per_job')}")


def big_job(ep, *, size: int = 1 << 30, work: str = "/tmp") -> dict:
    """getjobs streams a 1 GiB input down and a 1 GiB output up (handler: copy): its peak RSS."""
    from filejobs import message
    from filejobs.message import Job
    from filejobs.transfer import put_file

    clients = common.clients_for(ep)
    tmp = tempfile.mkdtemp(prefix="bench-bigjob-", dir=work)
    try:
        src = common.sparse_file(os.path.join(tmp, "big.bin"), size)
        bucket = common.make_bucket(clients.s3)
        etag = put_file(clients.s3, src, bucket, "input/big.bin").etag
        os.unlink(src)
        qname, qurl = common.make_queue(clients.sqs)
        clients.sqs.send_message(QueueUrl=qurl, MessageBody=message.encode(Job(
            bucket=bucket, input_key="input/big.bin", input_prefix="input/", output_prefix="output/",
            size=size, etag=etag)))
        wd = os.path.join(tmp, "work")
        argv = [GETJOBS, "--handler", HANDLER, "--max-jobs", "1", "--exit-when-idle", "20", "--wait-time", "2",
                wd, ".out", qname, REGION]
        run = check(run_child(argv, common.bench_env(ep, tmp), timeout=1800), "getjobs (1 GiB)")
        head = clients.s3.head_object(Bucket=bucket, Key="output/big.bin.out")
        if head["ContentLength"] != size:
            raise RuntimeError(f"output is {head['ContentLength']} bytes, expected {size}")
        for key in ("input/big.bin", "output/big.bin.out"):
            clients.s3.delete_object(Bucket=bucket, Key=key)
        return {"endpoint": ep.name, "size": size, "rss_mib": run.maxrss_mib, "wall_s": run.wall_s,
                "ops": run.counts["by_operation"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", choices=["moto", "fauxqs"], default="moto")
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=None, help="added per request (compare: 30, alternate: 0)")
    p.add_argument("--what", choices=["compare", "big", "alternate"], default="compare")
    p.add_argument("--reps", type=int, default=3, help="alternate: rounds")
    p.add_argument("--compare-root", default=None, help="alternate: another checkout, measured as 'old'")
    a = p.parse_args()
    if a.endpoint == "fauxqs":
        common.reexec_in_netns()
    ctx = common.moto_endpoint() if a.endpoint == "moto" else common.fauxqs_endpoint()
    with ctx as ep:
        if a.what == "big":
            print(json.dumps(big_job(ep), indent=1))
            return
        fx = Fixture(ep, a.jobs)
        if a.what == "alternate":
            try:
                runs = alternate(fx, concurrency=a.concurrency, reps=a.reps, compare_root=a.compare_root,
                                 delay_ms=a.delay_ms or 0)
            finally:
                fx.close()
            _summary(runs)
            return
        delay_ms = 30 if a.delay_ms is None else a.delay_ms
        try:
            res = {"getjobs": run_getjobs(fx, "getjobs", concurrency=a.concurrency),
                   "minimal": run_minimal(fx, "minimal", concurrency=a.concurrency),
                   "original": run_original(fx, "original"),
                   "getjobs_delay": run_getjobs(fx, "getjobs-d", concurrency=a.concurrency, delay_ms=delay_ms),
                   "minimal_delay": run_minimal(fx, "minimal-d", concurrency=a.concurrency, delay_ms=delay_ms)}
        finally:
            fx.close()
        for k, v in res.items():
            print(k, json.dumps({x: (round(y, 3) if isinstance(y, float) else y) for x, y in v.items()}))


if __name__ == "__main__":
    main()
