"""The private folders jobs run in: made once, emptied between jobs, never shared at the same time.

A folder is ``WORK_DIR/job-<pid>-<random>`` (mode 0700, ``tempfile.mkdtemp``) with ``in/`` (the
downloaded input) and ``out/`` (what the command writes). Making and removing three directories per
job cost more CPU than anything else the worker does of its own (≈15 system calls and ext4 inode
allocations per job, bench/README.md); so a folder, once made, goes back to a free list when its job
ends, emptied of everything the job left (files, subfolders, read-only ones too), and the next job
takes it. A job holds its folder until its upload is over, so no two jobs ever see one folder.

A folder that cannot be emptied, or that its command changed (its mode, ``in``/``out`` replaced
by a symlink or a file), is removed and a new one made. Folders left by a worker that was killed
keep the ``job-<pid>-`` name ``remove_stale_job_dirs`` looks for at start-up.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from contextlib import contextmanager
from typing import Iterator

from ..events import EventLog

SUBFOLDERS = ("in", "out")
MODE = 0o700


class Folders:
    def __init__(self, work_dir: str, *, log: EventLog):
        self.work_dir = work_dir
        self.log = log
        self._lock = threading.Lock()
        self._free: list[str] = []
        self._closed = False

    @contextmanager
    def job(self) -> Iterator[str]:
        """An empty private folder (with empty ``in/`` and ``out/``) for one job."""
        folder = self._take()
        try:
            yield folder
        finally:
            self._give_back(folder)

    def close(self) -> None:
        """Remove the free folders; one still in use is removed when its job ends."""
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for folder in free:
            remove(folder)

    def _take(self) -> str:
        with self._lock:
            if self._free:
                return self._free.pop()  # the most recently used: its inodes are still cached
        folder = tempfile.mkdtemp(prefix=f"job-{os.getpid()}-", dir=self.work_dir)  # mode 0700
        for name in SUBFOLDERS:
            os.mkdir(os.path.join(folder, name))
        return folder

    def _give_back(self, folder: str) -> None:
        reusable = empty(folder)
        with self._lock:
            if reusable and not self._closed:
                self._free.append(folder)
                return
        if not remove(folder):
            self.log("warning", folder=os.path.basename(folder), reason="could not remove a job folder")


def empty(folder: str) -> bool:
    """Remove everything below ``folder`` but its empty ``in/`` and ``out/``; False when the folder
    is not fit to be used again (changed by its command, or something could not be removed)."""
    try:
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != MODE:
            return False
        with os.scandir(folder) as entries:
            found = list(entries)
        kept = 0
        for entry in found:
            if entry.name in SUBFOLDERS and entry.is_dir(follow_symlinks=False):
                kept += 1
                with os.scandir(entry.path) as inner:
                    for item in list(inner):
                        _remove_entry(item)
            else:
                _remove_entry(entry)
        return kept == len(SUBFOLDERS) and all(os.access(os.path.join(folder, n), os.W_OK | os.X_OK)
                                               for n in SUBFOLDERS)
    except OSError:
        return False


def _remove_entry(entry: os.DirEntry) -> None:
    if entry.is_dir(follow_symlinks=False):
        if not remove(entry.path):
            raise OSError(f"could not remove {entry.path}")
    else:
        os.unlink(entry.path)


def remove(path: str) -> bool:
    """Remove a folder and everything in it, read-only subfolders included (never following a
    symlink); True when it is gone."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return True
    # Something was read-only (a folder without write or search permission): make every folder
    # of the tree ours again, top-down, and try once more.
    _own_tree(path)
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def _own_tree(path: str) -> None:
    if os.path.islink(path):
        return
    try:
        os.chmod(path, MODE)
    except OSError:
        return
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            sub = os.path.join(root, name)
            if not os.path.islink(sub):
                try:
                    os.chmod(sub, MODE)
                except OSError:
                    pass

