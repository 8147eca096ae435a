"""The directory walk: regular files below a root, lazily, with sendjobs' symlink and filter rules."""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from typing import Callable, Iterator

from .. import message
from ..message import printable


@dataclass(frozen=True)
class LocalFile:
    path: str
    rel: str
    size: int
    mtime_ns: int


def walk(root: str, *, recursive: bool = True, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
         follow_symlinks: bool = False, warn: Callable[[str], None] = lambda _: None,
         fail: Callable[[str, str], None] = lambda rel, why: None,
         skip_dirs: tuple[str, ...] = ()) -> Iterator[LocalFile]:
    """Yield regular files below ``root`` lazily (one ``scandir`` at a time, no global list).

    Symlinks are skipped with a warning unless ``follow_symlinks``; even then only links that
    resolve inside ``root`` are followed (a link out of the directory is skipped with a warning),
    and directory cycles are cut. Sockets, FIFOs and devices are skipped with a warning.
    Directories in ``skip_dirs`` (the tool's own state folder, if it lies inside) are left out.
    """
    real_root = os.path.realpath(root)
    seen_dirs = {_dir_id(real_root)}
    pruned = {_dir_id(d) for d in skip_dirs if os.path.isdir(d)}
    stack = [("", root)]
    while stack:
        rel_dir, path = stack.pop()
        try:
            it = os.scandir(path)
        except OSError as exc:
            fail(rel_dir or ".", f"cannot list directory: {exc.strerror}")
            continue
        with it:
            for entry in it:
                name = entry.name
                rel = f"{rel_dir}/{name}" if rel_dir else name
                st = _stat(entry, rel, real_root, follow_symlinks=follow_symlinks, warn=warn, fail=fail)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if not recursive or _excluded(rel + "/", name, exclude):
                        continue
                    ident = (st.st_dev, st.st_ino)
                    if ident in pruned:
                        continue
                    if ident in seen_dirs:
                        warn(f"skipped {printable(rel)}: directory already visited (link cycle)")
                        continue
                    seen_dirs.add(ident)
                    stack.append((rel, entry.path))
                elif stat.S_ISREG(st.st_mode):
                    if include and not _matches(rel, name, include):
                        continue
                    if _excluded(rel, name, exclude):
                        continue
                    yield LocalFile(path=entry.path, rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)
                else:
                    warn(f"skipped {printable(rel)}: not a regular file (socket, FIFO or device)")


def _stat(entry: os.DirEntry, rel: str, real_root: str, *, follow_symlinks: bool, warn, fail) -> os.stat_result | None:
    """The entry's stat (through a permitted link), or None once it was warned about or failed."""
    try:
        is_link = entry.is_symlink()
        if is_link and not follow_symlinks:
            warn(f"skipped symlink {printable(rel)} (use --follow-symlinks to follow links inside the directory)")
            return None
        if is_link:
            target = os.path.realpath(entry.path)
            if not (target == real_root or target.startswith(real_root + os.sep)):
                warn(f"skipped symlink {printable(rel)}: it points outside the directory")
                return None
        return os.stat(entry.path)  # follows a permitted link
    except FileNotFoundError:
        warn(f"skipped {printable(rel)}: vanished or dangling link")
    except OSError as exc:
        fail(rel, f"cannot stat: {exc.strerror}")
    return None


def _dir_id(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _matches(rel: str, name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _excluded(rel: str, name: str, patterns) -> bool:
    return bool(patterns) and (_matches(rel, name, patterns) or _matches(rel.rstrip("/"), name, patterns))


def key_problem(input_prefix: str, rel: str) -> str | None:
    """Why a file cannot become an S3 key, or None."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8 (S3 keys must be)"
    try:
        message.check_key(message.input_key(input_prefix, rel))
    except message.MessageError as exc:
        return str(exc)
    return None
