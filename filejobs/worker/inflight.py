"""The messages a worker holds (leases) and its job slots: the one owner of the worker's lock.

A lease lives from ReceiveMessage until its job thread has settled it. It holds a *slot* from receipt
until its command exits, so the upload and the delete go on beside the next job: ``--concurrency``
bounds slots; messages held are bounded by twice that (one job thread each). The poller never asks
for more messages than free slots, so no message ever waits invisible for a slot.

The heartbeat and ``settle`` are ordered per lease: a lease being settled is not beaten any more, and
settling waits for a beat in progress, so a release (visibility 0) is never undone by a late extension.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..message import Job


@dataclass(eq=False)
class Lease:
    message_id: str
    receipt: str
    attempt: int  # ApproximateReceiveCount: 1 on the first delivery
    body: str
    received_at: float
    extended_at: float
    #: Set by ``handle`` once the body decodes.
    job: Job | None = None
    #: Set on abort: the command is stopped and the message released.
    cancel: threading.Event = field(default_factory=threading.Event)
    in_slot: bool = True
    settling: bool = False
    beating: bool = False

    @property
    def key(self) -> str:
        return self.job.input_key if self.job else ""

    @classmethod
    def of(cls, message: dict, now: float) -> Lease:
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        return cls(message_id=message["MessageId"], receipt=message["ReceiptHandle"], attempt=attempt,
                   body=message.get("Body") or "", received_at=now, extended_at=now)


def free_slots(*, concurrency: int, in_slot: int, held: int) -> int:
    """Slots not taken by a job before or in its command, while job threads are left for them."""
    return min(concurrency - in_slot, 2 * concurrency - held)


def slots_to_ask(*, concurrency: int, in_slot: int, held: int, cap: int, lingered: bool) -> int:
    """How many messages to receive now (0: wait). Ask for a full set of slots (≤ ``cap``), or for
    what is free once the poller has lingered a moment for more slots to free up (fuller batches:
    fewer requests per job)."""
    free = free_slots(concurrency=concurrency, in_slot=in_slot, held=held)
    target = min(cap, concurrency)
    if free > 0 and (free >= target or lingered):
        return min(free, cap)
    return 0


class Inflight:
    def __init__(self, *, concurrency: int, clock: Callable[[], float]):
        self.concurrency = concurrency
        self.clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # The poller waits on its own condition, and is woken only once what it waits for is there
        # (``_wake_at`` free slots), not whenever one slot frees up: a wake-up is a context switch.
        self._slots = threading.Condition(self._lock)
        self._wake_at: int | None = None
        self._leases: dict[int, Lease] = {}
        self._in_slot = 0
        self._dispatched = 0
        self._last_activity = clock()
        self._cancelled = False

    # ------------------------------------------------------------------ the poller's side

    def admit(self, messages: Iterable[dict]) -> list[Lease]:
        now = self.clock()
        leases = [Lease.of(m, now) for m in messages]
        with self._lock:
            for lease in leases:
                self._leases[id(lease)] = lease
                if self._cancelled:  # received by a long poll that outlived an abort
                    lease.cancel.set()
            self._in_slot += len(leases)
            self._dispatched += len(leases)
            self._last_activity = now
        return leases

    def wait_for_slots(self, *, cap: int, linger_s: float, stopping: Callable[[], bool]) -> int:
        """Block until ``slots_to_ask`` says how many to receive; 0 once ``stopping()``."""
        with self._lock:
            deadline = self.clock() + linger_s
            try:
                while not stopping():
                    left = deadline - self.clock()
                    want = slots_to_ask(concurrency=self.concurrency, in_slot=self._in_slot,
                                        held=len(self._leases), cap=cap, lingered=left <= 0)
                    if want:
                        return want
                    # Before the linger's end only a full set is worth a wake-up; after it, any slot.
                    self._wake_at = min(cap, self.concurrency) if left > 0 else 1
                    self._slots.wait(left if left > 0 else 0.5)
            finally:
                self._wake_at = None
        return 0

    def free_slots(self) -> int:
        with self._lock:
            return free_slots(concurrency=self.concurrency, in_slot=self._in_slot, held=len(self._leases))

    @property
    def dispatched(self) -> int:
        with self._lock:
            return self._dispatched

    def held(self) -> int:
        with self._lock:
            return len(self._leases)

    def idle_s(self, now: float) -> float:
        """Seconds since a message last came or went."""
        with self._lock:
            return now - self._last_activity

    def wake(self) -> None:
        with self._lock:
            self._changed.notify_all()
            self._slots.notify_all()

    def _freed(self) -> None:
        """A slot or a job thread came free (lock held): wake the poller if it now has what it waits for."""
        if self._wake_at is not None and free_slots(concurrency=self.concurrency, in_slot=self._in_slot,
                                                    held=len(self._leases)) >= self._wake_at:
            self._slots.notify()

    # ------------------------------------------------------------------ the job threads' side

    def free_slot(self, lease: Lease) -> None:
        with self._lock:
            if lease.in_slot:
                lease.in_slot = False
                self._in_slot -= 1
                self._freed()

    def claim_settle(self, lease: Lease) -> bool:
        """True for the first caller only (a job thread, or shutdown releasing a stuck job); waits
        for a heartbeat in progress on this lease to end."""
        with self._changed:
            if lease.settling:
                return False
            lease.settling = True
            while lease.beating:
                self._changed.wait()
            return True

    def finish(self, lease: Lease) -> bool:
        """The job thread is done with ``lease``; True when the worker holds nothing any more."""
        with self._changed:
            if lease.in_slot:
                lease.in_slot = False
                self._in_slot -= 1
            self._leases.pop(id(lease), None)
            self._last_activity = self.clock()
            self._freed()
            self._changed.notify_all()  # wait_until_empty
            return not self._leases

    # ------------------------------------------------------------------ heartbeat and shutdown

    def due(self, now: float, every_s: float) -> list[Lease]:
        """Leases whose visibility is due for an extension; they are marked as being beaten."""
        with self._lock:
            due = [lease for lease in self._leases.values()
                   if not lease.settling and not lease.beating and now - lease.extended_at >= every_s]
            for lease in due:
                lease.beating = True
        return due

    def beaten(self, leases: list[Lease], *, extended: list[Lease], now: float) -> None:
        with self._changed:
            for lease in extended:
                lease.extended_at = now
            for lease in leases:
                lease.beating = False
            self._changed.notify_all()

    def cancel_all(self) -> None:
        """Cancel every lease held, and every one admitted from now on."""
        with self._lock:
            self._cancelled = True
            for lease in self._leases.values():
                lease.cancel.set()

    def wait_until_empty(self, timeout_s: float) -> list[Lease]:
        """Wait up to ``timeout_s`` for every lease to finish; return those still held."""
        deadline = self.clock() + timeout_s
        with self._changed:
            while self._leases and self.clock() < deadline:
                self._changed.wait(min(0.5, max(0.0, deadline - self.clock())))
            return list(self._leases.values())
