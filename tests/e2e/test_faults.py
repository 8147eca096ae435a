"""Fault injection: 10 % of the S3 and SQS requests of *both* tools fail (503 SlowDown /
ServiceUnavailable, 500, connection reset, and "read timeout" = applied upstream but the response
lost), through the fault-injecting proxy (testing/faultproxy.py) in front of the local endpoint.

sendjobs still submits every file (exit 0), every job completes with the right output, nothing is
lost, dead-lettered or left in the queue; retries and duplicates are reported (``-s`` shows them).
The harness is bench/chaos.py's, at a small size; the proxy's dice are seeded and only the
first three attempts of a call can fail, so botocore's five attempts always get through and the
outcome does not depend on luck.
"""

from __future__ import annotations

import json
import signal

import pytest

from bench import chaos

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_both_tools_survive_ten_percent_faults(endpoint, server, tmp_path):
    sc = chaos.Scenario(name="faults", jobs=100, workers=2, concurrency=2, kills=0, max_kills=0,
                        kill_signal=signal.SIGKILL, fault_rate=0.10, visibility_s=6, seed=11, timeout_s=150)
    r = chaos.run(endpoint, sc, workdir=str(tmp_path), base_env=server.env)
    print("\n" + chaos.table([r]) + "\n" + json.dumps(r.as_dict(), default=str))
    assert not r.timed_out, r.as_dict()
    # sendjobs: every file uploaded and sent, exit 0, despite the faults.
    assert r.sendjobs_exit == [0]
    assert r.files_sent == sc.jobs
    assert r.messages_sent >= sc.jobs  # a lost SendMessageBatch response may resend: duplicates, never gaps
    # The faults really happened, on both services, of every kind, at about the asked rate.
    assert 0.05 * r.requests <= r.injected_faults <= 0.15 * r.requests, (r.injected_faults, r.requests)
    assert set(r.faults_by_kind) == set(chaos.KINDS)
    assert any(op.startswith("s3:") for op in r.faults_by_op) and any(op.startswith("sqs:") for op in r.faults_by_op)
    assert r.sdk_retries >= r.injected_faults
    # Outcome: nothing lost, everything right, nothing left, nothing dead-lettered.
    assert r.lost == 0 and r.wrong_content == 0 and r.extra_outputs == 0
    assert r.left_in_queue == 0
    assert r.dlq == 0
    assert r.tracebacks == 0
    # Duplicates are harmless: outputs are create-only, so a duplicate write needs a duplicate run.
    assert r.duplicate_writes <= r.duplicated_executions
    assert r.executions == sc.jobs + r.duplicated_executions
