"""The worker: poll, hand each message to a job thread, stop in two stages.

Threads (commands are subprocesses, so the GIL is not in the way and one process with shared
clients, one heartbeat and one deleter is simpler and cheaper than a process per job):

* the **poller** long-polls only when a job slot is free and asks for no more messages than there
  are free slots (``inflight.py``);
* ``2 × concurrency`` **job threads** each take one message at a time: ``outcome = handle(lease)``
  (download, command, upload) then ``settle(lease, outcome)`` (delete, release, dead-letter);
* the **heartbeat** extends the visibility of long jobs (``heartbeat.py``);
* the **deleter** deletes settled messages in batches of up to 10 (``settle.py``);
* the main thread supervises: the first SIGTERM/SIGINT drains (no new messages, running jobs get
  ``grace_s``, the rest are released), the second aborts (commands stopped, messages released);
* with ``notices`` (EC2), a **watcher** polls the instance metadata: a Spot interruption or an Auto
  Scaling termination drains as a signal does, then the lifecycle action is completed and ``run``
  returns (exit 0, so systemd does not restart the worker): ``notices.py``.
"""

from __future__ import annotations

import os
import queue as queue_mod
import random
import signal
import threading
import time
from typing import Callable

from .. import aws
from ..batching import MAX_ENTRIES
from ..events import EventLog, NullLog
from .config import FatalWorkerError, QueueInfo, Stats, WorkerConfig, check_heartbeat
from .handle import Handler, remove_stale_job_dirs
from .heartbeat import Heartbeat
from .inflight import Inflight
from .notices import Departure
from .outcome import Outcome
from .rules import ABORT_WAIT_S, SUPERVISE_EVERY_S, Decision, Supervisor, poll_wait_s, short_poll_pause_s
from .settle import Settler
from .transfers import Transfers


class Worker:
    def __init__(self, config: WorkerConfig, clients, runner, *, log: EventLog = NullLog(), protector=None,
                 notices=None, lifecycle=None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 wall_clock: Callable[[], float] = time.time, crt_putter=None):
        """``notices``: an ``ec2.NoticeWatcher`` (termination notices); ``lifecycle``: an
        ``ec2.LifecycleAction``, completed once a notice's drain is over; ``crt_putter``: a
        ``crt.CrtPutter`` for small inputs and outputs (transfers.py), closed when the worker stops."""
        self.c = config
        self.s3 = clients.s3
        self.sqs = clients.sqs
        self.runner = runner
        self.log = log
        self.protector = protector
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.wall_clock = wall_clock
        self.crt_putter = crt_putter
        self.stats = Stats()
        self.queue: QueueInfo | None = None
        self.fatal: BaseException | None = None
        # Only ever incremented by request_stop, which a signal handler calls: no lock may be taken there.
        self._stop_requests = 0
        self._draining = threading.Event()
        self._finished = threading.Event()
        # Set when something the supervisor waits for happened (finished, idle, fatal): it need not
        # wait out its tick.
        self._progress = threading.Event()
        self._inflight = Inflight(concurrency=config.concurrency, clock=clock)
        self._work: queue_mod.Queue = queue_mod.Queue()
        self._departure = Departure(notices, lifecycle, log=log, clock=clock, wall_clock=wall_clock,
                                    wake=self._progress.set)

    # ------------------------------------------------------------------ start-up

    def start(self) -> QueueInfo:
        """Look up the queue and its settings; raise FatalWorkerError with one line on problems."""
        try:
            url = aws.resolve_queue_url(self.sqs, self.c.queue)
            attrs = self.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"])["Attributes"]
        except Exception as exc:  # noqa: BLE001
            raise FatalWorkerError(aws.describe(exc, queue=self.c.queue)) from None
        visibility_timeout_s = self.c.visibility_timeout_s or int(attrs.get("VisibilityTimeout", 30))
        heartbeat_s = self.c.heartbeat_s or max(1.0, visibility_timeout_s / 3)
        check_heartbeat(heartbeat_s, visibility_timeout_s)
        dlq_url = max_receive_count = None
        if attrs.get("RedrivePolicy"):
            dlq_arn, max_receive_count = aws.dead_letter_target(attrs["RedrivePolicy"])
            dlq_url = aws.queue_url_from_arn(dlq_arn, url)
        else:
            self.log("warning", reason="the queue has no dead-letter queue: failing jobs are retried until they expire")
        os.makedirs(self.c.work_dir, exist_ok=True)
        remove_stale_job_dirs(self.c.work_dir, self.log)
        self.queue = QueueInfo(url=url, visibility_timeout_s=visibility_timeout_s, heartbeat_s=heartbeat_s,
                               dlq_url=dlq_url, max_receive_count=max_receive_count)
        return self.queue

    # ------------------------------------------------------------------ the run

    def run(self) -> Stats:
        """Start the threads and supervise until done; returns the counters."""
        q = self.start()
        started = self.clock()
        self.log("started", queue=aws.queue_name(q.url), concurrency=self.c.concurrency,
                 visibility_timeout_s=q.visibility_timeout_s, heartbeat_s=q.heartbeat_s,
                 max_receive_count=q.max_receive_count, runner=self.runner.describe(),
                 transfers="crt" if self.crt_putter else "botocore")
        handler = Handler(self.c, self.s3, self.runner, self._inflight, log=self.log, clock=self.clock,
                          transfers=Transfers(self.s3, config=self.c.transfer, putter=self.crt_putter))
        settler = Settler(self.c, self.sqs, self.s3, q, self._inflight, log=self.log, stats=self.stats,
                          on_fatal=self._on_fatal, clock=self.clock, sleep=self.sleep, rng=self.rng,
                          wall_clock=self.wall_clock)
        heartbeat = Heartbeat(self.sqs, q.url, self._inflight, every_s=q.heartbeat_s,
                              visibility_timeout_s=q.visibility_timeout_s, log=self.log, stats=self.stats,
                              sleep=self.sleep)
        beats_stop = threading.Event()
        for i in range(self.c.concurrency * 2):
            _thread(f"job-{i}", self._job_loop, handler, settler)
        deleter = _thread("deleter", settler.deletes.run)
        _thread("heartbeat", heartbeat.run, beats_stop, self.clock)
        self._departure.start(interval_s=self.c.notice_poll_s, stop=beats_stop)
        poller = _thread("poller", self._poll_loop, settler)
        rule = Supervisor(grace_s=self.c.grace_s)
        decision = Decision.ABORT
        try:
            decision = self._supervise(poller, rule)
        finally:
            self._shutdown(poller, settler, aborting=decision is not Decision.STOP,
                           abort_wait_s=rule.abort_wait_s(self.clock()))
            deleter.join(timeout=30)
            beats_stop.set()
            handler.close()
            if self.protector:
                self.protector.set_busy(False, now=True)  # from whichever thread runs the worker
            self._departure.finish(rule)
            self.log("summary", seconds=round(self.clock() - started, 3), **self.stats.as_dict())
        if self.fatal:
            raise FatalWorkerError(aws.describe(self.fatal, queue=self.c.queue))
        return self.stats

    def request_stop(self) -> None:
        """First call drains, later ones abort (what SIGTERM/SIGINT do). Safe in a signal handler:
        it only counts; the supervisor acts on it within SUPERVISE_EVERY_S."""
        self._stop_requests += 1

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())

    def _on_fatal(self, exc: BaseException) -> None:
        self.fatal = self.fatal or exc
        self._progress.set()

    def _supervise(self, poller: threading.Thread, rule: Supervisor) -> Decision:
        while True:
            while rule.requests < self._stop_requests:
                mode = rule.request(self.clock())
                held = self._inflight.held()
                self.log("stopping", mode=mode, grace_s=self.c.grace_s if mode == "drain" else None, running=held)
                self._drain()
            if self._departure.take(rule, running=self._inflight.held()):
                self._drain()
            decision = rule.decide(self.clock(), held=self._inflight.held(), poller_alive=poller.is_alive(),
                                   finished=self._finished.is_set(), fatal=self.fatal is not None)
            if decision is not Decision.GO_ON:
                return decision
            self._progress.wait(SUPERVISE_EVERY_S)
            self._progress.clear()

    def _drain(self) -> None:
        """Receive nothing more; a long poll in flight releases what it brings."""
        self._draining.set()
        self._inflight.wake()

    def _shutdown(self, poller: threading.Thread, settler: Settler, *, aborting: bool,
                  abort_wait_s: float = ABORT_WAIT_S) -> None:
        self._drain()
        if aborting:
            # Stop running commands; their job threads release the messages (visibility 0). A
            # Python handler cannot be stopped: its message is released here, its thread dies with us.
            self._inflight.cancel_all()
            for lease in self._inflight.wait_until_empty(abort_wait_s):
                settler.settle(lease, Outcome.cancelled())
        # The poller returns within one long poll and releases what it received meanwhile.
        poller.join(timeout=1 if aborting else self.c.wait_time_s + 10)
        for _ in range(self.c.concurrency * 2):
            self._work.put(None)
        settler.deletes.close()

    # ------------------------------------------------------------------ polling

    def _poll_loop(self, settler: Settler) -> None:
        backoff_s = 0.5
        while not self._draining.is_set():
            want = self._wanted()
            if want is None:
                return
            if want == 0:
                continue
            wait_s = poll_wait_s(wait_time_s=self.c.wait_time_s, exit_when_idle_s=self.c.exit_when_idle_s,
                                 idle_s=self._inflight.idle_s(self.clock()))
            try:
                messages = self._receive(want, wait_s)
            except Exception as exc:  # noqa: BLE001
                if aws.is_fatal(exc):
                    self._on_fatal(exc)
                    return
                self.log("error", during="receive", error=aws.describe(exc), retry_in_s=round(backoff_s, 1))
                self._draining.wait(backoff_s)
                backoff_s = min(30.0, backoff_s * 2)
                if self._idle_long_enough():
                    return
                continue
            backoff_s = 0.5
            if self._draining.is_set():
                settler.release_unread(messages)
                return
            if messages:
                self._dispatch(messages)
            elif self._idle_long_enough():
                return
            elif wait_s == 0:
                # Short polling answers at once; don't turn an empty queue into a request storm.
                self._draining.wait(short_poll_pause_s(exit_when_idle_s=self.c.exit_when_idle_s,
                                                       held=self._inflight.held(),
                                                       idle_s=self._inflight.idle_s(self.clock())))

    def _wanted(self) -> int | None:
        """How many messages to receive once slots are free (0: none now); None after --max-jobs."""
        dispatched = self._inflight.dispatched
        if self.c.max_jobs is not None and dispatched >= self.c.max_jobs:
            self._finished.set()
            self._progress.set()
            return None
        cap = MAX_ENTRIES if self.c.max_jobs is None else min(MAX_ENTRIES, self.c.max_jobs - dispatched)
        return self._inflight.wait_for_slots(cap=cap, linger_s=self.c.batch_linger_s, stopping=self._draining.is_set)

    def _receive(self, want: int, wait_s: int) -> list[dict]:
        return self.sqs.receive_message(
            QueueUrl=self.queue.url, MaxNumberOfMessages=want, WaitTimeSeconds=wait_s,
            VisibilityTimeout=self.queue.visibility_timeout_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"]).get("Messages", [])

    def _dispatch(self, messages: list[dict]) -> None:
        leases = self._inflight.admit(messages)
        if self.protector:
            self.protector.set_busy(True)
        self.stats.add("received", len(leases))
        for lease in leases:
            self._work.put(lease)

    def _idle_long_enough(self) -> bool:
        """--exit-when-idle: no job running and no message for that long (errors count as none)."""
        if self.c.exit_when_idle_s is None or self._inflight.held():
            return False
        if self._inflight.idle_s(self.clock()) < self.c.exit_when_idle_s:
            return False
        self.log("idle", seconds=self.c.exit_when_idle_s)
        self._finished.set()
        self._progress.set()
        return True

    # ------------------------------------------------------------------ one job thread

    def _job_loop(self, handler: Handler, settler: Settler) -> None:
        while True:
            lease = self._work.get()
            if lease is None:
                return
            try:
                settler.settle(lease, handler.handle(lease))
            except Exception as exc:  # noqa: BLE001 - a job never takes the worker down
                self.log("error", during="job", error=aws.describe(exc))
            finally:
                idle = self._inflight.finish(lease)
            if idle:
                self._progress.set()
                if self.protector:
                    self.protector.set_busy(False)


def _thread(name: str, target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread
