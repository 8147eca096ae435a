"""Chaos: ≥ 200 jobs, 4 worker processes, ≥ 5 SIGKILLs of random workers (each restarted), and
SIGTERM drains. bench/chaos.py is the long version (make chaos); this runs its code small.

What a SIGKILL may cost is a second execution of the jobs the victim held (after their
visibility timeout) — counted, never harmful: every input ends with exactly one output with the
right content, the queue ends empty, nothing is dead-lettered. Redeliveries are classified from
what the observing proxy saw: the endpoint's own duplicates (moto hands a message out twice
under concurrent receives, or after a successful delete) are counted apart, and the tool's own
share (visibility lapsing under a live worker) must be zero.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from bench import chaos
from testing.helpers import REGION, ROOT, list_keys, unique

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_sigkill_chaos(endpoint, server, tmp_path):
    sc = chaos.Scenario(name="kill", jobs=200, workers=4, concurrency=2, kills=6, kill_every_s=1.0,
                        visibility_s=6, job_seconds=0.05, seed=7, timeout_s=150)
    r = chaos.run(endpoint, sc, workdir=str(tmp_path), base_env=server.env)
    print("\n" + chaos.table([r]) + "\n" + json.dumps(r.as_dict(), default=str))
    assert not r.timed_out, r.as_dict()
    assert r.kills >= 5
    assert r.sendjobs_exit == [0] and r.files_sent == sc.jobs
    assert r.lost == 0, r.as_dict()
    assert r.wrong_content == 0 and r.extra_outputs == 0
    assert r.left_in_queue == 0
    assert r.dlq == 0
    assert r.tracebacks == 0
    # Every redelivery has a cause that is not the tool's.
    assert r.tool_redeliveries == 0, r.redeliveries
    # Duplicated executions come only from redeliveries; duplicate writes only from duplicate runs.
    assert r.duplicated_executions <= sum(r.redeliveries.values())
    assert r.duplicate_writes <= r.duplicated_executions
    assert r.executions == sc.jobs + r.duplicated_executions


# --------------------------------------------------------------------------- SIGTERM drain

SLOW_COMMAND = """#!/bin/sh
IFS= read -r id < "$1"
printf '%s %s\\n' "$id" "$CHAOS_WORKER" >> "$CHAOS_LOG"
# Half the output, a long pause, then the rest: an upload of a cut-short run would show.
{ head -c 4 "$1"; sleep "$CHAOS_SLEEP"; tail -c +5 "$1"; printf 'processed\\n'; } > "$2"
"""


@pytest.fixture
def slow_setup(server, make_resources, tmp_path):
    res = make_resources(server, max_receive_count=5, visibility_timeout_s=30)
    script = tmp_path / "slow.sh"
    script.write_text(SLOW_COMMAND)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "executions.log"
    log.write_text("")
    return res, str(script), log


def _send(server, res, names):
    for n in names:
        server.s3.put_object(Bucket=res.bucket, Key=f"in/{n}", Body=f"{n}\nbody of {n}\n".encode())
        server.sqs.send_message(QueueUrl=res.queue_url, MessageBody=json.dumps(
            {"v": 1, "bucket": res.bucket, "input_key": f"in/{n}", "input_prefix": "in/", "output_prefix": "out/"}))


def _worker(server, tmp_path, res, script, log, name, *, grace, sleep_s, concurrency=2):
    env = dict(server.env, CHAOS_LOG=str(log), CHAOS_WORKER=name, CHAOS_SLEEP=str(sleep_s))
    err = open(tmp_path / f"{name}.err", "w")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "getjobs.py"), "--concurrency", str(concurrency), "--wait-time", "1",
         "--grace", str(grace), "--retry-delay", "1", "--log-format", "json",
         str(tmp_path / f"work-{name}"), ".out", res.queue_url, REGION, script],
        env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    return proc


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _events(path):
    out = []
    for line in open(path, encoding="utf-8"):
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "non-json", "line": line})
    return out


def _stop(*procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigterm_drain_finishes_jobs_within_grace(server, slow_setup, tmp_path):
    res, script, log = slow_setup
    names = [f"{unique('long')}.txt" for _ in range(2)]
    _send(server, res, names)
    a = _worker(server, tmp_path, res, script, log, "A", grace=15, sleep_s=3)
    try:
        _wait(lambda: len(log.read_text().splitlines()) >= 2, 30, "both jobs to start")
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        a.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        _stop(a)
    assert a.returncode == 0
    assert took < 15, f"drain took {took:.1f}s, over the 15 s grace"
    events = _events(tmp_path / "A.err")
    assert not any("Traceback" in json.dumps(e) for e in events)
    assert [e["mode"] for e in events if e["event"] == "stopping"] == ["drain"]
    assert sum(e["event"] == "done" for e in events) == 2
    assert not any(e["event"] == "released" for e in events)
    for n in names:
        body = server.s3.get_object(Bucket=res.bucket, Key=f"out/{n}.out")["Body"].read()
        assert body == f"{n}\nbody of {n}\nprocessed\n".encode()
    assert len(log.read_text().splitlines()) == 2  # each ran once


def test_sigterm_short_grace_releases_at_once(server, slow_setup, tmp_path):
    """Grace shorter than the jobs: they are stopped and released (visibility 0) at once, another
    worker completes them long before the 30 s visibility timeout, no partial output anywhere."""
    res, script, log = slow_setup
    names = [f"{unique('long')}.txt" for _ in range(2)]
    _send(server, res, names)
    a = _worker(server, tmp_path, res, script, log, "A", grace=0.5, sleep_s=20)
    b = None
    try:
        _wait(lambda: len(log.read_text().splitlines()) >= 2, 30, "both jobs to start on A")
        b = _worker(server, tmp_path, res, script, log, "B", grace=15, sleep_s=0.2)
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        a.wait(timeout=30)
        a_took = time.monotonic() - t0
        # No partial output while A is gone and B has not finished yet.
        partial = [k for k in list_keys(server.s3, res.bucket, "out/")
                   if server.s3.get_object(Bucket=res.bucket, Key=k)["Body"].read().count(b"processed") != 1]
        assert partial == []
        _wait(lambda: len(list_keys(server.s3, res.bucket, "out/")) == 2, 20, "B to finish the released jobs")
        done_after = time.monotonic() - t0
        b.send_signal(signal.SIGTERM)
        b.wait(timeout=30)
    finally:
        _stop(a, *(p for p in [b] if p))
    assert a.returncode == 0 and b.returncode == 0
    # A stopped within grace + the command's SIGTERM: not after the jobs' natural end.
    assert a_took < 10, f"A took {a_took:.1f}s to stop with a 0.5 s grace (its jobs needed 20 s)"
    assert done_after < 15, f"released jobs finished {done_after:.1f}s after SIGTERM (visibility is 30 s)"
    a_events = _events(tmp_path / "A.err")
    assert sum(e["event"] == "released" for e in a_events) == 2, a_events
    assert not any(e["event"] == "done" for e in a_events)
    for n in names:
        body = server.s3.get_object(Bucket=res.bucket, Key=f"out/{n}.out")["Body"].read()
        assert body == f"{n}\nbody of {n}\nprocessed\n".encode()
    runs = [line.split() for line in log.read_text().splitlines()]
    assert sorted(w for _, w in runs) == ["A", "A", "B", "B"]
    attrs = server.sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
