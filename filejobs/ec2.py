"""EC2 specifics of the worker: instance metadata through IMDSv2, the notices that end an instance
(Spot interruption, rebalance recommendation, Auto Scaling termination), completing the termination
lifecycle action, and scale-in protection while busy.

Protection keeps scale-in from terminating an instance in the middle of a job:
https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html
The notices come from the instance metadata, polled every few seconds as AWS recommends:
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html
https://docs.aws.amazon.com/autoscaling/ec2/userguide/retrieving-target-lifecycle-state-through-imds.html
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from .aws import error_code

IMDS_DEFAULT = "http://169.254.169.254"

SPOT_INTERRUPTION = "spot-interruption"
REBALANCE = "rebalance"
TERMINATING = "terminating"
_URGENCY = {REBALANCE: 0, TERMINATING: 1, SPOT_INTERRUPTION: 2}


class Imds:
    """IMDSv2: a session token first (PUT), then metadata GETs carrying it (instances are launched
    with IMDSv1 disabled). The token is renewed before it expires and once more if refused.
    ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` overrides the address, as in botocore."""

    def __init__(self, endpoint: str | None = None, *, timeout_s: float = 2.0, ttl_s: int = 21600,
                 clock: Callable[[], float] = time.monotonic):
        self.base = (endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT).rstrip("/")
        self.timeout_s, self.ttl_s, self.clock = timeout_s, ttl_s, clock
        self._token: str | None = None
        self._expires = 0.0

    def _new_token(self) -> str:
        request = urllib.request.Request(f"{self.base}/latest/api/token", method="PUT",
                                         headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.ttl_s)})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310 - http(s) only
            self._token = resp.read().decode()
        self._expires = self.clock() + self.ttl_s - 60
        return self._token

    def get(self, path: str) -> str | None:
        """``/latest/meta-data/<path>``; None if the metadata has no such item (404)."""
        token = self._token if self._token and self.clock() < self._expires else self._new_token()
        for attempt in (1, 2):
            request = urllib.request.Request(f"{self.base}/latest/meta-data/{path}",
                                             headers={"X-aws-ec2-metadata-token": token})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310
                    return resp.read().decode()
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code != 401 or attempt == 2:
                    raise
                token = self._new_token()  # expired or revoked: once more with a fresh token
        return None


def instance_id(*, endpoint: str | None = None, timeout_s: float = 2.0) -> str:
    return (Imds(endpoint, timeout_s=timeout_s).get("instance-id") or "").strip()


@dataclass(frozen=True)
class Notice:
    """Something ends this instance. ``deadline``: wall-clock time (epoch seconds) by which it is
    gone, None for a rebalance recommendation (a risk, not a date)."""

    kind: str
    deadline: float | None
    detail: str


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class NoticeWatcher:
    """Reads the three notices from the metadata. ``poll()`` returns a notice the first time it
    appears, and again only if a more urgent one follows (rebalance < terminating < Spot
    interruption). ``drain_timeout_s`` is the termination hook's heartbeat: the time the group waits
    for ``CompleteLifecycleAction`` once the target lifecycle state turns ``Terminated``."""

    def __init__(self, imds: Imds, *, drain_timeout_s: float, wall_clock: Callable[[], float] = time.time):
        self.imds, self.drain_timeout_s, self.wall_clock = imds, drain_timeout_s, wall_clock
        self._reported: Notice | None = None

    def current(self) -> Notice | None:
        """The most urgent notice in the metadata right now."""
        action = self.imds.get("spot/instance-action")
        if action:
            body = json.loads(action)
            return Notice(SPOT_INTERRUPTION, _epoch(body["time"]), f"spot {body.get('action', 'terminate')}")
        state = (self.imds.get("autoscaling/target-lifecycle-state") or "").strip()
        if state == "Terminated":
            previous = self._reported
            deadline = previous.deadline if previous and previous.kind == TERMINATING else \
                self.wall_clock() + self.drain_timeout_s
            return Notice(TERMINATING, deadline, "Auto Scaling is terminating this instance")
        rebalance = self.imds.get("events/recommendations/rebalance")
        if rebalance:
            return Notice(REBALANCE, None, f"rebalance recommended at {json.loads(rebalance)['noticeTime']}")
        return None

    def poll(self) -> Notice | None:
        notice = self.current()
        if notice is None:
            return None
        if self._reported and _URGENCY[notice.kind] <= _URGENCY[self._reported.kind]:
            return None
        self._reported = notice
        return notice

    def watch(self, on_notice: Callable[[Notice], None], *, interval_s: float = 5.0,
              stop: threading.Event | None = None, log=lambda *a, **k: None) -> threading.Thread:
        """Poll in a daemon thread until ``stop`` is set; each new notice goes to ``on_notice``."""
        stop = stop or threading.Event()

        def loop():
            while not stop.is_set():
                try:
                    notice = self.poll()
                except (OSError, ValueError, KeyError) as exc:  # metadata briefly unreachable or odd
                    log("warning", reason=f"instance metadata: {exc}")
                    notice = None
                if notice is not None:
                    on_notice(notice)
                stop.wait(interval_s)

        thread = threading.Thread(target=loop, daemon=True, name="notices")
        thread.start()
        return thread


def complete_lifecycle_action(autoscaling, *, group: str, hook: str, instance: str,
                              result: str = "CONTINUE") -> bool:
    """Tell the group the drain is done, so it terminates the instance now rather than at the
    hook's timeout. False when no action is pending (no hook, already completed, timed out)."""
    try:
        autoscaling.complete_lifecycle_action(AutoScalingGroupName=group, LifecycleHookName=hook,
                                              InstanceId=instance, LifecycleActionResult=result)
    except Exception as exc:
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
        if error_code(exc) == "ValidationError" and "No active Lifecycle Action" in message:
            return False
        raise
    return True


@dataclass(frozen=True)
class LifecycleAction:
    """This instance's termination lifecycle action, completed once the worker has drained."""

    autoscaling: object
    group: str
    hook: str
    instance: str

    def complete(self) -> bool:
        return complete_lifecycle_action(self.autoscaling, group=self.group, hook=self.hook, instance=self.instance)


class InstanceProtector:
    """Sets scale-in protection while the worker is busy and clears it when idle.

    Calls are made from a background thread that reconciles the wanted state, so a burst of
    short jobs costs no more than one call per transition, and the poll loop never waits on it.
    Give ``group`` (user data passes the stack's group name): without it the group is looked up
    with DescribeAutoScalingInstances, which IAM can only grant on "*".
    """

    def __init__(self, autoscaling, instance: str, group: str | None = None, *, log=lambda *a, **k: None,
                 idle_grace_s: float = 10.0):
        self.autoscaling = autoscaling
        self.instance = instance
        self.log = log
        self.idle_grace_s = idle_grace_s
        if group is None:
            found = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"]
            if not found:
                raise RuntimeError(f"instance {instance} is not in an Auto Scaling group")
            group = found[0]["AutoScalingGroupName"]
        self.group = group
        self._want = False
        self._have: bool | None = None
        self._changed = threading.Condition()
        self._applying = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="protector")
        self._thread.start()

    def set_busy(self, busy: bool, *, now: bool = False) -> None:
        """Want protection on or off; the background thread applies it, or this call with ``now``
        (the worker's last call, before it exits or completes the lifecycle action)."""
        with self._changed:
            self._want = busy
            self._changed.notify()
        if now:
            self.sync()

    def sync(self) -> None:
        """Apply the wanted state now (used on shutdown)."""
        self._apply()

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait(timeout=1.0)
                want = self._want
            if want != self._have:
                if not want:
                    # Clear only after a short idle spell: the next message usually comes at once.
                    with self._changed:
                        self._changed.wait_for(lambda: self._want, timeout=self.idle_grace_s)
                        want = self._want
                    if want == self._have:
                        continue
                self._apply()

    def _apply(self) -> None:
        # One call at a time, each for the state wanted when it starts: a slow call from the
        # background thread can never land after the final one from shutdown and leave the
        # instance protected (and the group unable to scale in) after the worker is gone.
        with self._applying:
            with self._changed:
                want = self._want
            if want == self._have:
                return
            try:
                self.autoscaling.set_instance_protection(InstanceIds=[self.instance], AutoScalingGroupName=self.group,
                                                         ProtectedFromScaleIn=want)
                self._have = want
                self.log("protection", instance=self.instance, protected=want)
            except Exception as exc:  # noqa: BLE001 - retried on the next tick
                self.log("warning", reason=f"could not set scale-in protection: {exc}")
