"""Single-part S3 uploads (and small downloads, for getjobs) through the AWS Common Runtime
(``awscrt``), the optional ``crt`` extra.

Why: a small PUT through botocore costs ≈1 ms of Python CPU (request building, signing, http.client)
and holds the GIL; the CRT does the same request in native code on its own event-loop threads
for ≈0.15 ms of CPU, and needs no thread per upload (bench/README, "AWS CRT"). Only single-part
uploads of small files go this way (the CRT holds a body in memory to checksum it before sending
its headers); larger files keep transfer.py's streamed and bounded multipart uploads.

What stays the same as transfer.put_file: the object's address is botocore's own (virtual-hosted
or path-style, custom endpoints, all from one presigned URL per bucket, so the profile's S3
settings apply); requests are signed (SigV4) with the session's credentials, refreshed by
botocore; the body carries a checksum S3 verifies (CRC32, computed by the CRT from the bytes it
sends: ``x-amz-checksum-crc32``,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html);
``If-None-Match``/``If-Match`` and metadata are headers; the ETag comes from the response. S3's
error answers become botocore ``ClientError``s, so ``aws.describe``/``is_fatal`` read them as
they read botocore's. The CRT retries throttling, 5xx and connection errors itself (5 retries,
exponential backoff); a request still running after ``stall_s`` is cancelled.
"""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ElementTree
from typing import Callable
from urllib.parse import quote, urlsplit

import botocore.exceptions as bexc

from . import aws

MiB = 1024 * 1024
_PLAIN_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PROBE_KEY = "filejobs-address-probe"
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def available() -> bool:
    try:
        import awscrt.s3  # noqa: F401
    except ImportError:
        return False
    return True


#: S3 answers that mean "not this endpoint / region": botocore re-addresses those, the CRT cannot.
ELSEWHERE = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301",
             "TemporaryRedirect", "307"}
CHOICES = ("auto", "crt", "botocore")


def choose(choice: str, clients: aws.Clients, bucket: str | None, environ) -> str:
    """"crt" or "botocore" for ``choice``: "auto" takes the CRT when it is installed and can serve
    this bucket (None: any plain bucket, checked per request); "crt" insists (ValueError with the
    reason when it cannot)."""
    if choice == "botocore":
        return "botocore"
    why = "the AWS CRT is not installed (pip install 'filejobs[crt]')" if not available() else \
        unsupported(clients, bucket, environ)
    if why is None:
        return "crt"
    if choice == "crt":
        raise ValueError(f"cannot use the AWS CRT: {why}")
    return "botocore"


def plain_bucket(bucket: str) -> bool:
    """Access points, S3 Express directory buckets and ARNs are addressed and signed differently."""
    return bool(_PLAIN_BUCKET.match(bucket)) and not bucket.endswith("--x-s3")


def unsupported(clients: aws.Clients, bucket: str | None, environ: dict) -> str | None:
    """Why the CRT cannot stand in for botocore here, or None. Proxies and CA bundles other than
    a file are botocore features this module does not carry over; see also ``plain_bucket``."""
    if bucket is not None and not plain_bucket(bucket):
        return "the bucket is not a plain bucket name"
    if any(environ.get(v) for v in _PROXY_VARS) or clients.s3.meta.config.proxies:
        return "a proxy is configured"
    return None


class CrtPutter:
    """Asynchronous single-part PUTs of files, at most ``connections`` at once (the CRT's own
    limit; callers bound what they submit). ``put`` returns at once; ``on_done(etag, error)`` is
    called from a CRT thread when the request ends."""

    def __init__(self, clients: aws.Clients, *, connections: int, stall_s: float = 300.0):
        from awscrt.auth import AwsCredentials, AwsCredentialsProvider
        from awscrt.io import ClientBootstrap, ClientTlsContext, DefaultHostResolver, EventLoopGroup, TlsContextOptions
        from awscrt.s3 import S3Client, S3RequestTlsMode

        self.s3 = clients.s3
        self.stall_s = stall_s
        self.endpoint_url = self.s3.meta.endpoint_url
        endpoint = urlsplit(self.endpoint_url)
        credentials = clients.session.get_credentials() if clients.session else None

        def current():
            frozen = credentials.get_frozen_credentials()  # botocore refreshes expiring ones here
            return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

        tls = {"tls_mode": S3RequestTlsMode.DISABLED}
        if endpoint.scheme == "https":
            tls = {"tls_mode": S3RequestTlsMode.ENABLED}
            # boto3's Session keeps botocore's, which knows the profile's ca_bundle and AWS_CA_BUNDLE.
            core = getattr(clients.session, "_session", clients.session)
            ca_bundle = core.get_config_variable("ca_bundle") if core else None
            if ca_bundle:
                options = TlsContextOptions()
                options.override_default_trust_store_from_path(ca_filepath=ca_bundle)
                tls["tls_connection_options"] = ClientTlsContext(options).new_connection_options()
        loop = EventLoopGroup(0)  # one event-loop thread per core
        self._client = S3Client(
            bootstrap=ClientBootstrap(loop, DefaultHostResolver(loop)), region=self.s3.meta.region_name,
            credential_provider=AwsCredentialsProvider.new_delegate(current) if credentials else None,
            max_active_connections_override=connections, connect_timeout_ms=5000, part_size=8 * MiB,
            multipart_upload_threshold=5 * 1024 * MiB, **tls)
        self._addresses: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._running: dict[int, tuple[float, object]] = {}
        self._cancelled: set[int] = set()
        self._ids = iter(range(1 << 62))
        self._closed = threading.Event()
        self._watch = threading.Thread(target=self._cancel_stalled, daemon=True, name="crt-watch")
        self._watch.start()

    def close(self) -> None:
        self._closed.set()
        self._watch.join()

    def address(self, bucket: str) -> tuple[str, str]:
        """(Host header, path before the key) of ``bucket``, as botocore would address it."""
        with self._lock:
            found = self._addresses.get(bucket)
        if found is None:
            url = urlsplit(self.s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": _PROBE_KEY},
                                                          ExpiresIn=60))
            found = (url.netloc, url.path[:-len(_PROBE_KEY)])
            with self._lock:
                self._addresses[bucket] = found
        return found

    def put(self, path: str, bucket: str, key: str, *, size: int, on_done: Callable[[str | None, BaseException | None],
            None], metadata: dict | None = None, if_none_match: bool = False, if_match: str | None = None) -> None:
        from awscrt.http import HttpHeaders, HttpRequest
        from awscrt.s3 import S3ChecksumAlgorithm, S3ChecksumConfig, S3ChecksumLocation, S3RequestType

        host, before_key = self.address(bucket)
        # The algorithm is named as the SDKs name it, so endpoints that only record a checksum
        # when told its algorithm (moto) keep it too; S3 verifies the x-amz-checksum-crc32 value.
        headers = [("Host", host), ("Content-Length", str(size)), ("x-amz-sdk-checksum-algorithm", "CRC32")]
        headers += [(f"x-amz-meta-{k}", v) for k, v in (metadata or {}).items()]
        if if_none_match:
            headers.append(("If-None-Match", "*"))
        if if_match:
            headers.append(("If-Match", if_match))
        request = HttpRequest("PUT", before_key + quote(key, safe="/~"), HttpHeaders(headers))
        checksum = S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32, location=S3ChecksumLocation.HEADER)

        def finished(headers: dict, error: BaseException | None) -> None:
            on_done(headers.get("etag"), error)

        self._submit(S3RequestType.PUT_OBJECT, request, "PutObject", finished, send_filepath=path,
                     checksum_config=checksum)

    def get(self, bucket: str, key: str, path: str, *, on_done: Callable[[dict, BaseException | None], None],
            if_match: str | None = None) -> None:
        """GET ``key`` into the file ``path`` (written by the CRT); ``on_done(headers, error)`` with
        the response's headers (lower-case names). ``validate_response`` asks the CRT to check the
        bytes against the object's stored checksum when S3 returns one (awscrt S3ChecksumConfig);
        the caller checks the length against Content-Length."""
        from awscrt.http import HttpHeaders, HttpRequest
        from awscrt.s3 import S3ChecksumConfig, S3RequestType

        host, before_key = self.address(bucket)
        headers = [("Host", host)] + ([("If-Match", if_match)] if if_match else [])
        request = HttpRequest("GET", before_key + quote(key, safe="/~"), HttpHeaders(headers))
        self._submit(S3RequestType.GET_OBJECT, request, "GetObject", on_done, recv_filepath=path,
                     checksum_config=S3ChecksumConfig(validate_response=True))

    def _submit(self, kind, request, operation: str, on_done: Callable[[dict, BaseException | None], None],
                **files) -> None:
        received: dict[str, str] = {}
        ident = next(self._ids)

        def on_headers(status_code, headers, **_):
            received.update((k.lower(), v) for k, v in headers)

        def finished(error=None, error_headers=None, error_body=None, status_code=None, **_):
            with self._lock:
                self._running.pop(ident, None)
                stalled = ident in self._cancelled
                self._cancelled.discard(ident)
            if error is None:
                on_done(received, None)
            elif stalled:
                on_done(received, bexc.ReadTimeoutError(endpoint_url=self.endpoint_url))
            else:
                on_done(received, client_error(error, status_code, error_body, endpoint_url=self.endpoint_url,
                                              operation=operation))

        crt_request = self._client.make_request(type=kind, request=request, on_headers=on_headers,
                                                on_done=finished, **files)
        with self._lock:
            if ident not in self._running:  # it may have ended already
                self._running[ident] = (time.monotonic() + self.stall_s, crt_request)

    def _cancel_stalled(self) -> None:
        # No per-request read timeout in the CRT's Python API: a request that outlives stall_s is
        # cancelled, so a hung connection fails one file instead of hanging the run.
        while not self._closed.wait(min(5.0, self.stall_s / 4)):
            now = time.monotonic()
            with self._lock:
                late = [(i, r) for i, (deadline, r) in self._running.items() if deadline < now]
                self._cancelled.update(i for i, _ in late)
            for _, r in late:
                r.cancel()


def client_error(error: BaseException, status_code: int | None, body: bytes | None, *,
                 endpoint_url: str = "", operation: str = "PutObject") -> BaseException:
    """S3's error answer as botocore's ClientError (code and message from its XML body); a
    connection failure as botocore's EndpointConnectionError; anything else as it is."""
    if status_code:
        code, text = str(status_code), ""
        try:
            root = ElementTree.fromstring(body or b"")
            code = root.findtext("Code") or code
            text = root.findtext("Message") or ""
        except ElementTree.ParseError:
            pass
        return bexc.ClientError({"Error": {"Code": code, "Message": text},
                                 "ResponseMetadata": {"HTTPStatusCode": status_code}}, operation)
    name = getattr(error, "name", "")
    if name.startswith(("AWS_IO_SOCKET", "AWS_IO_DNS", "AWS_ERROR_HTTP_CONNECTION", "AWS_IO_TLS")):
        return bexc.EndpointConnectionError(endpoint_url=endpoint_url)
    return error
