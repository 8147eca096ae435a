"""EC2 specifics of the worker: the instance id via IMDSv2 and Auto Scaling scale-in protection.

Protection is what keeps Auto Scaling from terminating an instance in the middle of a job when
the group scales in: https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html
"""

from __future__ import annotations

import os
import threading
import urllib.request

IMDS_DEFAULT = "http://169.254.169.254"


def instance_id(*, endpoint: str | None = None, timeout_s: float = 2.0) -> str:
    """IMDSv2: a session token first (PUT), then the metadata with the token (instances are
    launched with IMDSv1 disabled). ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` overrides the address."""
    base = (endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT).rstrip("/")
    token_req = urllib.request.Request(f"{base}/latest/api/token", method="PUT",
                                       headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(token_req, timeout=timeout_s) as resp:  # noqa: S310 - fixed scheme
        token = resp.read().decode()
    id_req = urllib.request.Request(f"{base}/latest/meta-data/instance-id",
                                    headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(id_req, timeout=timeout_s) as resp:  # noqa: S310
        return resp.read().decode().strip()


class InstanceProtector:
    """Sets scale-in protection while the worker is busy and clears it when idle.

    Calls are made from a background thread that reconciles the wanted state, so a burst of
    short jobs costs no more than one call per transition, and the poll loop never waits on it.
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
        self._thread = threading.Thread(target=self._loop, daemon=True, name="protector")
        self._thread.start()

    def set_busy(self, busy: bool) -> None:
        with self._changed:
            self._want = busy
            self._changed.notify()
        if not busy and threading.current_thread() is threading.main_thread():
            self.sync()

    def sync(self) -> None:
        """Apply the wanted state now (used on shutdown)."""
        with self._changed:
            want = self._want
        self._apply(want)

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
                self._apply(want)

    def _apply(self, want: bool) -> None:
        if want == self._have:
            return
        try:
            self.autoscaling.set_instance_protection(InstanceIds=[self.instance], AutoScalingGroupName=self.group,
                                                     ProtectedFromScaleIn=want)
            self._have = want
            self.log("protection", instance=self.instance, protected=want)
        except Exception as exc:  # noqa: BLE001 - retried on the next tick
            self.log("warning", reason=f"could not set scale-in protection: {exc}")
