"""A batch's life on moto for the status and redrive tests: submit files, run a worker until idle."""

from filejobs.runner import CommandRunner
from filejobs.send import SendConfig, Sender
from filejobs.worker import Worker, WorkerConfig


def submit(tmp_path, clients, res, names):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for n in names:
        (data / n).write_text(f"content of {n}")
    return Sender(SendConfig(directory=str(data), bucket=res.bucket, input_prefix="input/", output_prefix="output/",
                             queue=res.queue_url, state_dir=str(tmp_path / "state")), clients).run()


def work(tmp_path, clients, res, argv):
    # Idle = an empty receive after the last job ended, so the failed jobs' last receive (which moves
    # them to the dead-letter queue) has happened; a short idle time is enough.
    cfg = WorkerConfig(work_dir=str(tmp_path / "work"), extension=".out", queue=res.queue_url, exit_when_idle_s=0.1,
                       wait_time_s=0, retry_base_s=0)
    return Worker(cfg, clients, CommandRunner(argv)).run()


def failing_for(name):
    return ["sh", "-c", f'case "$1" in *{name}) echo "cannot parse {name}" >&2; exit 4;; esac; cp "$1" "$2"', "sh"]
