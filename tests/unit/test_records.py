"""The manifest, the failure record and the journal row are versioned and read strictly."""

from __future__ import annotations

import json

import pytest

from filejobs.records import ErrorRecord, JournalRow, ManifestEntry, ManifestHeader, RecordError


def test_a_manifest_header_round_trips_with_its_version():
    h = ManifestHeader(batch_id="20261204T000000Z-abc123", bucket="b-1", input_prefix="in/", output_prefix="out/",
                       queue_url="http://q", files=2, bytes=9, complete=False, written_at="2026-12-04T00:00:00+00:00")
    line = h.encode()
    assert json.loads(line)["v"] == 1
    assert ManifestHeader.decode(line) == h


def test_a_header_written_before_versioning_is_read_as_version_1():
    old = json.dumps({"batch_id": "x", "bucket": "b-1", "input_prefix": "in/", "output_prefix": "out/",
                      "queue_url": None, "files": 1, "bytes": 1, "complete": True, "written_at": "t"})
    assert ManifestHeader.decode(old).input_prefix == "in/"


@pytest.mark.parametrize("line, why", [
    ("not json", "not JSON"),
    ("[1]", "JSON list"),
    ('{"v": 2, "batch_id": "x"}', "version 2"),
    ('{"batch_id": "x", "bucket": "b"}', "lacks input_prefix, output_prefix"),
])
def test_a_bad_header_is_one_line_saying_why(line, why):
    with pytest.raises(RecordError, match=why):
        ManifestHeader.decode(line)


def test_manifest_entries_and_error_records_round_trip():
    e = ManifestEntry(key="in/ü b.txt", size=3, etag='"e"')
    assert ManifestEntry.decode(e.encode()) == e
    assert e.encode().isascii()
    r = ErrorRecord(input_key="in/a.txt", batch_id="b", attempts=3, reason="exit code 2", exit_code=2,
                    stderr_tail="boom ü", message_id="m", at="2026-12-04T00:00:00Z")
    assert ErrorRecord.decode(r.encode().encode("utf-8")) == r


def test_journal_rows_refuse_an_unknown_state():
    row = JournalRow(rel="a", size=1, mtime_ns=2, etag='"e"', state="sent", batch_id="b")
    assert JournalRow.from_tuple(row.as_tuple()) == row
    with pytest.raises(RecordError, match="unknown state"):
        JournalRow.from_tuple(("a", 1, 2, None, "lost", None))
