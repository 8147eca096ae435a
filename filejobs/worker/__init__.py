"""getjobs' library: poll SQS, run one job per message, settle it; never lose one."""

from .loop import FatalWorkerError, Stats, Worker, WorkerConfig, check_heartbeat

__all__ = ["FatalWorkerError", "Stats", "Worker", "WorkerConfig", "check_heartbeat"]
