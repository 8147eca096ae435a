"""The observing proxy of the chaos and fault tests forwards only what a real server would apply."""

from __future__ import annotations

import base64
import hashlib
import socket
import time

import pytest

from testing.faultproxy import FaultProxy
from testing.helpers import unique

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sent", [0, 10], ids=["headers only", "half the body"])
def test_a_put_whose_client_dies_before_the_whole_body_came_stores_nothing(endpoint, server, sent):
    """A worker SIGKILLed mid-upload: botocore sends the headers, waits for ``100 Continue``, then
    the body. Forwarded as it came, the cut-short body was stored (moto ignores Content-MD5) with the
    input's ETag as metadata, so the redelivery took it for a finished job (chaos: wrong_content)."""
    bucket, key = unique("b"), "out/a.txt.out"
    server.s3.create_bucket(Bucket=bucket)
    body = b"job-00001\nabcdef\nprocessed\n"
    proxy = FaultProxy(endpoint)
    host, port = proxy.start().split("//")[1].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall((f"PUT /{bucket}/{key} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
                          f"Content-MD5: {base64.b64encode(hashlib.md5(body).digest()).decode()}\r\n"
                          f"x-amz-meta-filejobs-input-etag: abc\r\nExpect: 100-continue\r\n\r\n").encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(body[:sent])
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not any(e.op == "s3:PUT" for e in proxy.events):
            time.sleep(0.05)  # what the proxy would have forwarded arrives within milliseconds
    finally:
        proxy.stop()
    assert server.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert not any(e.op == "s3:PUT" for e in proxy.events)
