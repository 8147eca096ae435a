"""How a job's work is done: an external command (no shell) or an in-process Python function.

Both are injected into the worker, so tests can swap them. A runner never raises for a job's
own failure; it returns a ``RunResult`` saying what happened. ``context`` names the job (its keys,
batch, attempt, message): a command gets it in its environment and in its placeholders.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass

from .command import CommandLine, JobContext, parse, values_for
from .message import printable

#: Seconds between SIGTERM and SIGKILL when a job is stopped.
KILL_AFTER_S = 5.0
STDERR_TAIL_LINES = 20


@dataclass(frozen=True)
class RunResult:
    ok: bool
    exit_code: int | None = None
    reason: str = ""
    stderr_tail: str = ""
    cancelled: bool = False


class ProgramError(ValueError):
    """COMMAND names no program that can run; ``str()`` is one line saying why."""


def resolve_program(name: str, *, start_dir: str, search_path: str | None) -> str:
    """The absolute path of the program COMMAND names, found once at start-up, before any job.

    Each job's command runs in its own folder under WORK_DIR, so a relative path would be looked up
    there and fail every job. As a shell does: a name with a slash is a path (relative to
    ``start_dir``, where getjobs was started); any other name is looked up on ``search_path`` (PATH;
    an empty entry is ``start_dir``), the first executable file winning. A missing, non-executable
    or directory program raises ProgramError.
    """
    if "/" in name:
        path = name if os.path.isabs(name) else os.path.join(start_dir, name)
        # Drop "." segments only: ".." must stay, as it means something else after a symlink.
        path = "/".join(part for i, part in enumerate(path.split("/")) if part != "." or i == 0)
        if os.path.isdir(path):
            raise ProgramError(f"command {name} is a directory ({path})")
        if not os.path.exists(path):
            raise ProgramError(f"command {name} not found ({path}; a relative path is taken from the folder "
                               "getjobs was started in)")
        if not os.access(path, os.X_OK):
            raise ProgramError(f"command {name} is not executable ({path}): chmod +x it, or name its "
                               "interpreter first (sh, python3)")
        return path
    entries = (os.defpath if search_path is None else search_path).split(os.pathsep)
    files = [os.path.join(os.path.join(start_dir, entry) if entry else start_dir, name) for entry in entries]
    files = [f for f in files if os.path.isfile(f)]
    for path in files:
        if os.access(path, os.X_OK):
            return path
    if files:
        raise ProgramError(f"command {name} is not executable ({files[0]})")
    raise ProgramError(f"command {name} not found on PATH")


class CommandRunner:
    """Runs one job's command line (``command.py``: the original ``COMMAND [ARGS...] INPUT OUTPUT`` or
    a template) with no shell, in its own process group, so a timeout or a shutdown can stop the
    command *and* everything it started. ``command`` is a parsed ``CommandLine`` or an argv list
    (parsed here; ``CommandError`` is a ``ValueError``)."""

    def __init__(self, command: CommandLine | tuple[str, ...] | list[str]):
        self.line = command if isinstance(command, CommandLine) else parse(list(command))
        self.argv = list(self.line.argv)

    def describe(self) -> str:
        return " ".join(self.argv)

    def run(self, input_path: str, output_path: str, *, cwd: str, timeout_s: float | None,
            cancel: threading.Event, context: JobContext | None = None) -> RunResult:
        key = context.input_key if context else os.path.basename(input_path)
        values = values_for(input_path=input_path, output_path=output_path, key=key)
        dash = self.line.option_like(values)
        if dash is not None:
            return RunResult(False, reason=f"not run: the name {printable(dash)} would be read as an option; put "
                                           "its placeholder after '--' or inside an option (--title={stem})")
        argv = self.line.render(values)
        if self.line.output_is_dir:
            os.mkdir(output_path, 0o700)  # {outdir}: private and empty; the worker uploads what lands in it
        env = None if context is None else {**os.environ, **context.environ()}
        stderr_path = os.path.join(cwd, ".stderr")
        try:
            with open(stderr_path, "wb") as err, open(os.devnull, "rb") as devnull:
                proc = subprocess.Popen(argv, cwd=cwd, stdin=devnull, env=env,
                                        stdout=err, stderr=err, start_new_session=True, close_fds=True)
        except FileNotFoundError:
            return RunResult(False, reason=f"command not found: {self.argv[0]}")
        except PermissionError:
            return RunResult(False, reason=f"command not executable: {self.argv[0]}")
        except OSError as exc:
            return RunResult(False, reason=f"cannot start command: {exc.strerror or exc}")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        timed_out = False
        while True:
            try:
                code = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel.is_set() or (deadline is not None and time.monotonic() >= deadline):
                timed_out = not cancel.is_set()
                code = _kill_group(proc)
                break
        tail = _tail(stderr_path)
        if cancel.is_set() and not timed_out:
            return RunResult(False, exit_code=code, reason="stopped by shutdown", stderr_tail=tail, cancelled=True)
        if timed_out:
            return RunResult(False, exit_code=code, reason=f"timed out after {timeout_s:g}s", stderr_tail=tail)
        if code != 0:
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            return RunResult(False, exit_code=code, reason=why, stderr_tail=tail)
        return RunResult(True, exit_code=0, stderr_tail=tail)


def _kill_group(proc: subprocess.Popen) -> int:
    """SIGTERM the whole process group, SIGKILL what is left after KILL_AFTER_S."""
    for sig, wait_s in ((signal.SIGTERM, KILL_AFTER_S), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            code = proc.wait(timeout=wait_s)
            # Children that ignored SIGTERM may outlive the leader; finish them too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return code
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _tail(path: str, lines: int = STDERR_TAIL_LINES, max_bytes: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(deque(data.decode("utf-8", "replace").splitlines(), maxlen=lines))


class HandlerRunner:
    """Calls ``function(input_path, output_path)`` in the worker's thread. Exceptions are job
    failures. A Python function cannot be killed from outside, so ``--job-timeout`` does not
    apply to handlers (documented); shutdown waits for them within the grace period. The function
    keeps its two-argument signature: ``context`` is not passed on (threads share one environment)."""

    def __init__(self, spec: str):
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise ValueError(f"handler must be module:function, got {spec!r}")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import problem is the user's to fix
            raise ValueError(f"cannot import handler module {module_name!r}: {exc}") from None
        fn = module
        for part in attr.split("."):
            fn = getattr(fn, part, None)
            if fn is None:
                raise ValueError(f"handler {spec!r} not found")
        if not callable(fn):
            raise ValueError(f"handler {spec!r} is not callable")
        self.fn = fn
        self.spec = spec

    def describe(self) -> str:
        return self.spec

    def run(self, input_path: str, output_path: str, *, cwd: str, timeout_s: float | None,
            cancel: threading.Event, context: JobContext | None = None) -> RunResult:
        try:
            self.fn(input_path, output_path)
        except Exception as exc:  # noqa: BLE001 - a handler's failure is a job failure
            return RunResult(False, reason=f"handler raised {exc.__class__.__name__}: {exc}"[:500])
        return RunResult(True, exit_code=0)
