"""The directory walk: recursive, lazy, filtered, and safe with symlinks and special files."""

import os
import socket

from filejobs.send.walk import key_problem, walk


def make_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
    return root


def rels(files):
    return sorted(f.rel for f in files)


def test_the_walk_is_recursive_and_keys_use_forward_slashes(tmp_path):
    make_tree(tmp_path, {"a.txt": "1", "sub/b.txt": "2", "sub/deeper/c.txt": "3"})
    assert rels(walk(str(tmp_path))) == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]


def test_no_recursive_gives_the_original_flat_listing(tmp_path):
    make_tree(tmp_path, {"a.txt": "1", "sub/b.txt": "2"})
    assert rels(walk(str(tmp_path), recursive=False)) == ["a.txt"]


def test_include_and_exclude_globs_match_the_relative_path_or_the_name(tmp_path):
    make_tree(tmp_path, {"a.jpg": "", "b.txt": "", "tmp/c.jpg": "", "keep/d.jpg": ""})
    assert rels(walk(str(tmp_path), include=("*.jpg",), exclude=("tmp",))) == ["a.jpg", "keep/d.jpg"]
    assert rels(walk(str(tmp_path), exclude=("keep/*", "*.txt"))) == ["a.jpg", "tmp/c.jpg"]


def test_symlinks_are_skipped_with_a_warning_by_default(tmp_path):
    make_tree(tmp_path, {"real.txt": "x"})
    os.symlink(tmp_path / "real.txt", tmp_path / "link.txt")
    warnings = []
    assert rels(walk(str(tmp_path), warn=warnings.append)) == ["real.txt"]
    assert "skipped symlink 'link.txt'" in warnings[0]


def test_followed_symlinks_never_leave_the_directory(tmp_path):
    outside = make_tree(tmp_path / "outside", {"secret.txt": "s"})
    root = make_tree(tmp_path / "root", {"real.txt": "x", "dir/inner.txt": "y"})
    os.symlink(root / "real.txt", root / "inside-link.txt")
    os.symlink(outside / "secret.txt", root / "outside-link.txt")
    os.symlink(outside, root / "outside-dir")
    os.symlink(root, root / "dir" / "loop")
    warnings = []
    found = rels(walk(str(root), follow_symlinks=True, warn=warnings.append))
    assert found == ["dir/inner.txt", "inside-link.txt", "real.txt"]
    assert sum("points outside" in w for w in warnings) == 2
    assert any("link cycle" in w for w in warnings)


def test_sockets_and_fifos_are_skipped_with_a_warning(tmp_path):
    make_tree(tmp_path, {"ok.txt": "x"})
    os.mkfifo(tmp_path / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    warnings = []
    try:
        assert rels(walk(str(tmp_path), warn=warnings.append)) == ["ok.txt"]
    finally:
        sock.close()
    assert len(warnings) == 2 and all("not a regular file" in w for w in warnings)


def test_the_walk_is_lazy(tmp_path):
    make_tree(tmp_path, {f"d{i}/f.txt": "" for i in range(50)})
    it = walk(str(tmp_path))
    assert next(it).rel.endswith("/f.txt")  # a generator: nothing is listed up front


def test_the_tools_own_state_folder_is_left_out(tmp_path):
    make_tree(tmp_path, {"a.txt": "x", ".state/filejobs/j.sqlite": "db"})
    assert rels(walk(str(tmp_path), skip_dirs=(str(tmp_path / ".state"),))) == ["a.txt"]


def test_names_that_cannot_be_s3_keys_are_reported():
    assert "UTF-8" in key_problem("input/", "bad\udcff.txt")
    assert "1024" in key_problem("input/", "x" * 1100)
    assert key_problem("input/", "ok name $(x).txt") is None
