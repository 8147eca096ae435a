"""A small process that starts the benchmark's children and waits for them (a "zygote").

Why: ``ru_maxrss`` of a child is never below the RSS of the process it was forked from. Linux
copies the parent's resident-set high-water mark into the child at fork and keeps the larger of
the old and the new one across ``exec`` (``exec_mmap`` → ``setmax_mm_hiwater_rss``). The harness
holds boto3, moto clients and test data (60–90 MiB), so every "peak RSS" it read with ``wait4``
was at least that much. This launcher is a fresh ``exec`` of a small interpreter (≈10 MiB) that
forks the children instead: their ``ru_maxrss`` is their own. It also samples ``VmHWM`` of every
process of the child's tree every 20 ms, so a tool that starts helper processes is charged for
all of them (the sum of each process's high-water mark: an upper bound of the tree's peak).

Protocol: one JSON request per line on stdin (argv, env, cwd, stdout/stderr file paths,
timeout), one JSON answer per line on stdout (exit code, wall time, rusage, tree high-water).
Only the standard library, imported before any request, so its own RSS stays small.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

SAMPLE_S = float(os.environ.get("LAUNCHER_SAMPLE_S", "0.02"))


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (via /proc/PID/task/TID/children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as fh:
                    todo.extend(int(c) for c in fh.read().split())
            except OSError:
                pass
    return found


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU of ``pid`` so far (its own threads, not its children)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK_S
    except (OSError, IndexError, ValueError):
        return 0.0


def vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeWatch:
    """Each process's largest VmHWM seen, for every process that lived in the tree."""

    def __init__(self, pid: int):
        self.pid = pid
        self.hwm: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for p in descendants(self.pid):
                kib = vm_hwm_kib(p)
                if kib > self.hwm.get(p, 0):
                    self.hwm[p] = kib
                self.cpu[p] = max(self.cpu.get(p, 0.0), cpu_s(p))
            self.stop.wait(SAMPLE_S)

    def finish(self) -> dict:
        self.stop.set()
        self.thread.join()
        # CPU per process as last sampled (≤ 20 ms short of the truth): how the tree's CPU splits.
        return {"processes": len(self.hwm), "child_hwm_kib": self.hwm.get(self.pid, 0),
                "others_hwm_kib": sum(v for p, v in self.hwm.items() if p != self.pid),
                "child_cpu_sampled_s": self.cpu.get(self.pid, 0.0),
                "others_cpu_sampled_s": sum(v for p, v in self.cpu.items() if p != self.pid)}


def run(req: dict) -> dict:
    out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: its own process group, so a timeout can stop its whole tree
        try:
            os.setpgid(0, 0)
            os.chdir(req["cwd"])
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.execve(req["argv"][0], req["argv"], req["env"])
        finally:
            os._exit(127)
    os.close(out)
    os.close(err)
    watch = TreeWatch(pid)
    deadline = started + req["timeout"]
    timed_out = False
    while True:
        done, status, ru = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            timed_out = True
            os.killpg(pid, signal.SIGKILL)
            _, status, ru = os.wait4(pid, 0)
            break
        time.sleep(0.01)
    wall = time.monotonic() - started
    tree = watch.finish()
    return {"rc": os.waitstatus_to_exitcode(status), "wall_s": wall, "timed_out": timed_out,
            "utime_s": ru.ru_utime, "stime_s": ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
            "nvcsw": ru.ru_nvcsw, "nivcsw": ru.ru_nivcsw, **tree}


def main() -> None:
    for line in sys.stdin:
        try:
            answer = run(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
