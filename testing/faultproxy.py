"""A fault-injecting, observing HTTP proxy in front of a local AWS endpoint (tests and bench only).

The tools run as separate processes, so faults cannot come from a botocore hook inside them; they
are pointed at this proxy instead (``AWS_ENDPOINT_URL``) and the proxy forwards every request to
the real local endpoint (moto's server). It binds to 127.0.0.1 only.

Faults (a seeded fraction ``rate`` of the requests, chosen evenly among ``kinds``):

* ``503``     – S3 ``SlowDown`` / SQS ``ServiceUnavailable``; the request never reaches the endpoint.
* ``500``     – ``InternalError``; the request never reaches the endpoint.
* ``reset``   – the connection is reset (TCP RST) before the request is forwarded.
* ``timeout`` – the request *is* forwarded and applied, the response is held back for
  ``timeout_delay_s`` and the connection then dropped: the client sees what a read timeout
  leaves it with (it cannot know whether the request happened). The tools' read timeout is
  70 s, too long for a test, so the wait itself is shortened.

Only attempts up to ``max_faulty_attempt`` (read from botocore's ``amz-sdk-request: attempt=N``
header) can fail, so the last retries of a call always pass and the outcome of a run does not
depend on the dice; ``rate`` is still the fraction of all requests that fail.

Observation: for SQS (JSON protocol) the proxy records every message handed out
(ReceiveMessage), every delete and visibility change with its result, and for S3 every write
with its status, each with a monotonic time stamp and the caller's ``AWS_SDK_UA_APP_ID`` (the
``app/<id>`` part of the User-Agent). ``classify_redeliveries`` turns that into "why was this
message handed out again" (testing/redeliveries.py), which is how the chaos checks tell the
endpoint's own duplicates apart from the tool's.

Holding: with ``hold_after=N`` every request after the N-th waits until ``release()``; a test can
then stop a client (Ctrl-C, SIGKILL) while it is certainly mid-run, however fast the machine.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

KINDS = ("503", "500", "reset", "timeout")
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "expect", "content-length"}
_APP_RE = re.compile(r"(?:^|\s)app/(\S+)")
_ATTEMPT_RE = re.compile(r"attempt=(\d+)")


@dataclass
class Event:
    t0: float  # request forwarded
    t1: float  # upstream answered
    app: str
    op: str  # "sqs:ReceiveMessage", "s3:PUT", ...
    status: int
    delivered: bool
    data: dict = field(default_factory=dict)


class FaultProxy:
    def __init__(self, upstream: str, *, rate: float = 0.0, seed: int = 0, kinds=KINDS,
                 max_faulty_attempt: int = 3, timeout_delay_s: float = 1.0, observe: bool = True,
                 hold_after: int | None = None):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 80)
        self.rate = rate
        self.kinds = tuple(kinds)
        self.max_faulty_attempt = max_faulty_attempt
        self.timeout_delay_s = timeout_delay_s
        self.observe = observe
        self.hold_after = hold_after
        self.held = 0  # requests that waited for release()
        self._open = threading.Event()
        if hold_after is None:
            self._open.set()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.retried = 0  # requests with attempt > 1 (botocore retries), any cause
        self.faults: Counter = Counter()  # by kind
        self.faults_by_op: Counter = Counter()
        self.by_op: Counter = Counter()
        self.events: list[Event] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ life cycle

    def start(self) -> str:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="faultproxy", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def release(self) -> None:
        """Let every held request through, and every later one."""
        self._open.set()

    # ------------------------------------------------------------------ decisions

    def _hold(self) -> None:
        with self._lock:
            if self._open.is_set() or self.requests <= self.hold_after:
                return
            self.held += 1
        self._open.wait()

    def _decide(self, attempt: int) -> str | None:
        with self._lock:
            self.requests += 1
            if attempt > 1:
                self.retried += 1
            if self.rate <= 0 or attempt > self.max_faulty_attempt:
                return None
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds)

    def _count_fault(self, kind: str, op: str) -> None:
        with self._lock:
            self.faults[kind] += 1
            self.faults_by_op[op] += 1

    def _record(self, event: Event) -> None:
        with self._lock:
            self.by_op[event.op] += 1
            if self.observe:
                self.events.append(event)

    # ------------------------------------------------------------------ summaries

    @property
    def injected(self) -> int:
        return sum(self.faults.values())

    def s3_writes(self, bucket: str, prefix: str = "") -> Counter:
        """Successful S3 writes (the endpoint answered 2xx) per key under ``bucket/prefix``."""
        writes: Counter = Counter()
        for e in self.events:
            if e.op == "s3:PUT" and 200 <= e.status < 300 and e.data.get("bucket") == bucket \
                    and e.data.get("key", "").startswith(prefix) and not e.data.get("part"):
                writes[e.data["key"]] += 1
        return writes


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client killed mid-request is expected here
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes | None:
        """The request's body; None when the client went away before sending all of it (a worker
        SIGKILLed mid-upload). Such a request must not reach the endpoint: no server applies a
        request whose body was cut short, and moto does not check Content-MD5, so forwarding the
        part that came would store a truncated object."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            for _ in range(1_000_000):
                line = self.rfile.readline()
                if not line:
                    return None
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                if len(chunks[-1]) < size:
                    return None
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self, "_conn", None)
        if conn is None:
            conn = self._conn = http.client.HTTPConnection(*self.owner.upstream, timeout=90)
        return conn

    def _forward(self, body: bytes):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            conn = self._upstream()
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            except (OSError, http.client.HTTPException):
                conn.close()
                self._conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def _service_op(self, body: bytes) -> tuple[str, str]:
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith("AmazonSQS."):
            return "sqs", target.split(".", 1)[1]
        if b"Action=" in body[:200] and self.command == "POST" and "/" == urlsplit(self.path).path[:1]:
            if b"Version=2012-11-05" in body:
                return "sqs", "query"
        return "s3", self.command

    def _do(self) -> None:
        owner = self.owner
        body = self._body()
        if body is None:
            self.close_connection = True
            return
        service, op = self._service_op(body)
        opname = f"{service}:{op}"
        ua = self.headers.get("User-Agent", "")
        m = _APP_RE.search(ua)
        app = m.group(1) if m else ""
        m = _ATTEMPT_RE.search(self.headers.get("amz-sdk-request", ""))
        attempt = int(m.group(1)) if m else 1
        kind = owner._decide(attempt)
        owner._hold()
        if kind in ("503", "500", "reset"):
            owner._count_fault(kind, opname)
            if kind == "reset":
                self._reset()
                return
            self._error(int(kind), service)
            return
        t0 = time.monotonic()
        try:
            status, reason, headers, data = self._forward(body)
        except (OSError, http.client.HTTPException):
            self._error(502, service)
            return
        t1 = time.monotonic()
        event = Event(t0=t0, t1=t1, app=app, op=opname, status=status, delivered=True,
                      data=self._observe(service, op, body, status, data))
        if kind == "timeout":
            owner._count_fault(kind, opname)
            event.delivered = False
            owner._record(event)
            time.sleep(owner.timeout_delay_s)
            self._reset()
            return
        try:
            self.send_response_only(status, reason)
            head_like = self.command == "HEAD" or status in (204, 304)
            for k, v in headers:
                if k.lower() in _HOP or k.lower() in ("date", "server"):
                    if not (head_like and k.lower() == "content-length"):
                        continue
                self.send_header(k, v)
            if not head_like:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head_like:
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            event.delivered = False
            self.close_connection = True
        owner._record(event)

    def _error(self, status: int, service: str) -> None:
        if service == "sqs":
            code = "ServiceUnavailable" if status == 503 else "InternalFailure"
            payload = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": "injected fault"}).encode()
            ctype = "application/x-amz-json-1.0"
            extra = [("x-amzn-query-error", f"{code};Receiver")]
        else:
            code = "SlowDown" if status == 503 else ("InternalError" if status == 500 else "BadGateway")
            payload = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                       f"<Message>injected fault</Message></Error>").encode()
            ctype = "application/xml"
            extra = []
        try:
            self.send_response_only(status)
            self.send_header("Content-Type", ctype)
            for k, v in extra:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _observe(self, service: str, op: str, body: bytes, status: int, data: bytes) -> dict:
        if not self.owner.observe:
            return {}
        try:
            if service == "s3":
                parts = urlsplit(self.path)
                bucket, _, key = parts.path.lstrip("/").partition("/")
                query = parse_qs(parts.query, keep_blank_values=True)
                return {"bucket": unquote(bucket), "key": unquote(key),
                        "prefix": query.get("prefix", [None])[0],
                        "part": "partNumber" in query or "uploadId" in query}
            req = json.loads(body or b"{}")
            resp = json.loads(data or b"{}") if status == 200 else {}
            q = req.get("QueueUrl", "").rsplit("/", 1)[-1]
            if op == "ReceiveMessage":
                return {"queue": q, "visibility": req.get("VisibilityTimeout"),
                        "messages": [(x["MessageId"], x["ReceiptHandle"],
                                      int(x.get("Attributes", {}).get("ApproximateReceiveCount", 0)))
                                     for x in resp.get("Messages", [])]}
            if op == "DeleteMessage":
                return {"queue": q, "ok": [req.get("ReceiptHandle")] if status == 200 else [],
                        "refused": [] if status == 200 else [req.get("ReceiptHandle")]}
            if op == "DeleteMessageBatch":
                ids = {e["Id"]: e["ReceiptHandle"] for e in req.get("Entries", [])}
                return {"queue": q, "ok": [ids[s["Id"]] for s in resp.get("Successful", []) if s["Id"] in ids],
                        "refused": [ids[f["Id"]] for f in resp.get("Failed", []) if f.get("Id") in ids]}
            if op == "ChangeMessageVisibility":
                return {"queue": q, "changes": [(req.get("ReceiptHandle"), req.get("VisibilityTimeout"))]
                        if status == 200 else []}
            if op == "ChangeMessageVisibilityBatch":
                ids = {e["Id"]: (e["ReceiptHandle"], e["VisibilityTimeout"]) for e in req.get("Entries", [])}
                return {"queue": q, "changes": [ids[s["Id"]] for s in resp.get("Successful", []) if s["Id"] in ids]}
            if op in ("SendMessage", "SendMessageBatch"):
                n = 1 if op == "SendMessage" else len(resp.get("Successful", []))
                return {"queue": q, "sent": n if status == 200 else 0}
        except (ValueError, KeyError, TypeError):
            return {"unparsed": True}
        return {}

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _do
