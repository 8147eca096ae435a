"""The worker on an instance that is about to go: termination notices read from a fake IMDSv2 on
127.0.0.1, queues and scale-in protection in moto, and the call order of CompleteLifecycleAction
(which moto does not implement) recorded by a client that answers as the Auto Scaling API does.

What AWS documents and these tests encode:
* a Spot interruption notice (``spot/instance-action``) comes two minutes before the instance is
  reclaimed: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html
* an Auto Scaling termination shows as the target lifecycle state ``Terminated``; the instance waits
  in ``Terminating:Wait`` until CompleteLifecycleAction or the hook's timeout:
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html
* a rebalance recommendation is a risk, not a date; Capacity Rebalance then replaces the instance
  through the lifecycle hook: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import botocore.exceptions as bexc
import pytest
from botocore.validate import validate_parameters

from filejobs import message
from filejobs.ec2 import Imds, InstanceProtector, LifecycleAction, NoticeWatcher
from filejobs.message import Job
from filejobs.runner import RunResult
from filejobs.worker import Worker, WorkerConfig
from testing.helpers import RecordingLog, drain_queue, list_keys
from testing.autoscaling import instance_in_a_group
from testing.imds import FakeImds

GROUP, HOOK = "workers", "filejobs-drain"
SPOT_TIME = "2026-12-04T16:02:00Z"
SPOT_DEADLINE = datetime(2026, 12, 4, 16, 2, tzinfo=timezone.utc).timestamp()


class Jobs:
    """A runner: inputs named ``long…`` run until stopped, the others take ``short_s``; every run
    is recorded, and how many run right now."""

    def __init__(self, short_s: float = 0.2):
        self.short_s = short_s
        self.started: list[str] = []
        self.running = 0
        self.lock = threading.Lock()

    def describe(self):
        return "jobs"

    def run(self, input_path, output_path, *, cwd, timeout_s, cancel, context=None):
        with self.lock:
            self.started.append(input_path.rsplit("/", 1)[-1])
            self.running += 1
        try:
            if cancel.wait(60 if "long" in input_path else self.short_s):
                return RunResult(False, reason="stopped by shutdown", cancelled=True)
            with open(input_path, "rb") as src, open(output_path, "wb") as dst:
                dst.write(src.read())
            return RunResult(True, exit_code=0)
        finally:
            with self.lock:
                self.running -= 1


class RecordingAutoscaling:
    """moto's Auto Scaling client, with every protection and lifecycle call on a shared timeline.
    CompleteLifecycleAction is checked against the API model and answered as AWS does: once while
    an action is pending, then ``ValidationError: No active Lifecycle Action``."""

    def __init__(self, client, timeline: list, *, on_complete=lambda: None, pending=True, error=None):
        self.client, self.timeline, self.on_complete = client, timeline, on_complete
        self.pending, self.error = pending, error
        self.completed_with: list[dict] = []

    def set_instance_protection(self, **params):
        self.timeline.append(f"SetInstanceProtection({params['ProtectedFromScaleIn']})")
        return self.client.set_instance_protection(**params)

    def complete_lifecycle_action(self, **params):
        model = self.client.meta.service_model.operation_model("CompleteLifecycleAction")
        validate_parameters(params, model.input_shape)
        self.timeline.append("CompleteLifecycleAction")
        self.completed_with.append({**params, "state": self.on_complete()})
        if self.error:
            raise bexc.ClientError({"Error": {"Code": self.error, "Message": "no"}}, "CompleteLifecycleAction")
        if not self.pending:
            raise bexc.ClientError({"Error": {"Code": "ValidationError", "Message": "No active Lifecycle Action "
                                    f"found with instance ID {params['InstanceId']}"}}, "CompleteLifecycleAction")
        self.pending = False
        return {}


@pytest.fixture
def imds():
    with FakeImds() as fake:
        yield fake


def send(mocked, res, name: str) -> None:
    key = f"input/{name}"
    etag = mocked.s3.put_object(Bucket=res.bucket, Key=key, Body=name.encode())["ETag"]
    mocked.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(Job(
        bucket=res.bucket, input_key=key, input_prefix="input/", output_prefix="output/", batch_id="b1", etag=etag)))


def queue_counts(mocked, url) -> tuple[int, int]:
    a = mocked.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class OnAnInstance:
    """A worker as getjobs --protect-instance --watch-notices --lifecycle-hook builds it, on a
    moto queue and Auto Scaling group, reading a fake IMDSv2; started in a thread."""

    def __init__(self, mocked, res, imds, *, wall_now: float = SPOT_DEADLINE - 11.0, runner=None,
                 drain_timeout_s: float = 600, pending: bool = True, error: str | None = None, **config):
        self.mocked, self.res, self.runner = mocked, res, runner or Jobs()
        self.sqs = mocked.session.client("sqs")  # the test's own calls, not on the timeline
        self.timeline: list[str] = []
        mocked.sqs.meta.events.register("before-call.sqs", lambda model, **_: self.timeline.append(model.name))
        instance = instance_in_a_group(mocked.session, GROUP)
        self.autoscaling = RecordingAutoscaling(mocked.session.client("autoscaling"), self.timeline,
                                                on_complete=self.snapshot, pending=pending, error=error)
        config = {"wait_time_s": 1, "concurrency": 2, "grace_s": 60, "notice_poll_s": 0.02, "heartbeat_s": 0.3,
                  **config}
        self.log = RecordingLog()
        self.worker = Worker(
            WorkerConfig(work_dir=str(Path("work").resolve()), extension=".out", queue=res.queue_url, **config), mocked,
            self.runner, log=self.log, wall_clock=lambda: wall_now,
            protector=InstanceProtector(self.autoscaling, instance, GROUP, idle_grace_s=5),
            notices=NoticeWatcher(Imds(imds.url), drain_timeout_s=drain_timeout_s),
            lifecycle=LifecycleAction(self.autoscaling, GROUP, HOOK, instance))
        self.stats: list = []
        self.thread = threading.Thread(target=lambda: self.stats.append(self.worker.run()))
        self.thread.start()

    def snapshot(self) -> dict:
        """What the world looks like when the lifecycle action is completed."""
        a = self.sqs.get_queue_attributes(QueueUrl=self.res.queue_url, AttributeNames=["All"])["Attributes"]
        visible, invisible = int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])
        return {"running": self.runner.running, "queue": (visible, invisible)}

    def join(self):
        self.thread.join(30)
        assert not self.thread.is_alive() and self.stats, "the worker did not return"
        return self.stats[0]


@pytest.fixture
def res(mocked, make_resources, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the worker's WORK_DIR is ./work
    return make_resources(mocked, visibility_timeout_s=1)


@pytest.mark.parametrize("notice", ["spot interruption", "auto scaling termination"])
def test_on_a_termination_notice_a_short_job_finishes_a_long_one_is_released_then_the_action_is_completed(
        mocked, res, imds, notice):
    send(mocked, res, "long.txt")
    send(mocked, res, "short.txt")
    if notice == "spot interruption":  # 11 s before the deadline: 1 s of drain, then 10 s to spare
        w = OnAnInstance(mocked, res, imds)
    else:  # the hook waits far longer than the grace period: 1 s of grace
        w = OnAnInstance(mocked, res, imds, grace_s=1)
    wait_for(lambda: len(w.runner.started) == 2)
    if notice == "spot interruption":
        imds.items["spot/instance-action"] = json.dumps({"action": "terminate", "time": SPOT_TIME})
    else:
        imds.items["autoscaling/target-lifecycle-state"] = "Terminated"
    stats = w.join()
    timeline = list(w.timeline)  # the worker's calls, before the test's own

    events = w.log.names()
    stopping = events.index("stopping")
    assert w.log.of("stopping")[0]["mode"] == "notice" and w.log.of("stopping")[0]["drain_s"] == 1.0
    assert "heartbeat" in events[stopping:]  # the long job's visibility was still extended while it ran
    assert (stats.done, stats.released, stats.failed, stats.received) == (1, 1, 0, 2)
    assert w.runner.started.count("long.txt") == 1  # never handed to anyone else meanwhile
    assert list_keys(mocked.s3, res.bucket, "output/") == ["output/short.txt.out"]
    # Lost 0: the long job is visible again at once, not a failed attempt (no record, no DLQ).
    assert queue_counts(mocked, res.queue_url) == (1, 0)
    assert list_keys(mocked.s3, res.bucket, "errors/") == [] and drain_queue(mocked.sqs, res.dlq_url) == []
    # Completed once, after the drain: nothing ran any more, the release and the delete were made,
    # protection was cleared.
    (completed,) = w.autoscaling.completed_with
    assert completed["state"] == {"running": 0, "queue": (1, 0)}
    assert (completed["AutoScalingGroupName"], completed["LifecycleHookName"], completed["LifecycleActionResult"]) \
        == (GROUP, HOOK, "CONTINUE")
    done = timeline.index("CompleteLifecycleAction")
    assert done == len(timeline) - 1, " ".join(timeline)
    assert {"ChangeMessageVisibility", "DeleteMessageBatch", "SetInstanceProtection(False)"} <= set(timeline[:done])
    assert timeline.index("DeleteMessageBatch") < timeline.index("SetInstanceProtection(False)")
    assert w.log.of("lifecycle") == [{"completed": True}]


def test_a_rebalance_recommendation_is_logged_and_the_worker_goes_on(mocked, res, imds):
    imds.items["events/recommendations/rebalance"] = json.dumps({"noticeTime": "2026-12-04T16:00:00Z"})
    w = OnAnInstance(mocked, res, imds, wait_time_s=0, exit_when_idle_s=0.5)
    wait_for(lambda: w.log.of("notice"))
    send(mocked, res, "after.txt")
    stats = w.join()
    assert stats.done == 1 and "stopping" not in w.log.names()
    assert w.log.of("notice")[0]["kind"] == "rebalance"
    assert "CompleteLifecycleAction" not in w.timeline


def test_messages_a_long_poll_brings_after_a_notice_are_released_at_once(mocked, res, imds):
    polls = threading.Event()
    mocked.sqs.meta.events.register("before-call.sqs.ReceiveMessage", lambda **_: polls.set())
    w = OnAnInstance(mocked, res, imds, wait_time_s=5)
    assert polls.wait(10)
    imds.items["spot/instance-action"] = json.dumps({"action": "terminate", "time": SPOT_TIME})
    wait_for(lambda: w.log.of("stopping"))
    send(mocked, res, "late.txt")  # the long poll in flight returns it
    stats = w.join()
    assert w.runner.started == [] and stats.released == 1
    assert queue_counts(mocked, res.queue_url) == (1, 0)
    assert w.timeline.count("ReceiveMessage") == 1  # no poll after the notice


@pytest.mark.parametrize("pending, error, logged", [
    (False, None, ("lifecycle", {"completed": False})),  # no hook on this group, or already completed
    (True, "AccessDenied", ("warning", "could not complete the lifecycle action")),
])
def test_a_lifecycle_action_that_cannot_be_completed_still_ends_the_worker_cleanly(
        mocked, res, imds, pending, error, logged):
    imds.items["autoscaling/target-lifecycle-state"] = "Terminated"
    w = OnAnInstance(mocked, res, imds, grace_s=1, pending=pending, error=error)
    w.join()  # returns: getjobs exits 0 and systemd does not restart it
    event, what = logged
    if event == "lifecycle":
        assert w.log.of("lifecycle") == [what]
    else:
        assert what in w.log.of("warning")[-1]["reason"]
