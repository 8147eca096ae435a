"""getjobs' library: poll SQS, run one job per message, settle it; never lose one.

One message's life: ``Inflight.admit`` (a lease, holding a slot) -> ``Handler.handle`` (download,
command, upload: an ``Outcome``) -> ``Settler.settle`` (delete, release, dead-letter) ->
``Inflight.finish``. ``Worker`` runs the threads around it; ``rules`` says when it stops (signals,
EC2 termination notices: ``notices``).
"""

from .config import FatalWorkerError, QueueInfo, Stats, WorkerConfig, check_heartbeat
from .handle import Handler
from .heartbeat import Heartbeat
from .inflight import Inflight, Lease
from .loop import Worker
from .outcome import Kind, Outcome
from .settle import Settler, retry_delay_s

__all__ = ["FatalWorkerError", "Handler", "Heartbeat", "Inflight", "Kind", "Lease", "Outcome", "QueueInfo",
           "Settler", "Stats", "Worker", "WorkerConfig", "check_heartbeat", "retry_delay_s"]
