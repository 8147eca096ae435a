"""Real boto3 clients whose calls are recorded in order, some of them answered by the test.

Where moto cannot produce an AWS behaviour (a rollback, AccessDenied, a stack stuck in a state, a
lifecycle hook holding an instance), a test answers that one operation itself; every other call
goes to the endpoint (moto) as usual. It uses botocore's own hooks: ``before-parameter-build``
records the call, ``before-call`` may return the response instead of sending the request.
"""

from __future__ import annotations

from typing import Callable


class _Http:
    def __init__(self, status_code: int):
        self.status_code, self.headers, self.content, self.text = status_code, {}, b"", ""


class Calls:
    """``calls``: (service, operation, API parameters) of every attached client, in call order."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        self._answers: dict[tuple[str, str], Callable] = {}

    def attach(self, client):
        service = client.meta.service_model.service_name
        events = client.meta.events
        events.register("before-parameter-build.*.*", lambda model, params, context, **_: self._record(
            service, model.name, params, context))
        events.register("before-call.*.*", lambda model, context, **_: self._answer(service, model.name, context))
        return client

    def answer(self, service: str, operation: str, fn: Callable[[dict], dict] | None) -> None:
        """Answer ``service:operation`` with ``fn(params)`` (a response dict, or ``error(...)``);
        None sends it to the endpoint again."""
        if fn is None:
            self._answers.pop((service, operation), None)
        else:
            self._answers[(service, operation)] = fn

    def _record(self, service, operation, params, context):
        context["stub_params"] = dict(params)
        self.calls.append((service, operation, dict(params)))

    def _answer(self, service, operation, context):
        fn = self._answers.get((service, operation))
        if fn is None:
            return None
        response = fn(context.get("stub_params", {}))
        if isinstance(response, tuple):  # error(...)
            return response
        return _Http(200), {"ResponseMetadata": {"HTTPStatusCode": 200}, **response}

    def names(self, service: str | None = None) -> list[str]:
        return [f"{s}:{op}" for s, op, _ in self.calls if service in (None, s)]

    def of(self, service: str, operation: str) -> list[dict]:
        return [p for s, op, p in self.calls if (s, op) == (service, operation)]


def error(code: str, message: str = "", status: int = 400) -> tuple:
    """An AWS error response for ``Calls.answer`` (botocore raises it as a ClientError)."""
    return _Http(status), {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
