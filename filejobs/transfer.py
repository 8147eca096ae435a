"""Streaming S3 transfers with integrity checks, conditional writes and bounded memory.

boto3's transfer manager cannot pass ``IfNoneMatch``/``IfMatch`` and hides the ETag of what it
uploaded, both of which the tools need (resume and idempotent outputs), so the small multipart
logic lives here: one ``PutObject`` below ``multipart_threshold`` (one request per file), else
``CreateMultipartUpload`` + ``UploadPart`` + ``CompleteMultipartUpload``. Each request carries a
Content-MD5 so S3 rejects a corrupted body; memory is bounded by ``part_size × part_threads``.

A file up to ``in_memory_max`` is read once and sent as bytes. That is the cheap path for the many
small files the tools move: one read instead of two (MD5, then the body), and no
``Expect: 100-continue`` — botocore sets that header for any file-like body and then reads the
interim response one byte per system call (≈50 syscalls and a round trip per PUT, each a GIL
hand-off when threads share the process). A bytes body goes out with its headers in one send.
"""

from __future__ import annotations

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

MiB = 1024 * 1024
#: S3 allows at most 10,000 parts; parts grow beyond 8 MiB for files over ~78 GiB.
MAX_PARTS = 10_000


@dataclass(frozen=True)
class TransferConfig:
    multipart_threshold: int = 64 * MiB
    part_size: int = 8 * MiB
    part_threads: int = 4
    read_chunk: int = 1 * MiB
    #: Files up to this size are read into memory once and sent as bytes (see above); at most one
    #: such buffer per upload thread, no more than the ``read_chunk`` buffer a larger file needs.
    in_memory_max: int = 1 * MiB


class FileChanged(Exception):
    """The file is no longer the version the caller listed (its size or modification time differ)."""


@dataclass(frozen=True)
class PutResult:
    etag: str
    size: int
    parts: int


def file_md5(path: str, chunk: int = MiB) -> tuple[str, int]:
    """(hex MD5, size) of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def read_small(path: str, *, size: int, mtime_ns: int | None = None) -> bytes:
    """The whole file, read with one open; FileChanged if it is not ``size`` bytes (and, given
    ``mtime_ns``, modified at that time) once read, so what is sent is the version listed."""
    with open(path, "rb", buffering=0) as fh:
        data = fh.read(size + 1)
        st = os.fstat(fh.fileno())
    if len(data) != size or st.st_size != size or (mtime_ns is not None and st.st_mtime_ns != mtime_ns):
        raise FileChanged(path)
    return data


def put_file(s3, path: str, bucket: str, key: str, *, config: TransferConfig = TransferConfig(),
             metadata: dict | None = None, if_none_match: bool = False, if_match: str | None = None,
             size: int | None = None, md5_hex: str | None = None, mtime_ns: int | None = None) -> PutResult:
    """Upload ``path`` to ``bucket/key``; return the ETag S3 stored.

    ``if_none_match`` turns the write into create-only (S3 answers 412 if the key exists);
    ``if_match`` replaces only the object with that ETag. Both raise botocore's ClientError
    (``PreconditionFailed``) to the caller, which decides what a conflict means. Given ``size``
    and ``mtime_ns`` (what a directory listing saw), FileChanged is raised if the file changed
    before it was read (small files: nothing is uploaded) or while it was uploaded.
    """
    if size is None:
        size = os.path.getsize(path)
    extra = {}
    if metadata:
        extra["Metadata"] = metadata
    if if_none_match:
        extra["IfNoneMatch"] = "*"
    if if_match:
        extra["IfMatch"] = if_match
    if size <= min(config.in_memory_max, config.multipart_threshold - 1):
        data = read_small(path, size=size, mtime_ns=mtime_ns)
        md5 = bytes.fromhex(md5_hex) if md5_hex else hashlib.md5(data, usedforsecurity=False).digest()
        response = s3.put_object(Bucket=bucket, Key=key, Body=data, ContentLength=size, ContentMD5=_b64(md5),
                                 **extra)
        return PutResult(etag=response["ETag"], size=size, parts=1)
    if size < config.multipart_threshold:
        if md5_hex is None:
            md5_hex, size = file_md5(path, config.read_chunk)
        with open(path, "rb") as body:
            response = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=size,
                                     ContentMD5=_b64(bytes.fromhex(md5_hex)), **extra)
        result = PutResult(etag=response["ETag"], size=size, parts=1)
    else:
        result = _put_multipart(s3, path, bucket, key, size=size, config=config, extra=extra)
    if mtime_ns is not None:
        after = os.stat(path)
        if after.st_size != size or after.st_mtime_ns != mtime_ns:
            raise FileChanged(path)
    return result


def _put_multipart(s3, path, bucket, key, *, size, config, extra) -> PutResult:
    part_size = max(config.part_size, -(-size // MAX_PARTS))
    create_args = {k: v for k, v in extra.items() if k == "Metadata"}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]
    try:
        count = max(1, -(-size // part_size))

        def send(number: int) -> dict:
            with open(path, "rb") as fh:
                fh.seek((number - 1) * part_size)
                data = fh.read(part_size)
            md5 = hashlib.md5(data, usedforsecurity=False).digest()
            response = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                      Body=data, ContentMD5=_b64(md5))
            return {"PartNumber": number, "ETag": response["ETag"]}

        # Parts are submitted in windows so no more than part_threads × 2 are ever read ahead.
        parts = []
        with ThreadPoolExecutor(max_workers=config.part_threads) as pool:
            window = config.part_threads * 2
            for start in range(1, count + 1, window):
                parts.extend(pool.map(send, range(start, min(count, start + window - 1) + 1)))
        complete_args = {k: v for k, v in extra.items() if k in ("IfNoneMatch", "IfMatch")}
        response = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                MultipartUpload={"Parts": parts}, **complete_args)
    except BaseException:
        # An abandoned upload keeps costing storage until a lifecycle rule removes it.
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - best effort; the original error matters more
            pass
        raise
    return PutResult(etag=response["ETag"], size=size, parts=count)


def get_to_file(s3, bucket: str, key: str, path: str, *, if_match: str | None = None,
                chunk: int = MiB) -> dict:
    """Stream an object to ``path`` with one GetObject; return the response headers
    (ETag, ContentLength, Metadata). Partial files are removed on failure."""
    args = {"Bucket": bucket, "Key": key}
    if if_match:
        args["IfMatch"] = if_match
    response = s3.get_object(**args)
    body = response["Body"]
    written = 0
    try:
        with open(path, "xb") as out:
            for block in body.iter_chunks(chunk):
                out.write(block)
                written += len(block)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    finally:
        body.close()
    expected = response.get("ContentLength")
    if expected is not None and written != expected:
        os.unlink(path)
        raise IOError(f"short read: got {written} of {expected} bytes")
    return {k: response.get(k) for k in ("ETag", "ContentLength", "Metadata", "VersionId")}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
