"""What an ``Outcome`` means for its message: the worker's only SQS calls about one job.

* done, duplicate, stale: delete it — batched, up to 10 per DeleteMessageBatch, by one deleting
  thread (a single deleter also avoids concurrent-delete quirks of some endpoints);
* failed: release it with a visibility that grows with ``ApproximateReceiveCount``; on the queue's
  ``maxReceiveCount``-th attempt write the failure record and release it at once, so that SQS's
  redrive moves it to the dead-letter queue on the next receive:
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html
  A count above ``maxReceiveCount`` means the store carried the count over a redrive (see
  ``count_carried_over``): the job is sent again as a new message, whose count starts at 1;
* rejected: copy it to the dead-letter queue at once with the reason, then delete it;
* cancelled (shutdown): release it at once for another worker.
"""

from __future__ import annotations

import random
import time
from typing import Callable

from .. import aws, message
from ..batching import Batcher, call_batch
from ..events import EventLog
from ..records import ErrorRecord
from .config import MAX_VISIBILITY_S, QueueInfo, Stats, WorkerConfig
from .inflight import Inflight, Lease
from .outcome import DELETED, Kind, Outcome

REJECT_REASON_ATTRIBUTE = "filejobs-reject-reason"
_METRICS = {"done": "JobsDone", "skipped": "JobsSkipped", "failed": "JobsFailed"}
#: The longest DelaySeconds SendMessage accepts.
MAX_DELAY_S = 900


def retry_delay_s(attempt: int, rng: random.Random, *, base_s: float, max_s: float) -> int:
    """Exponential backoff from the receive count, with ±20 % jitter, capped."""
    base = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return int(min(MAX_VISIBILITY_S - 1, max(0, base * rng.uniform(0.8, 1.2))))


def count_carried_over(receive_count: int, max_receive_count: int | None) -> bool:
    """Whether a receive count says nothing about the attempts left before the dead-letter queue.

    SQS moves a message on the receive after its ``maxReceiveCount``-th, so a consumer sees a
    higher count only where a store carried the count over a dead-letter redrive. AWS does not:
    "All redriven messages are considered new messages and are assigned a new messageID and
    enqueueTime", so their count starts again from 1:
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html
    LocalStack keeps the message and reports its old count (4 and 5 with maxReceiveCount 2) while
    its own redrive decision counts again from 1. Such a count cannot say which attempt of the new
    cycle this is (the offset depends on how the store counted the move itself: 4 means the first
    attempt there, 3 could too), and SentTimestamp and the MessageId are kept by the move as well.
    """
    return max_receive_count is not None and receive_count > max_receive_count


class Settler:
    def __init__(self, config: WorkerConfig, sqs, s3, queue: QueueInfo, inflight: Inflight, *, log: EventLog,
                 stats: Stats, on_fatal: Callable[[BaseException], None], clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 wall_clock: Callable[[], float] = time.time):
        self.c = config
        self.sqs = sqs
        self.s3 = s3
        self.queue = queue
        self.inflight = inflight
        self.log = log
        self.stats = stats
        self.on_fatal = on_fatal
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.wall_clock = wall_clock
        self.max_receive_count = queue.max_receive_count
        # A batch waits while other jobs may add to it, at most a tenth of the visibility timeout.
        self.deletes: Batcher[Lease] = Batcher(self._delete, max_linger_s=min(1.0, queue.visibility_timeout_s / 10),
                                               more_coming=lambda: inflight.held() > 0, clock=clock)

    def settle(self, lease: Lease, outcome: Outcome) -> None:
        """Act on ``outcome``; a lease is settled once (the first caller wins)."""
        if not self.inflight.claim_settle(lease):
            return
        if outcome.kind in DELETED:
            event = "done" if outcome.kind is Kind.DONE else "skipped"
            self.stats.add(event)
            # A message with no job (an S3 test event) is named by its message id.
            self.log(event, key=lease.key or None, message_id=None if lease.key else lease.message_id,
                     attempt=lease.attempt, duration_s=_rounded(outcome.duration_s), output=outcome.output,
                     reason=outcome.reason or None)
            self.log.metric(_METRICS[event], duration_s=outcome.duration_s)
            self.deletes.put(lease)
        elif outcome.kind is Kind.FAILED:
            self._fail(lease, outcome)
        elif outcome.kind is Kind.REJECTED:
            self._reject(lease, outcome.reason)
        else:
            self.release(lease, outcome.reason)

    def retry_delay_s(self, attempt: int) -> int:
        return retry_delay_s(attempt, self.rng, base_s=self.c.retry_base_s, max_s=self.c.retry_max_s)

    def _fail(self, lease: Lease, outcome: Outcome) -> None:
        self.stats.add("failed")
        self.log.metric("JobsFailed", duration_s=outcome.duration_s)
        if count_carried_over(lease.attempt, self._max_receive_count(lease.attempt)):
            self._renew(lease, outcome)
            return
        final = self.max_receive_count is not None and lease.attempt >= self.max_receive_count
        delay = 0 if final else self.retry_delay_s(lease.attempt)
        self._log_failed(lease, outcome, "dead-letter queue" if final else f"retry in {delay}s")
        if final:
            self._record_failure(lease, outcome)
        # Visibility 0 on the last attempt: the next receive moves it to the DLQ (SQS redrive).
        self._change_visibility(lease.receipt, delay, key=lease.key)

    def _log_failed(self, lease: Lease, outcome: Outcome, next_step: str) -> None:
        self.log("failed", key=lease.key, attempt=lease.attempt, duration_s=_rounded(outcome.duration_s),
                 reason=outcome.reason, exit_code=outcome.exit_code, next=next_step)

    def _max_receive_count(self, receive_count: int) -> int | None:
        """The queue's maxReceiveCount, read again when a count exceeds it: the policy may have been
        raised since start-up (the count is then a real one)."""
        if not count_carried_over(receive_count, self.max_receive_count):
            return self.max_receive_count
        try:
            policy = self.sqs.get_queue_attributes(QueueUrl=self.queue.url, AttributeNames=["RedrivePolicy"])[
                "Attributes"].get("RedrivePolicy")
        except Exception as exc:  # noqa: BLE001 - keep the one read at start-up
            self.log("warning", reason=f"could not read the redrive policy again: {aws.describe(exc)}")
            return self.max_receive_count
        self.max_receive_count = aws.dead_letter_target(policy)[1] if policy else None
        return self.max_receive_count

    def _renew(self, lease: Lease, outcome: Outcome) -> None:
        """A failure on a count carried over a redrive: send the job again as a new message, whose
        count starts at 1 (after the first retry delay), and delete this one. The job then gets its
        full maxReceiveCount attempts with backoff, and its failure record is written once, on
        the last of them. Send first, delete second: a failed delete leaves a duplicate, never a
        loss (outputs are create-only)."""
        delay = self.retry_delay_s(1)
        self._log_failed(lease, outcome, f"retry in {delay}s as a new message (receive count carried over a redrive)")
        try:
            self.sqs.send_message(QueueUrl=self.queue.url, MessageBody=lease.body,
                                  DelaySeconds=min(delay, MAX_DELAY_S))
        except Exception as exc:  # noqa: BLE001 - e.g. no sqs:SendMessage on the queue (AWS never needs it)
            # This may be the cycle's last attempt: record it, and never skip the backoff.
            self.log("warning", key=lease.key, reason=f"could not send it again: {aws.describe(exc)}")
            self._record_failure(lease, outcome)
            self._change_visibility(lease.receipt, delay, key=lease.key)
            return
        self.deletes.put(lease)

    def _record_failure(self, lease: Lease, outcome: Outcome) -> None:
        job = lease.job
        record = ErrorRecord(input_key=job.input_key, batch_id=job.batch_id, attempts=lease.attempt,
                             exit_code=outcome.exit_code, reason=outcome.reason, stderr_tail=outcome.stderr_tail,
                             message_id=lease.message_id,
                             at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.wall_clock())))
        try:
            self.s3.put_object(Bucket=job.bucket, Key=message.error_key(self.c.errors_prefix, job.batch_id,
                                                                       job.relative_name),
                               Body=record.encode().encode("utf-8"), ContentType="application/json")
        except Exception as exc:  # noqa: BLE001 - the DLQ still gets the message
            self.log("warning", key=job.input_key, reason=f"could not record the failure: {aws.describe(exc)}")

    def _reject(self, lease: Lease, reason: str) -> None:
        """A message that can never succeed: straight to the dead-letter queue, S3 untouched."""
        self.stats.add("rejected")
        self.log("rejected", message_id=lease.message_id, attempt=lease.attempt, reason=reason)
        if self.queue.dlq_url is None:
            self._change_visibility(lease.receipt, int(self.c.retry_max_s), key=None)
            return
        try:
            self.sqs.send_message(QueueUrl=self.queue.dlq_url, MessageBody=lease.body or "(empty)",
                                  MessageAttributes={REJECT_REASON_ATTRIBUTE: {
                                      "DataType": "String", "StringValue": reason[:1000]}})
        except Exception as exc:  # noqa: BLE001 - leave it to SQS's redrive after maxReceiveCount
            self.log("warning", message_id=lease.message_id, reason=f"could not move to the DLQ: {aws.describe(exc)}")
            self._change_visibility(lease.receipt, self.retry_delay_s(lease.attempt), key=None)
            return
        self.deletes.put(lease)

    def release(self, lease: Lease, why: str) -> None:
        self.stats.add("released")
        self.log("released", key=lease.key, attempt=lease.attempt, reason=why)
        self._change_visibility(lease.receipt, 0, key=lease.key)

    def release_unread(self, messages: list[dict]) -> None:
        """Messages received as a drain began: visible again at once, for another worker."""
        for m in messages:
            self.stats.add("released")
            self._change_visibility(m["ReceiptHandle"], 0, key=None)

    def _change_visibility(self, receipt: str, seconds: int, *, key: str | None) -> None:
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue.url, ReceiptHandle=receipt,
                                               VisibilityTimeout=int(seconds))
        except Exception as exc:  # noqa: BLE001 - the message reappears after its timeout anyway
            self.log("warning", key=key, reason=f"could not change visibility: {aws.describe(exc)}")

    # ------------------------------------------------------------------ the deleter thread

    def _delete(self, leases: list[Lease]) -> None:
        try:
            result = call_batch(
                lambda entries: self.sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=entries),
                leases, lambda lease: {"ReceiptHandle": lease.receipt}, sleep=self.sleep)
        except Exception as exc:  # noqa: BLE001 - fatal (queue gone, access denied): the worker stops
            self.on_fatal(exc)
            return
        for lease, why in result.refused:
            # Usually the receipt expired and the message was redelivered: that duplicate finds
            # the output and is skipped.
            self.log("warning", key=lease.key, reason=f"delete failed: {why}")
        for lease, _ in result.gave_up:
            self.log("warning", key=lease.key, reason="delete kept failing; the redelivery will be skipped")


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
