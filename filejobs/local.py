"""The embedded AWS endpoint: moto's server on 127.0.0.1, a free port, no account.

moto is a development dependency (``pip install .[local]``); the tools themselves never import it.
"""

from __future__ import annotations

import logging
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
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.url = ""

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        self._server.stop()


@contextmanager
def local_endpoint(port: int = 0):
    endpoint = LocalEndpoint(port)
    url = endpoint.start()
    try:
        yield url
    finally:
        endpoint.stop()
