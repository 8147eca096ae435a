"""A batch's status from its manifest and two listings, without S3: which job is done, which failed.

Which listed key settles which wanted key is in tests/unit/test_listing.py."""

from datetime import datetime, timezone

import pytest

from filejobs.ops.status import (Manifest, failed_jobs, failure_detail, output_keys, parse_manifest, throughput,
                                 unreadable_failure)
from filejobs.records import ErrorRecord, ManifestEntry, ManifestHeader, RecordError

HEADER = ManifestHeader(batch_id="20260101T000000Z-abcdef", bucket="b-1", input_prefix="in/", output_prefix="out/")


def manifest(*keys):
    return Manifest(header=HEADER, keys=sorted(keys))


def test_a_manifest_is_read_from_its_lines_with_the_keys_sorted():
    lines = [HEADER.encode().encode(), ManifestEntry("in/b", 1).encode().encode(), b"",
             ManifestEntry("in/a", 2).encode().encode()]
    m = parse_manifest(lines)
    assert (m.header, m.keys, m.batch_id) == (HEADER, ["in/a", "in/b"], HEADER.batch_id)


@pytest.mark.parametrize("lines, why", [
    ([], "not JSON"),
    ([b'{"batch_id": "x"}'], "lacks bucket"),
    ([HEADER.encode(), '{"size": 1}'], "manifest line lacks key"),
])
def test_a_manifest_that_cannot_be_read_says_why(lines, why):
    with pytest.raises(RecordError, match=why):
        parse_manifest(lines)


def test_each_input_has_one_output_key_under_the_output_prefix():
    assert output_keys(manifest("in/a.txt", "in/d/b"), ".out") == {"in/a.txt": "out/a.txt.out",
                                                                   "in/d/b": "out/d/b.out"}


def test_a_job_failed_when_its_record_exists_and_its_output_does_not():
    outputs = output_keys(manifest("in/a", "in/b", "in/d/c"), ".out")
    errors = ["err/B/b.json", "err/B/a.json", "err/B/d/c.json", "err/B/not-in-this-batch.json"]
    # a has since succeeded (a redelivered copy, or a rerun after a fix): done wins over its old record.
    assert failed_jobs(errors, "err/B/", outputs, {"out/a.out"}, "in/") == [("in/b", "err/B/b.json"),
                                                                            ("in/d/c", "err/B/d/c.json")]


def test_a_failure_shows_the_workers_record():
    body = ErrorRecord(input_key="in/a", batch_id="B", attempts=3, reason="exit code 2", exit_code=2,
                       stderr_tail="boom\n").encode()
    assert failure_detail("in/a", body) == {"input_key": "in/a", "reason": "exit code 2", "exit_code": 2,
                                            "attempts": 3, "stderr_tail": "boom\n"}


@pytest.mark.parametrize("body, why", [
    (b"{cut", "not JSON"),
    (b'{"v": 2, "input_key": "in/a"}', "version 2"),
    (b'{"input_key": "in/a"}', "lacks attempts, reason"),
])
def test_a_failure_record_that_cannot_be_read_still_names_the_job(body, why):
    detail = failure_detail("in/a", body)
    assert detail["input_key"] == "in/a" and detail["reason"].startswith("failure record unreadable: ")
    assert why in detail["reason"] and detail["attempts"] is None
    assert unreadable_failure("in/a", "access denied")["reason"] == "failure record unreadable: access denied"


def test_throughput_and_eta_come_from_the_batch_ids_time():
    now = datetime(2026, 1, 1, 0, 1, 40, tzinfo=timezone.utc)  # 100 s after the batch began
    assert throughput(HEADER.batch_id, done=50, pending=150, now=now) == (0.5, 300.0)
    assert throughput(HEADER.batch_id, done=0, pending=200, now=now) == (None, None)
    assert throughput("not-a-time-id", done=5, pending=1, now=now) == (None, None)
