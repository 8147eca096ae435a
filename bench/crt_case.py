#!/usr/bin/env python3
"""One CRT-evaluation case in its own process (bench_crt.py reads its CPU and peak RSS via wait4).

    crt_case.py CASE ENDPOINT_URL BUCKET SRC [OPTIONS_JSON]

CASE = {small,big}-{project,crt-md5,crt-crc32}
  project   = filejobs.transfer.put_file on the tools' boto3 client, 16 threads (small) / 1 (big)
  crt-md5   = awscrt.s3.S3Client, the file read in Python, its Content-MD5 computed here and sent
              as a header with the bytes (what S3 verifies today); all requests submitted at once
  crt-crc32 = awscrt.s3.S3Client sending the file from disk (send_filepath) with a CRC32 checksum
              the CRT computes (x-amz-checksum-crc32, verified by S3; multipart: per part)
OPTIONS_JSON (big, crt-*): S3Client settings, e.g. {"part_size": 8388608, "memory_limit": 268435456,
"max_active_connections_override": 4}. Prints one JSON line: the transfer phase's CPU and wall.
"""

import base64
import hashlib
import io
import json
import os
import sys
import time

case, endpoint, bucket, src = sys.argv[1:5]
options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
size_kind, impl = case.split("-", 1)
names = sorted(os.listdir(src))
REGION = "us-east-1"
MiB = 2**20


def report(t0, c0, **extra):
    c1 = os.times()
    print(json.dumps({"case": case, "files": len(names), "phase_wall_s": time.monotonic() - t0,
                      "phase_cpu_s": (c1.user - c0.user) + (c1.system - c0.system), **extra}))


def project():
    from concurrent.futures import ThreadPoolExecutor

    from filejobs import aws
    from filejobs.transfer import put_file

    s3 = aws.make_clients(aws.Target(region=REGION, endpoint_url=endpoint), max_pool_connections=20).s3
    t0, c0 = time.monotonic(), os.times()

    def one(name):
        path = os.path.join(src, name)
        st = os.stat(path)
        return put_file(s3, path, bucket, f"project/{name}", size=st.st_size, mtime_ns=st.st_mtime_ns).etag

    with ThreadPoolExecutor(16 if len(names) > 1 else 1) as pool:
        etags = list(pool.map(one, names))
    report(t0, c0, etags=len(etags), etag_example=etags[0])


def crt(checksum: str):
    from awscrt.auth import AwsCredentialsProvider
    from awscrt.http import HttpHeaders, HttpRequest
    from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
    from awscrt.s3 import (S3ChecksumAlgorithm, S3ChecksumConfig, S3ChecksumLocation, S3Client, S3RequestTlsMode,
                           S3RequestType)

    host = endpoint.split("://", 1)[1].rstrip("/")
    elg = EventLoopGroup(2)
    settings = {"part_size": 8 * MiB, "multipart_upload_threshold": 64 * MiB, **options}
    client = S3Client(bootstrap=ClientBootstrap(elg, DefaultHostResolver(elg)), region=REGION,
                      tls_mode=S3RequestTlsMode.DISABLED, credential_provider=AwsCredentialsProvider.new_static(
                          os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]), **settings)
    # fauxqs 1.9.2 stores an empty object when CompleteMultipartUpload lists part checksums: no
    # checksum on the multipart (big) case there; moto and S3 take them (bench/README).
    crc = None if size_kind == "big" else S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32,
                                                            location=S3ChecksumLocation.HEADER)
    t0, c0 = time.monotonic(), os.times()
    etags, requests = {}, []
    for name in names:
        path = os.path.join(src, name)
        size = os.path.getsize(path)
        headers = [("Host", host), ("Content-Length", str(size)), ("Content-Type", "application/octet-stream")]
        kw = {}
        if checksum == "md5":
            with open(path, "rb") as fh:
                data = fh.read()
            headers.append(("Content-MD5", base64.b64encode(hashlib.md5(data).digest()).decode()))
            body = io.BytesIO(data)
        else:
            body, kw = None, {"send_filepath": path, "checksum_config": crc}
        request = HttpRequest("PUT", f"/{bucket}/crt-{checksum}/{name}", HttpHeaders(headers), body_stream=body)

        def on_headers(status_code, headers, _name=name, **_):
            etags.update({_name: v for k, v in headers if k.lower() == "etag"})

        requests.append(client.make_request(type=S3RequestType.PUT_OBJECT, request=request, on_headers=on_headers,
                                            **kw))
    for r in requests:
        r.finished_future.result(600)
    report(t0, c0, etags=len(etags), etag_example=next(iter(etags.values()), None))


if impl == "project":
    project()
else:
    crt(impl.split("-", 1)[1])
