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
from common import PY, REGION, ROOT, check, run_child  # noqa: E402

SENDJOBS = os.path.join(ROOT, "sendjobs.py")
ORIGINAL = os.path.join(common.HERE, "baselines", "original_sendjobs.py")


def _sendjobs(ep, directory, bucket, queue, state, *, concurrency, delay_ms=0, timeout=1800):
    argv = [SENDJOBS, "--concurrency", str(concurrency), "--quiet", "--json", "--state-dir", state,
            directory, bucket, "input/", "output/", queue, REGION]
    run = check(run_child(argv, common.bench_env(ep, state), timeout=timeout, delay_ms=delay_ms), "sendjobs")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    if summary["files_sent"] != summary["files_seen"] or summary["files_failed"]:
        raise RuntimeError(f"sendjobs did not send every file: {summary}")
    return run, summary


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


def memory_files(ep, counts=(1_000, 100_000), *, concurrency: int = 32, work: str | None = None) -> dict:
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
                                     concurrency=concurrency, timeout=3600)
            visible, _ = common.queue_depth(clients.sqs, qurl)
            if visible != n:
                raise RuntimeError(f"{n} files: {visible} messages in the queue")
            out[n] = {"rss_mib": run.maxrss_mib, "wall_s": run.wall_s, "files_per_s": n / run.active_s}
            clients.sqs.delete_queue(QueueUrl=qurl)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def memory_big(ep, *, size: int = 1 << 30, concurrency: int = 32, work: str = "/tmp") -> dict:
    """Peak RSS of sendjobs uploading one sparse 1 GiB file (multipart, 8 MiB parts)."""
    clients = common.clients_for(ep)
    tmp = tempfile.mkdtemp(prefix="bench-big-", dir=work)
    try:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        common.sparse_file(os.path.join(data, "big.bin"), size)
        bucket = common.make_bucket(clients.s3)
        qname, qurl = common.make_queue(clients.sqs)
        run, summary = _sendjobs(ep, data, bucket, qname, os.path.join(tmp, "state"), concurrency=concurrency)
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
    p.add_argument("--what", choices=["compare", "memory", "big"], default="compare")
    a = p.parse_args()
    if a.endpoint == "fauxqs":
        common.reexec_in_netns()
    ctx = common.moto_endpoint() if a.endpoint == "moto" else common.fauxqs_endpoint()
    with ctx as ep:
        if a.what == "compare":
            print(json.dumps(compare(ep, files=a.files, concurrency=a.concurrency, delay_ms=a.delay_ms), indent=1))
        elif a.what == "memory":
            print(json.dumps(memory_files(ep, counts=(1000, a.files)), indent=1))
        else:
            print(json.dumps(memory_big(ep), indent=1))


if __name__ == "__main__":
    main()
