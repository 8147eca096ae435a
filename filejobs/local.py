"""The embedded AWS endpoint: moto's server on 127.0.0.1, a free port, no account.

moto is a development dependency (``pip install .[local]``); the tools themselves never import it.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager


class LocalEndpointUnavailable(RuntimeError):
    pass


class LocalEndpoint:
    """An in-process moto server bound to loopback only (moto's own default is 0.0.0.0:5000)."""

    def __init__(self, port: int = 0):
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:  # pragma: no cover - depends on the install
            raise LocalEndpointUnavailable(
                "the local endpoint needs moto's server: pip install 'filejobs[local]'") from None
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        _cheaper_sqs_clock()
        _remember_backend_lookups()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.url = ""

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self._server.stop()


def _cheaper_sqs_clock() -> None:
    """moto's SQS asks "is it visible? is it delayed?" of every message of a queue several times per
    message it hands out, and each question builds two datetimes: one ReceiveMessage on a queue of
    400 messages cost 0.2 s of CPU (about 45k datetime computations), which made the server a fifth
    of the test suite's CPU. "Now" as seconds since the epoch is ``time.time()``: the same values
    without the datetimes. A moto that no longer has these helpers is left as it is."""
    try:
        from moto.sqs import models
    except ImportError:  # pragma: no cover - depends on the install
        return
    slow_s, slow_ms = getattr(models, "unix_time", None), getattr(models, "unix_time_millis", None)
    if not (callable(slow_s) and callable(slow_ms)) or getattr(slow_s, "filejobs_shim", False):
        return

    def unix_time(dt=None):
        return time.time() if dt is None else slow_s(dt)

    def unix_time_millis(dt=None):
        return time.time() * 1000.0 if dt is None else slow_ms(dt)

    unix_time.filejobs_shim = unix_time_millis.filejobs_shim = True
    models.unix_time, models.unix_time_millis = unix_time, unix_time_millis


def _remember_backend_lookups() -> None:
    """moto's server finds the service a request is for from its host name, and for each request
    lists moto's own package folder (a stat per service, about 150) before trying every service's
    URL patterns: a tenth of the server's CPU in the event-storm test. The answer depends on the
    host name alone and the set of host names a client uses is small, so each answer is kept."""
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    except ImportError:  # pragma: no cover - depends on the install
        return
    look_up = getattr(DomainDispatcherApplication, "get_backend_for_host", None)
    if not callable(look_up) or getattr(look_up, "filejobs_shim", False):
        return

    def get_backend_for_host(self, host):
        known = self.__dict__.setdefault("_filejobs_backends", {})
        if host not in known:
            backend = look_up(self, host)
            if len(known) >= 1024:  # virtual-hosted bucket names are many: only the common ones are kept
                return backend
            known[host] = backend
        return known[host]

    get_backend_for_host.filejobs_shim = True
    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


@contextmanager
def local_endpoint(port: int = 0):
    endpoint = LocalEndpoint(port)
    url = endpoint.start()
    try:
        yield url
    finally:
        endpoint.stop()
