"""The resume journal and the batch manifest it feeds (SQLite on disk, no AWS)."""

import sqlite3

from filejobs.records import JournalRow, ManifestEntry, ManifestHeader
from filejobs.send.journal import Journal
from filejobs.send.manifest import manifest_lines


def row(rel, state="sent", size=1, batch="b1"):
    return JournalRow(rel=rel, size=size, mtime_ns=7, etag=f'"{rel}"', state=state, batch_id=batch)


def test_rows_and_the_open_batch_survive_a_restart(tmp_path):
    path = str(tmp_path / "state" / "j.sqlite")
    journal = Journal(path)
    journal.record([row("a", "uploaded"), row("b")])
    journal.set_meta("open_batch", "b1")
    journal.close()
    again = Journal(path)
    try:
        assert (again.lookup("a"), again.lookup("b"), again.lookup("c")) == (row("a", "uploaded"), row("b"), None)
        assert again.get_meta("open_batch") == "b1"
    finally:
        again.close()


def test_a_later_row_replaces_the_earlier_one_of_the_same_file(tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite"))
    journal.record([row("a", "uploaded")], wait=False)
    journal.record([row("a", "sent")])
    journal.close()
    journal = Journal(str(tmp_path / "j.sqlite"))
    assert journal.lookup("a").state == "sent"
    journal.close()


def test_a_row_in_an_unknown_state_is_read_as_no_row_so_the_file_is_sent_again(tmp_path):
    path = str(tmp_path / "j.sqlite")
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO files VALUES ('a', 1, 7, '\"e\"', 'half-written', 'b1')")
    journal = Journal(path)
    assert journal.lookup("a") is None
    journal.close()


def test_the_sent_rows_of_a_batch_are_counted_and_listed_by_name(tmp_path):
    journal = Journal(str(tmp_path / "j.sqlite"))
    journal.record([row("b", size=2), row("a", size=3), row("c", "uploaded"), row("d", batch="b0")], wait=False)
    assert journal.sent_totals("b1") == (2, 5)  # waits for the rows recorded without waiting
    assert [r.rel for r in journal.sent_rows("b1")] == ["a", "b"]
    journal.close()


def test_the_manifest_is_a_header_then_one_entry_per_file_under_the_input_prefix():
    header = ManifestHeader(batch_id="b1", bucket="bkt", input_prefix="in/", output_prefix="out/", files=2, bytes=5)
    lines = list(manifest_lines(header, [row("a", size=3), row("sub/ü", size=2)]))
    assert all(line.endswith("\n") for line in lines)
    assert ManifestHeader.decode(lines[0]) == header
    assert [ManifestEntry.decode(x) for x in lines[1:]] == [ManifestEntry("in/a", 3, '"a"'),
                                                            ManifestEntry("in/sub/ü", 2, '"sub/ü"')]
