"""Job folders: private, made once, emptied between jobs, never shared by two jobs at once."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile

import pytest

from filejobs.worker.folders import Folders, empty, remove
from testing.helpers import RecordingLog


def folders(tmp_path) -> Folders:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Folders(str(work), log=RecordingLog())


def write(path, data="x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(data)


def test_a_folder_is_private_with_empty_in_and_out_and_named_for_the_stale_cleanup(tmp_path):
    f = folders(tmp_path)
    with f.job() as folder:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert os.path.basename(folder).startswith(f"job-{os.getpid()}-")
        assert sorted(os.listdir(folder)) == ["in", "out"]


def test_the_next_job_gets_the_same_folder_with_nothing_of_the_previous_job_in_it(tmp_path):
    f = folders(tmp_path)
    with f.job() as first:
        write(os.path.join(first, "in", "a.txt"))
        write(os.path.join(first, "out", "a.txt.out", "pages", "1.txt"))
        write(os.path.join(first, ".stderr"))
        write(os.path.join(first, "scratch", "deep", "tmp.bin"))
    with f.job() as second:
        assert second == first
        assert sorted(os.listdir(second)) == ["in", "out"]
        assert os.listdir(os.path.join(second, "in")) == os.listdir(os.path.join(second, "out")) == []


def test_jobs_running_at_the_same_time_never_share_a_folder(tmp_path):
    f = folders(tmp_path)
    with f.job() as a, f.job() as b, f.job() as c:
        assert len({a, b, c}) == 3
    with f.job() as again:
        assert again in (a, b, c)  # reused, not made anew
    assert len(os.listdir(tmp_path / "work")) == 3


@pytest.mark.parametrize("change", ["in is a symlink", "out is a file", "in is gone", "mode changed"])
def test_a_folder_its_command_changed_is_removed_and_a_new_one_made(tmp_path, change):
    outside = tmp_path / "outside"
    outside.mkdir()
    write(str(outside / "keep.txt"))
    f = folders(tmp_path)
    with f.job() as first:
        if change == "in is a symlink":
            os.rmdir(os.path.join(first, "in"))
            os.symlink(outside, os.path.join(first, "in"))
        elif change == "out is a file":
            os.rmdir(os.path.join(first, "out"))
            write(os.path.join(first, "out"))
        elif change == "in is gone":
            os.rmdir(os.path.join(first, "in"))
        else:
            os.chmod(first, 0o755)
    assert not os.path.lexists(first)
    assert os.listdir(outside) == ["keep.txt"]  # a symlink is removed, never followed
    with f.job() as second:
        assert second != first and sorted(os.listdir(second)) == ["in", "out"]


def test_closing_removes_free_folders_and_a_busy_one_when_its_job_ends(tmp_path):
    f = folders(tmp_path)
    with f.job():
        pass
    with f.job() as busy:
        f.close()
        assert os.listdir(tmp_path / "work") == [os.path.basename(busy)]
    assert os.listdir(tmp_path / "work") == []


def test_a_symlink_to_a_folder_outside_is_removed_without_touching_its_target(tmp_path):
    outside = tmp_path / "outside"
    write(str(outside / "keep.txt"))
    f = folders(tmp_path)
    with f.job() as folder:
        os.symlink(outside, os.path.join(folder, "out", "link"))
        os.symlink(outside, os.path.join(folder, "link"))
    assert empty(folder) and os.listdir(outside) == ["keep.txt"]


def leave_read_only_things(work: str) -> None:
    f = Folders(work, log=RecordingLog())
    with f.job() as folder:
        for where in (folder, os.path.join(folder, "in"), os.path.join(folder, "out")):
            write(os.path.join(where, "locked", "inner", "f"))
            os.chmod(os.path.join(where, "locked", "inner", "f"), 0o400)
            os.chmod(os.path.join(where, "locked", "inner"), 0o500)
            os.chmod(os.path.join(where, "locked"), 0o000)
    with f.job() as again:
        assert again == folder, "an emptied folder is used again"
        assert sorted(os.listdir(again)) == ["in", "out"], os.listdir(again)
        assert os.listdir(os.path.join(again, "in")) == os.listdir(os.path.join(again, "out")) == []
    stale = os.path.join(work, "job-999999999-x")
    os.makedirs(os.path.join(stale, "locked"))
    os.chmod(os.path.join(stale, "locked"), 0o000)
    assert remove(stale) and not os.path.exists(stale)


def test_read_only_files_and_folders_a_command_left_are_removed_too(tmp_path):
    """As an ordinary user: root may remove anything, which would not show the permission fix. Under
    root the check runs in a forked child that became ``nobody`` (no exec: the code is loaded)."""
    if os.geteuid() != 0:
        leave_read_only_things(str(tmp_path))
        return
    work = tempfile.mkdtemp(prefix="folders-")  # pytest's tmp_path is in root's private folder
    try:
        os.chown(work, 65534, 65534)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                leave_read_only_things(work)
                code = 0
            except BaseException as exc:  # noqa: BLE001
                print(f"in the child: {exc!r}", file=sys.stderr)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
