"""COMMAND's program is found once at start-up: a path with a slash from where getjobs was started,
any other name on PATH; what cannot run is refused before any job (issue 15, item 1)."""

from __future__ import annotations

import os

import pytest

from filejobs.runner import ProgramError, resolve_program


def program(path, mode=0o755, text="#!/bin/sh\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("name", ["scripts/process.sh", "./scripts/process.sh", "scripts/./process.sh"])
def test_a_relative_path_is_taken_from_where_getjobs_was_started_and_made_absolute(tmp_path, name):
    script = program(tmp_path / "scripts" / "process.sh")
    assert resolve_program(name, start_dir=str(tmp_path), search_path="/nowhere") == str(script)


def test_an_absolute_path_stays_as_it_is(tmp_path):
    script = program(tmp_path / "p.sh")
    assert resolve_program(str(script), start_dir="/", search_path="") == str(script)


def test_dot_dot_is_kept_as_written_since_it_means_something_else_after_a_symlink(tmp_path):
    script = program(tmp_path / "tools" / "p.sh")
    (tmp_path / "work").mkdir()
    found = resolve_program("../tools/p.sh", start_dir=str(tmp_path / "work"), search_path="")
    assert found == f"{tmp_path}/work/../tools/p.sh" and os.path.samefile(found, script)


def test_a_bare_name_is_the_first_executable_file_of_that_name_on_path(tmp_path):
    program(tmp_path / "a" / "tool", mode=0o644)  # not executable: skipped, as execvp does
    (tmp_path / "b" / "tool").mkdir(parents=True)  # a directory: skipped
    wanted = program(tmp_path / "c" / "tool")
    program(tmp_path / "d" / "tool")
    path = os.pathsep.join(str(tmp_path / d) for d in "abcd")
    assert resolve_program("tool", start_dir="/", search_path=path) == str(wanted)


def test_relative_and_empty_path_entries_are_taken_from_the_start_folder(tmp_path):
    script = program(tmp_path / "bin" / "tool")
    assert resolve_program("tool", start_dir=str(tmp_path), search_path="bin") == str(script)
    here = program(tmp_path / "here")
    assert resolve_program("here", start_dir=str(tmp_path), search_path="/nowhere:") == str(here)


def test_without_path_the_default_search_path_is_used():
    assert os.path.basename(resolve_program("sh", start_dir="/", search_path=None)) == "sh"


@pytest.mark.parametrize("make, name, why", [
    (lambda tmp: None, "scripts/process.sh", "not found"),
    (lambda tmp: program(tmp / "scripts" / "process.sh", mode=0o644), "scripts/process.sh", "is not executable"),
    (lambda tmp: (tmp / "scripts").mkdir(), "./scripts", "is a directory"),
    (lambda tmp: None, "no-such-program-x", "not found on PATH"),
    (lambda tmp: program(tmp / "bin" / "tool", mode=0o644), "tool", "is not executable"),
])
def test_what_cannot_run_is_refused_with_one_line_naming_it(tmp_path, make, name, why):
    make(tmp_path)
    with pytest.raises(ProgramError, match=why) as err:
        resolve_program(name, start_dir=str(tmp_path), search_path=str(tmp_path / "bin"))
    assert name.lstrip("./") in str(err.value) and "\n" not in str(err.value)
