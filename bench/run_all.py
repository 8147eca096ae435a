#!/usr/bin/env python3
"""Run every sendjobs/getjobs benchmark on moto and fauxqs and print one table with PASS/FAIL
against the targets of issues 3 and 4. Results are also written to bench/results/ (JSON).

    .venv/bin/python bench/run_all.py            # everything (≈ 15 min on 2 cores)
    .venv/bin/python bench/run_all.py --quick    # smaller sizes, no 100,000-file run (≈ 4 min)

The whole run re-executes itself inside a new network namespace (``unshare --net``, loopback
only): fauxqs listens on all interfaces and must not be reachable from outside, and nothing in a
benchmark can reach a real AWS account. Needs root (or user namespaces), node and
``bench/.fauxqs`` (``cd bench/.fauxqs && npm install fauxqs@1.9.2``); without them only moto runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_work  # noqa: E402
import common  # noqa: E402
import send_suite  # noqa: E402

ROWS: list[tuple] = []  # (endpoint, target, measured, verdict, note)


def row(endpoint, target, measured, ok, note=""):
    verdict = "info" if ok is None else ("PASS" if ok else "FAIL")
    ROWS.append((endpoint, target, measured, verdict, note))
    print(f"  [{verdict}] {endpoint}: {target}: {measured} {note}", flush=True)


# --------------------------------------------------------------------------- getjobs


def work_suite(ep, *, jobs, small_jobs, lat_jobs, concurrency, delay_ms, big, results):
    name = ep.name
    print(f"\n== getjobs on {name}: {jobs} jobs of 4 KiB, concurrency {concurrency}", flush=True)
    fx = bench_work.Fixture(ep, jobs)
    try:
        g = bench_work.run_getjobs(fx, "getjobs", concurrency=concurrency)
        m = bench_work.run_minimal(fx, "minimal", concurrency=concurrency)
        o = bench_work.run_original(fx, "original")
        g2 = bench_work.run_getjobs(fx, "getjobs2", concurrency=concurrency)
        m2 = bench_work.run_minimal(fx, "minimal2", concurrency=concurrency)
        gd = bench_work.run_getjobs(fx, "getjobs-d", concurrency=concurrency, delay_ms=delay_ms)
        md = bench_work.run_minimal(fx, "minimal-d", concurrency=concurrency, delay_ms=delay_ms)
        od = bench_work.run_original(fx, "original-d", delay_ms=delay_ms, count=lat_jobs)
        gs = bench_work.run_getjobs(fx, "getjobs-small", concurrency=concurrency, count=small_jobs)
        g4 = bench_work.run_getjobs(fx, "getjobs-c4-d", concurrency=4, delay_ms=delay_ms, count=lat_jobs * 2)
        results[f"work-{name}"] = {"getjobs": [g, g2], "minimal": [m, m2], "original": o, "getjobs_delay": gd,
                                   "minimal_delay": md, "original_delay": od, "getjobs_small": gs,
                                   "getjobs_c4_delay": g4}
    finally:
        fx.close()
    g_rate = (g["jobs_per_s"] + g2["jobs_per_s"]) / 2
    m_rate = (m["jobs_per_s"] + m2["jobs_per_s"]) / 2
    row(name, f"≥ 8× original worker, no added latency ({jobs} jobs)", f"{g_rate / o['jobs_per_s']:.1f}× "
        f"({g_rate:.0f} vs {o['jobs_per_s']:.0f} jobs/s; CPU/job {1000 * g['cpu_s'] / jobs:.1f} vs "
        f"{1000 * o['cpu_s'] / jobs:.1f} ms)", g_rate / o["jobs_per_s"] >= 8, "(client-CPU-bound; see README)")
    row(name, f"≥ 8× original worker, {delay_ms:g} ms per request",
        f"{gd['jobs_per_s'] / od['jobs_per_s']:.1f}× ({gd['jobs_per_s']:.0f} vs {od['jobs_per_s']:.1f} jobs/s; "
        f"original on {lat_jobs} jobs)", gd["jobs_per_s"] / od["jobs_per_s"] >= 8)
    row(name, f"≥ 0.8× minimal boto3 loop, C={concurrency}", f"{g_rate / m_rate:.2f}× ({g_rate:.0f} vs "
        f"{m_rate:.0f} jobs/s, mean of 2 alternating runs each)", g_rate / m_rate >= 0.8)
    row(name, f"{delay_ms:g} ms: ≥ 0.8× minimal loop (info)", f"{gd['jobs_per_s'] / md['jobs_per_s']:.2f}× "
        f"({gd['jobs_per_s']:.0f} vs {md['jobs_per_s']:.0f} jobs/s)", None)
    rpj = g["requests_per_job"]
    row(name, "requests per job ≤ 2.3", f"{rpj:.3f} incl. the 2 start-up lookups ({g['ops']})", rpj <= 2.3,
        "(original: 6)")
    rpj_d = gd["requests_per_job"]
    ideal = concurrency / (rpj_d * delay_ms / 1000)
    bound = min(ideal, g_rate)
    row(name, f"{delay_ms:g} ms: jobs/s ≥ 0.9 × min(C/(R×{delay_ms:g} ms), endpoint rate), C={concurrency}",
        f"{gd['jobs_per_s']:.0f} jobs/s = {gd['jobs_per_s'] / bound:.2f} × bound {bound:.0f} "
        f"(C/(R×d) = {ideal:.0f} with R={rpj_d:.2f}; endpoint rate without delay {g_rate:.0f})",
        gd["jobs_per_s"] >= 0.9 * bound)
    r4 = g4["requests_per_job"]
    ideal4 = 4 / (r4 * delay_ms / 1000)
    bound4 = min(ideal4, g_rate)
    row(name, f"{delay_ms:g} ms, C=4 (latency-bound case)", f"{g4['jobs_per_s']:.0f} jobs/s = "
        f"{g4['jobs_per_s'] / bound4:.2f} × bound {bound4:.0f} (R={r4:.2f})", g4["jobs_per_s"] >= 0.9 * bound4)
    ratio = g["rss_mib"] / gs["rss_mib"]
    row(name, f"memory flat: peak RSS {jobs} jobs ≤ 1.3× {small_jobs} jobs",
        f"{ratio:.2f}× ({g['rss_mib']:.0f} vs {gs['rss_mib']:.0f} MiB)", ratio <= 1.3)
    if big:
        print(f"-- getjobs 1 GiB in/out on {name}", flush=True)
        b = bench_work.big_job(ep)
        results[f"work-big-{name}"] = b
        row(name, "getjobs 1 GiB input + output: peak RSS < 200 MiB", f"{b['rss_mib']:.0f} MiB "
            f"({b['wall_s']:.0f} s, {b['ops']})", b["rss_mib"] < 200)


# --------------------------------------------------------------------------- main


def versions() -> dict:
    import boto3
    import botocore
    import moto

    aws = common.aws_cli()
    return {"python": platform.python_version(), "boto3": boto3.__version__, "botocore": botocore.__version__,
            "moto": moto.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
            "kernel": platform.release(),
            "aws": subprocess.run([aws, "--version"], capture_output=True, text=True).stdout.strip() if aws else None}


def report(results: dict) -> None:
    """Write the raw figures to bench/results/ and print the table."""
    out_dir = os.path.join(common.HERE, "results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, time.strftime("run-%Y%m%dT%H%M%S.json"))
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1, default=str)
    print(f"\n{'endpoint':8} | {'target':70} | verdict | measured")
    print("-" * 160)
    for endpoint, target, measured, verdict, note in ROWS:
        print(f"{endpoint:8} | {target:70} | {verdict:7} | {measured} {note}".rstrip())
    print(f"\n{sum(r[3] == 'PASS' for r in ROWS)} PASS, {sum(r[3] == 'FAIL' for r in ROWS)} FAIL "
          f"in {results['seconds'] / 60:.1f} min; {json.dumps(results['versions'])}; details: {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes, no 100,000-file run")
    p.add_argument("--endpoints", default="moto,fauxqs")
    p.add_argument("--delay-ms", type=float, default=30)
    p.add_argument("--rss-files", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=3, help="alternating rounds of the sendjobs vs aws s3 sync runs")
    p.add_argument("--compare-root", default=None, metavar="CHECKOUT",
                   help="another checkout whose sendjobs runs beside this one's ('old' in the rows)")
    p.add_argument("--only", choices=["send", "work"], default=None, help="run one tool's benchmarks")
    a = p.parse_args()
    if "fauxqs" in a.endpoints and common.fauxqs_available() and os.geteuid() == 0:
        common.reexec_in_netns()
    started = time.monotonic()
    results = {"versions": versions(), "args": vars(a)}
    print(json.dumps(results["versions"]), flush=True)
    endpoints = a.endpoints.split(",")
    if "moto" in endpoints:
        # moto scans the whole queue on every SQS call, so backlogs stay at a few hundred here.
        with common.moto_endpoint() as ep:
            results["moto"] = ep.version
            if a.only != "work":
                send_suite.run(ep, files=150 if a.quick else 300, lat_files=60 if a.quick else 100, concurrency=32,
                               delay_ms=a.delay_ms, rss_counts=None, big=False, reps=min(a.reps, 2),
                               compare_root=a.compare_root, results=results, row=row)
            if a.only != "send":
                work_suite(ep, jobs=150 if a.quick else 300, small_jobs=50, lat_jobs=30 if a.quick else 60,
                           concurrency=16, delay_ms=a.delay_ms, big=False, results=results)
    if "fauxqs" in endpoints:
        if not common.in_netns():
            print("fauxqs skipped: needs node, bench/.fauxqs and `unshare --net` (root)", flush=True)
        else:
            with common.fauxqs_endpoint() as ep:
                results["fauxqs"] = ep.version
                if a.only != "work":
                    send_suite.run(ep, files=500 if a.quick else 2000, lat_files=100 if a.quick else 400,
                                   concurrency=32, delay_ms=a.delay_ms,
                                   rss_counts=(1_000, 10_000) if a.quick else (1_000, a.rss_files), big=True,
                                   reps=a.reps, compare_root=a.compare_root, results=results, row=row)
                if a.only != "send":
                    work_suite(ep, jobs=500 if a.quick else 2000, small_jobs=200, lat_jobs=50 if a.quick else 150,
                               concurrency=16, delay_ms=a.delay_ms, big=True, results=results)
    results["seconds"] = time.monotonic() - started
    results["rows"] = ROWS
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
