#!/usr/bin/env python3
"""The AWS CRT S3 client (awscrt) against transfer.py on the same endpoint (issue 14, bench/README).

    .venv/bin/pip install awscrt==0.38.0       # not a project dependency
    .venv/bin/python bench/bench_crt.py [--files 2000] [--reps 3] [--big]

Each case runs in its own process (crt_case.py) so CPU (wait4, CRT native threads included) and
peak RSS are its own; the cases alternate within each round. Small: N × 4 KiB PUTs. Big: one 1 GiB
(sparse) file, with the CRT's buffer settings varied, since its memory is what decides there.
Runs on fauxqs (in ``unshare --net``), which verifies no checksum: correctness of conditional
writes, metadata and checksums through the CRT was checked on moto (bench/README).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_send  # noqa: E402
import common  # noqa: E402

CASE = os.path.join(common.HERE, "crt_case.py")
MiB = 2**20
BIG_VARIANTS = {
    "crt default buffers": {},
    "crt memory_limit=256 MiB": {"memory_limit": 256 * MiB},
    "crt 4 connections": {"max_active_connections_override": 4},
    "crt 2 connections, 256 MiB": {"max_active_connections_override": 2, "memory_limit": 256 * MiB},
}


def run_case(ep, case, bucket, src, options=None):
    env = common.bench_env(ep, tempfile.gettempdir())
    argv = [common.PY, CASE, case, ep.url, bucket, src] + ([json.dumps(options)] if options else [])
    run = common.check(common.run_child(argv, env, timeout=1800, instrument=False), case)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out.update(cpu_s=run.cpu_s, rss_mib=run.maxrss_mib, wall_s=run.wall_s)
    return out


def small(ep, files, reps, work):
    clients = common.clients_for(ep)
    src = common.make_flat_files(os.path.join(work, "small"), files, 4096)
    rows: dict[str, list] = {}
    for rep in range(reps):
        for case in ("small-project", "small-crt-md5", "small-crt-crc32"):
            bucket = common.make_bucket(clients.s3)
            r = run_case(ep, case, bucket, src)
            if common.count_keys(clients.s3, bucket, "") != files or r["etags"] != files:
                raise RuntimeError(f"{case}: not every object was written or answered with its ETag")
            rows.setdefault(case, []).append(r)
            print(f"  {case:16} run {rep + 1}: {1000 * r['phase_cpu_s'] / files:.3f} ms CPU/PUT (transfer phase), "
                  f"{1000 * r['cpu_s'] / files:.3f} ms incl. start-up, {files / r['phase_wall_s']:.0f} PUT/s, "
                  f"{r['rss_mib']:.0f} MiB", flush=True)
    return rows


def big(ep, work):
    clients = common.clients_for(ep)
    src = os.path.join(work, "big")
    os.makedirs(src)
    common.sparse_file(os.path.join(src, "big.bin"), 1 << 30)
    rows = {}
    for label, options in [("project (transfer.py)", None)] + list(BIG_VARIANTS.items()):
        bucket = common.make_bucket(clients.s3)
        r = run_case(ep, "big-project" if options is None else "big-crt-crc32", bucket, src, options)
        size = clients.s3.head_object(Bucket=bucket, Key=("project/" if options is None else "crt-crc32/")
                                      + "big.bin")["ContentLength"]
        if size != 1 << 30:
            raise RuntimeError(f"{label}: stored {size} bytes")
        rows[label] = r
        print(f"  1 GiB {label:28}: peak RSS {r['rss_mib']:.0f} MiB, CPU {r['phase_cpu_s']:.2f} s, "
              f"{1024 / r['phase_wall_s']:.0f} MiB/s", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--big", action="store_true")
    a = p.parse_args()
    common.reexec_in_netns()
    work = tempfile.mkdtemp(prefix="bench-crt-")
    try:
        with common.fauxqs_endpoint() as ep:
            print(f"== {a.files} × 4 KiB PUTs on {ep.version}", flush=True)
            rows = small(ep, a.files, a.reps, work)
            for case, runs in rows.items():
                cpu = [1000 * r["phase_cpu_s"] / a.files for r in runs]
                print(f"{case:16} CPU/PUT min {min(cpu):.3f} median {bench_send.median(cpu):.3f} ms")
            if a.big:
                print("== 1 GiB PUT", flush=True)
                big(ep, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
