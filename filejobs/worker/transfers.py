"""A job's GET (input to file) and PUT (output) for handle.py: through the AWS CRT (filejobs.crt,
the optional ``crt`` extra) when getjobs chose it, else through transfer.py (botocore).

Why: botocore costs ≈1 ms of Python CPU per small request and holds the GIL while it signs and
sends; the CRT does the request natively (bench/README, "issue 14, worker side"). Only small
objects go through the CRT, as in sendjobs: inputs whose job names a size up to ``in_memory_max``
(1 MiB; a job without a size, or a larger one, is fetched by transfer.py's streamed GET) and
outputs up to that size (transfer.py's bounded multipart for the rest). A job thread waits for
its request as it waits for botocore's, so handle.py's flow is unchanged; CRT errors arrive as
botocore ``ClientError``s (``crt.client_error``), so ``aws.is_precondition_failed`` & co. read
them alike. An answer that the bucket must be reached another way (a redirect) sends that
request and all later ones through botocore, which follows redirects.
"""

from __future__ import annotations

import os
import threading

from .. import aws, crt
from ..transfer import TransferConfig, get_to_file, put_file


class Transfers:
    def __init__(self, s3, *, config: TransferConfig = TransferConfig(), putter=None):
        """``putter``: a ``crt.CrtPutter``, or None for botocore only. It is closed by ``close``."""
        self.s3 = s3
        self.config = config
        self.putter = putter
        self._refused = False  # the CRT was told to go elsewhere once: botocore from then on

    def close(self) -> None:
        if self.putter is not None:
            self.putter.close()

    def _crt(self, bucket: str, size: int | None) -> bool:
        return (self.putter is not None and not self._refused and size is not None
                and size <= self.config.in_memory_max and crt.plain_bucket(bucket))

    def get(self, bucket: str, key: str, path: str, *, if_match: str | None = None,
            size: int | None = None) -> dict:
        """Like ``transfer.get_to_file``: the response's ETag, ContentLength and VersionId; the
        file removed if the GET fails. ``size``: what the job says the object's size is."""
        if not self._crt(bucket, size):
            return get_to_file(self.s3, bucket, key, path, if_match=if_match)
        try:
            headers = self._wait(lambda done: self.putter.get(bucket, key, path, on_done=done, if_match=if_match))
            length = int(headers.get("content-length", -1))
            if length >= 0 and os.path.getsize(path) != length:
                raise IOError(f"short read: got {os.path.getsize(path)} of {length} bytes")
        except BaseException as exc:
            _unlink(path)
            if self._elsewhere(exc):
                return get_to_file(self.s3, bucket, key, path, if_match=if_match)
            raise
        return {"ETag": headers.get("etag"), "ContentLength": length if length >= 0 else None,
                "VersionId": headers.get("x-amz-version-id")}

    def put(self, path: str, bucket: str, key: str, *, metadata: dict, if_none_match: bool = False,
            if_match: str | None = None, size: int | None = None) -> str:
        """Like ``transfer.put_file``; returns the ETag S3 stored."""
        if size is None:
            size = os.path.getsize(path)
        if self._crt(bucket, size):
            try:
                headers = self._wait(lambda done: self.putter.put(
                    path, bucket, key, size=size, metadata=metadata, if_none_match=if_none_match,
                    if_match=if_match, on_done=lambda etag, error: done({"etag": etag}, error)))
            except Exception as exc:  # noqa: BLE001
                if not self._elsewhere(exc):
                    raise
            else:
                if not headers.get("etag"):
                    raise IOError("S3 accepted the upload but sent no ETag")
                return headers["etag"]
        return put_file(self.s3, path, bucket, key, config=self.config, metadata=metadata,
                        if_none_match=if_none_match, if_match=if_match, size=size).etag

    def _elsewhere(self, exc: BaseException) -> bool:
        if aws.error_code(exc) in crt.ELSEWHERE:
            self._refused = True
            return True
        return False

    @staticmethod
    def _wait(start) -> dict:
        """Start a CRT request and block this job thread until it ends (the heartbeat, the
        deleter and the other jobs run meanwhile; the CRT cancels a stalled request itself)."""
        ended = threading.Event()
        result: list = []

        def done(headers: dict, error: BaseException | None) -> None:
            result.append((headers, error))
            ended.set()

        start(done)
        ended.wait()
        headers, error = result[0]
        if error is not None:
            raise error
        return headers


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
