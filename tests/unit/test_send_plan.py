"""The plan: per file, what the journal allows (skip, send only, upload) — and nothing else."""

import pytest

from filejobs.records import JournalRow
from filejobs.send.plan import SEND_ONLY, SKIP, UPLOAD, Step, plan, plan_files
from filejobs.send.walk import LocalFile


def local(rel="r", size=3, mtime=10):
    return LocalFile(path=f"/d/{rel}", rel=rel, size=size, mtime_ns=mtime)


def row(size=3, mtime=10, state="sent", etag='"e"'):
    return JournalRow(rel="r", size=size, mtime_ns=mtime, etag=etag, state=state, batch_id="b")


@pytest.mark.parametrize("previous, force, action", [
    (None, False, UPLOAD),
    (row(), False, SKIP),
    (row(state="uploaded"), False, SEND_ONLY),
    (row(size=4), False, UPLOAD),
    (row(mtime=11), False, UPLOAD),
    (row(), True, UPLOAD),
])
def test_the_plan_skips_only_files_already_sent_unchanged(previous, force, action):
    assert plan(local(), previous, force=force) == action


def test_planned_steps_carry_the_etag_to_check_only_when_sending_without_an_upload():
    journal = {"sent": row(), "half": row(state="uploaded", etag='"half"'), "changed": row(size=9)}
    files = [local("sent"), local("half"), local("changed"), local("new")]
    steps = list(plan_files(files, journal.get, force=False))
    assert steps == [Step(files[0], SKIP), Step(files[1], SEND_ONLY, '"half"'), Step(files[2], UPLOAD),
                     Step(files[3], UPLOAD)]


def test_force_plans_every_file_as_an_upload_without_reading_the_journal():
    def no_lookup(rel):
        raise AssertionError(f"looked up {rel}")

    assert [s.action for s in plan_files([local("a"), local("b")], no_lookup, force=True)] == [UPLOAD, UPLOAD]


def test_planning_is_lazy():
    def files():
        yield local("a")
        raise AssertionError("walked past the first file")

    assert next(plan_files(files(), lambda _: None, force=False)).file.rel == "a"
