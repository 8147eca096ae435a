#!/usr/bin/env python3
"""sendjobs benchmarks (issue 3). Each function runs the real CLIs as child processes on one
endpoint and returns a dict of figures; ``run_all.py`` turns them into the PASS/FAIL table.

* ``compare``: one flat directory of N files of 4 KiB, sent by ``aws s3 sync`` (upload only),
  ``sendjobs`` (upload + enqueue), the original loop's port (``baselines/original_sendjobs.py``)
  and ``sendjobs`` again with 30 ms added to every request — each into its own bucket and queue,
  all in the same run. Wall times include interpreter start-up for every tool alike.
* ``memory``: peak RSS (``wait4`` of the child) of real sendjobs runs over 1,000 and 100,000 tiny
  files, and of a 1 GiB (sparse) file upload.

Standalone: ``python bench/bench_send.py --endpoint moto --files 300`` (moto only outside the
network namespace; fauxqs through ``run_all.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import REGION, ROOT, check, run_child  # noqa: E402

SENDJOBS = os.path.join(ROOT, "sendjobs.py")
ORIGINAL = os.path.join(common.HERE, "baselines", "original_sendjobs.py")


def sendjobs_argv(directory, bucket, queue, state, *, concurrency, root=ROOT, extra=()):
    return [os.path.join(root, "sendjobs.py"), "--concurrency", str(concurrency), "--quiet", "--json",
            "--state-dir", state, *extra, directory, bucket, "input/", "output/", queue, REGION]


def _sendjobs(ep, directory, bucket, queue, state, *, concurrency, delay_ms=0, timeout=1800, root=ROOT, extra=()):
    argv = sendjobs_argv(directory, bucket, queue, state, concurrency=concurrency, root=root, extra=extra)
    run = check(run_child(argv, common.bench_env(ep, state), timeout=timeout, delay_ms=delay_ms), "sendjobs")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    if summary["files_sent"] != summary["files_seen"] or summary["files_failed"]:
        raise RuntimeError(f"sendjobs did not send every file: {summary}")
    return run, summary


def figures(run, files: int) -> dict:
    """One run's figures per file: client CPU and context switches (wait4), rates, peak RSS."""
    return {"cpu_ms_per_file": 1000 * run.cpu_s / files, "switches_per_file": run.switches / files,
            "main_cpu_ms_per_file": 1000 * run.own_cpu_s / files,
            "wall_s": run.wall_s, "active_s": run.active_s, "files_per_s_wall": files / run.wall_s,
            "files_per_s_active": files / run.active_s, "rss_mib": run.maxrss_mib, "processes": run.processes,
            "requests": run.requests, "ops": (run.counts or {}).get("by_operation")}


def alternate(ep, data: str, files: int, tools: dict, *, reps: int, work: str) -> dict:
    """Run every tool of ``tools`` (label → ``("sync",)`` or ``("sendjobs", root, extra_args,
    concurrency)``) on the same files, ``reps`` rounds, alternating within each round; each run
    into its own bucket (and queue), checked. Returns label → list of ``figures``."""
    clients = common.clients_for(ep)
    env = common.bench_env(ep, os.path.join(work, "state"))
    out: dict = {label: [] for label in tools}
    for rep in range(reps):
        for label, spec in tools.items():
            bucket = common.make_bucket(clients.s3)
            if spec[0] == "sync":
                run = check(run_child([common.aws_cli(), "s3", "sync", "--only-show-errors", data,
                                       f"s3://{bucket}/sync/"], env, timeout=1800, instrument=False), "aws s3 sync")
                _verify(clients, bucket, "sync/", None, files)
            else:
                _, root, extra, concurrency = spec
                qname, qurl = common.make_queue(clients.sqs)
                run, _ = _sendjobs(ep, data, bucket, qname, os.path.join(work, f"st-{label}-{rep}"),
                                   concurrency=concurrency, root=root, extra=extra)
                _verify(clients, bucket, "input/", qurl, files)
                clients.sqs.delete_queue(QueueUrl=qurl)
            out[label].append(figures(run, files))
            f = out[label][-1]
            print(f"   {label:14} run {rep + 1}: {f['cpu_ms_per_file']:.2f} ms CPU/file, "
                  f"{f['switches_per_file']:.0f} switches/file, {f['files_per_s_wall']:.0f} files/s "
                  f"(wall {f['wall_s']:.2f} s), {f['rss_mib']:.0f} MiB", flush=True)
    return out


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _verify(clients, bucket, prefix, queue_url, n):
    keys = common.count_keys(clients.s3, bucket, prefix)
    visible, _ = common.queue_depth(clients.sqs, queue_url) if queue_url else (n, 0)
    if keys != n or visible != n:
        raise RuntimeError(f"expected {n} objects and messages, found {keys} objects and {visible} messages")


def compare(ep, *, files: int, size: int = 4096, concurrency: int = 32, delay_ms: float = 30,
            work: str | None = None) -> dict:
    clients = common.clients_for(ep)
    tmp = tempfile.mkdtemp(prefix="bench-send-", dir=work)
    try:
        data = common.make_flat_files(os.path.join(tmp, "data"), files, size)
        state = os.path.join(tmp, "state")
        env = common.bench_env(ep, state)
        out = {"endpoint": ep.name, "files": files, "size": size, "concurrency": concurrency, "delay_ms": delay_ms}

        # 1. aws s3 sync (upload only), the reference the issue names.
        aws = common.aws_cli()
        if aws:
            bucket = common.make_bucket(clients.s3)
            run = check(run_child([aws, "s3", "sync", "--only-show-errors", data, f"s3://{bucket}/sync/"], env,
                                  timeout=1800, instrument=False), "aws s3 sync")
            _verify(clients, bucket, "sync/", None, files)
            out["sync_wall_s"] = run.wall_s
            out["sync_cpu_s"] = run.cpu_s
        # 2. sendjobs (upload + enqueue).
        bucket = common.make_bucket(clients.s3)
        qname, qurl = common.make_queue(clients.sqs)
        run, summary = _sendjobs(ep, data, bucket, qname, state, concurrency=concurrency)
        _verify(clients, bucket, "input/", qurl, files)
        out.update(sendjobs_wall_s=run.wall_s, sendjobs_active_s=run.active_s, sendjobs_requests=run.requests,
                   sendjobs_ops=run.counts["by_operation"], sendjobs_rss_mib=run.maxrss_mib, sendjobs_cpu_s=run.cpu_s)
        # 3. the original loop, ported.
        bucket = common.make_bucket(clients.s3)
        qname, qurl = common.make_queue(clients.sqs)
        run = check(run_child([ORIGINAL, data, bucket, "input/", "output/", qname, REGION], env, timeout=3600),
                    "original_sendjobs")
        _verify(clients, bucket, "input/", qurl, files)
        out.update(original_wall_s=run.wall_s, original_active_s=run.active_s, original_requests=run.requests,
                   original_ops=run.counts["by_operation"],
                   original_cpu_s=run.cpu_s)
        # 4. sendjobs with a fixed delay on every request (latency model).
        if delay_ms:
            bucket = common.make_bucket(clients.s3)
            qname, qurl = common.make_queue(clients.sqs)
            run, summary = _sendjobs(ep, data, bucket, qname, os.path.join(tmp, "state2"),
                                     concurrency=concurrency, delay_ms=delay_ms)
            _verify(clients, bucket, "input/", qurl, files)
            out.update(delayed_active_s=run.active_s, delayed_wall_s=run.wall_s, delayed_requests=run.requests,
                       delayed_cpu_s=run.cpu_s)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def memory_files(ep, counts=(1_000, 100_000), *, concurrency: int = 32, work: str | None = None,
                 extra=()) -> dict:
    """Peak RSS of real sendjobs runs over ``counts`` tiny (16-byte) files."""
    clients = common.clients_for(ep)
    out = {"endpoint": ep.name, "concurrency": concurrency}
    for n in counts:
        tmp = tempfile.mkdtemp(prefix="bench-rss-", dir=work)
        try:
            data = common.make_files(os.path.join(tmp, "data"), n, 16)
            bucket = common.make_bucket(clients.s3)
            qname, qurl = common.make_queue(clients.sqs)
            run, summary = _sendjobs(ep, data, bucket, qname, os.path.join(tmp, "state"),
                                     concurrency=concurrency, timeout=3600, extra=extra)
            visible, _ = common.queue_depth(clients.sqs, qurl)
            if visible != n:
                raise RuntimeError(f"{n} files: {visible} messages in the queue")
            out[n] = {"rss_mib": run.maxrss_mib, "wall_s": run.wall_s, "files_per_s": n / run.active_s}
            clients.sqs.delete_queue(QueueUrl=qurl)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def memory_big(ep, *, size: int = 1 << 30, concurrency: int = 32, work: str = "/tmp", root=ROOT, extra=()) -> dict:
    """Peak RSS of sendjobs uploading one sparse 1 GiB file (multipart, 8 MiB parts)."""
    clients = common.clients_for(ep)
    tmp = tempfile.mkdtemp(prefix="bench-big-", dir=work)
    try:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        common.sparse_file(os.path.join(data, "big.bin"), size)
        bucket = common.make_bucket(clients.s3)
        qname, qurl = common.make_queue(clients.sqs)
        run, summary = _sendjobs(ep, data, bucket, qname, os.path.join(tmp, "state"), concurrency=concurrency,
                                 root=root, extra=extra)
        head = clients.s3.head_object(Bucket=bucket, Key="input/big.bin")
        if head["ContentLength"] != size:
            raise RuntimeError(f"uploaded {head['ContentLength']} bytes, expected {size}")
        clients.s3.delete_object(Bucket=bucket, Key="input/big.bin")
        return {"endpoint": ep.name, "size": size, "rss_mib": run.maxrss_mib, "wall_s": run.wall_s,
                "mib_per_s": size / 2**20 / run.active_s, "ops": run.counts["by_operation"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", choices=["moto", "fauxqs"], default="moto")
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--delay-ms", type=float, default=30)
    p.add_argument("--what", choices=["compare", "memory", "big", "alternate"], default="compare")
    p.add_argument("--reps", type=int, default=3, help="alternate: rounds")
    p.add_argument("--tools", default="sync,sendjobs",
                   help="alternate: sync, sendjobs, old (--compare-root), processes=N")
    p.add_argument("--compare-root", default=None, help="alternate: another checkout, measured as 'old'")
    p.add_argument("--extra", default="", help="alternate: extra sendjobs options (this checkout only)")
    a = p.parse_args()
    if a.endpoint == "fauxqs":
        common.reexec_in_netns()
    ctx = common.moto_endpoint() if a.endpoint == "moto" else common.fauxqs_endpoint()
    with ctx as ep:
        if a.what == "compare":
            print(json.dumps(compare(ep, files=a.files, concurrency=a.concurrency, delay_ms=a.delay_ms), indent=1))
        elif a.what == "memory":
            print(json.dumps(memory_files(ep, counts=(1000, a.files)), indent=1))
        elif a.what == "big":
            print(json.dumps(memory_big(ep), indent=1))
        else:
            specs = {"sync": ("sync",), "sendjobs": ("sendjobs", ROOT, tuple(a.extra.split()), a.concurrency),
                     "old": ("sendjobs", a.compare_root, (), a.concurrency)}
            for n in range(1, 9):  # "processes=N": this checkout through botocore in N upload processes
                specs[f"processes={n}"] = ("sendjobs", ROOT, ("--uploader", "botocore", "--processes", str(n)),
                                           a.concurrency)
            tools = {t: specs[t] for t in a.tools.split(",")}
            tmp = tempfile.mkdtemp(prefix="bench-alt-")
            try:
                data = common.make_flat_files(os.path.join(tmp, "data"), a.files, 4096)
                res = alternate(ep, data, a.files, tools, reps=a.reps, work=tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            for label, runs in res.items():
                print(f"{label:12} main process {median([r['main_cpu_ms_per_file'] for r in runs]):.2f} ms/file; "
                      f"peak RSS {median([r['rss_mib'] for r in runs]):.0f} MiB")
                print(f"{label:10} CPU ms/file min {min(r['cpu_ms_per_file'] for r in runs):.2f} "
                      f"median {median([r['cpu_ms_per_file'] for r in runs]):.2f}; switches/file median "
                      f"{median([r['switches_per_file'] for r in runs]):.0f}; files/s (wall) median "
                      f"{median([r['files_per_s_wall'] for r in runs]):.0f}, max "
                      f"{max(r['files_per_s_wall'] for r in runs):.0f}")
            print(json.dumps(res))


if __name__ == "__main__":
    main()
