"""S3 listings as other stores page them, for the status and redrive tests.

LocalStack 2026.3.0 (measured: ``/work/scratch/localstack/REPORT.md``, summarised in
``filejobs/ops/listing.py``) walks the keys in UTF-8 order but compares the *percent-encoded* key
with ``StartAfter`` and with the key inside its continuation token (plain base64 of the next key,
percent-encoded): a key such as ``p/ä.txt`` (``p/%C3%A4.txt``) after an ASCII start key ``p/a`` is
dropped, and one that sorts before the start key can come back. ``percent_encoded=False`` pages
as S3 documents (UTF-8 binary order).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from urllib.parse import quote

from botocore.exceptions import ClientError


def list_page(objects: list[dict], *, Prefix="", StartAfter=None, ContinuationToken=None, MaxKeys=1000,
              page_size=1000, percent_encoded=True) -> dict:
    """One ListObjectsV2 response over ``objects`` (dicts with at least ``Key``)."""
    key = (lambda k: quote(k).encode()) if percent_encoded else (lambda k: k.encode("utf-8"))
    rest = sorted((o for o in objects if o["Key"].startswith(Prefix)), key=lambda o: o["Key"].encode("utf-8"))
    if StartAfter is not None:
        rest = [o for o in rest if key(o["Key"]) > key(StartAfter)]
    if ContinuationToken is not None:
        raw = base64.b64decode(ContinuationToken)
        if percent_encoded and not raw.isascii():
            raise ClientError({"Error": {"Code": "InternalError", "Message": "exception while calling "
                               "s3.ListObjectsV2: 'ascii' codec can't decode byte"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "ListObjectsV2")
        rest = [o for o in rest if key(o["Key"]) >= key(raw.decode("utf-8"))]
    page = rest[:min(MaxKeys, page_size)]
    response = {"Contents": page, "KeyCount": len(page), "IsTruncated": len(rest) > len(page)}
    if response["IsTruncated"]:
        response["NextContinuationToken"] = base64.b64encode(rest[len(page)]["Key"].encode("utf-8")).decode()
    return response


class InMemoryS3:
    """Just enough of an S3 client for a listing: ``list_objects_v2`` over fixed keys, recorded."""

    def __init__(self, keys, *, page_size=1000, percent_encoded=True):
        when = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.objects = [{"Key": k, "Size": 1, "LastModified": when} for k in keys]
        self.page_size, self.percent_encoded = page_size, percent_encoded
        self.requests: list[dict] = []

    def list_objects_v2(self, *, Bucket, **args):
        self.requests.append(args)
        return list_page(self.objects, page_size=self.page_size, percent_encoded=self.percent_encoded, **args)


class PercentEncodedListing:
    """Wraps a real S3 client (moto): ListObjectsV2 pages like LocalStack, everything else is the
    client's own. ``page_size`` caps MaxKeys so that a few keys span several pages."""

    def __init__(self, s3, *, page_size: int = 1000):
        self._s3 = s3
        self.page_size = page_size
        self.requests: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._s3, name)

    def list_objects_v2(self, *, Bucket, Delimiter=None, **args):
        self.requests.append(dict(args, Delimiter=Delimiter) if Delimiter else args)
        if Delimiter:
            assert set(args) <= {"Prefix"}, "folder listings with start keys were not measured"
            return self._s3.list_objects_v2(Bucket=Bucket, Delimiter=Delimiter, **args)
        objects = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=Bucket, Prefix=args.get("Prefix", "")):
            objects += page.get("Contents", [])
        return list_page(objects, page_size=self.page_size, **args)
