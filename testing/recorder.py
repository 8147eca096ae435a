"""Request accounting for tests and benchmarks: every API call and HTTP request a botocore client makes."""

from __future__ import annotations

import threading


class CallRecorder:
    """Counts and records API calls (``before-call``) and HTTP requests (``before-send``, retries
    included) of every client it is attached to. Used by the benchmarks and the IAM policy test."""

    def __init__(self, keep_params: bool = False):
        self._lock = threading.Lock()
        self.keep_params = keep_params
        self.calls: list[tuple[str, str, dict]] = []
        self.requests = 0
        self.by_operation: dict[str, int] = {}

    def attach(self, client) -> None:
        service = client.meta.service_model.service_name
        # before-parameter-build sees the API parameters (before-call only sees the HTTP request).
        client.meta.events.register("before-parameter-build.*.*",
                                    lambda model, params, **_: self._call(service, model.name, params))
        client.meta.events.register("before-send.*.*", self._send)

    def _call(self, service, operation, params):
        with self._lock:
            name = f"{service}:{operation}"
            self.by_operation[name] = self.by_operation.get(name, 0) + 1
            if self.keep_params:
                keep = {k: params.get(k) for k in ("Bucket", "Key", "QueueUrl", "QueueName", "Prefix", "Delete",
                                                    "SourceArn", "DestinationArn", "VersionId",
                                                    "AutoScalingGroupName") if k in params}
                self.calls.append((service, operation, keep))

    def _send(self, **_):
        with self._lock:
            self.requests += 1

    def total_calls(self) -> int:
        return sum(self.by_operation.values())
