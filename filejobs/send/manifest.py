"""The batch manifest: the files of one batch, written to S3 once a run ends, for ``jobctl status``."""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Iterator

from .. import message
from ..records import JournalRow, ManifestEntry, ManifestHeader
from ..transfer import TransferConfig, put_file


def manifest_lines(header: ManifestHeader, rows: Iterable[JournalRow]) -> Iterator[str]:
    """The header line, then one line per file (key, size, ETag), each ending in a newline."""
    yield header.encode() + "\n"
    for row in rows:
        yield ManifestEntry(key=message.input_key(header.input_prefix, row.rel), size=row.size,
                            etag=row.etag).encode() + "\n"


def upload_lines(s3, bucket: str, key: str, lines: Iterable[str], *, transfer: TransferConfig) -> None:
    """Spool ``lines`` to a temporary file (flat memory for any batch size), then upload it."""
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(lines)
        put_file(s3, path, bucket, key, config=transfer)
    finally:
        os.unlink(path)
