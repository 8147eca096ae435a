"""Why was a message handed out more than once? An analysis of a FaultProxy's observed events
(testing/faultproxy.py), which is how the chaos checks tell the endpoint's own duplicates apart from
the tool's."""

from __future__ import annotations

from collections import Counter, defaultdict

from testing.faultproxy import Event

ENDPOINT_IN_FLIGHT = "endpoint: handed out again while still in flight"
ENDPOINT_AFTER_DELETE = "endpoint: handed out again after a successful delete"
ENDPOINT_DELETE_REFUSED = "endpoint: refused the holder's delete (per-entry failure)"
KILLED = "holder was SIGKILLed"
RELEASED = "released or retried by the worker (visibility set short on purpose)"
LOST_RESPONSE = "previous receive's response never reached the worker (injected fault or dead client)"
TOOL = "tool: visibility lapsed while its holder was alive"


def classify_redeliveries(events: list[Event], *, queue: str, kills: dict[str, float] | None = None,
                          margin_s: float = 0.5) -> tuple[Counter, list[dict]]:
    """Why was each message of ``queue`` handed out more than once?

    ``kills`` maps a worker's app id to the time (``time.monotonic``) it was SIGKILLed. For each
    delivery after the first, the previous delivery of the same message decides:

    * deleted successfully before this receive → the endpoint's (moto's concurrent-delete quirk);
    * the endpoint answered the holder's delete with a per-entry failure → the endpoint's;
    * this receive ended before the previous one's visibility (with its heartbeats) could
      have expired → the endpoint's (moto's concurrent-receive quirk);
    * its response never reached the worker → the injected fault / dead client;
    * its holder set the visibility short (failed job, shutdown release) → the worker's design;
    * its holder was SIGKILLed → the chaos;
    * otherwise the visibility lapsed while a live worker held it: the tool's fault.
    """
    kills = kills or {}
    receives = defaultdict(list)  # message id -> [(t0, t1, app, receipt, count, visibility, delivered)]
    deleted_at: dict[str, float] = {}
    refused_at: dict[str, float] = {}
    changes = defaultdict(list)  # receipt -> [(t0, timeout)]
    for e in events:
        if e.data.get("queue") != queue:
            continue
        for receipt in e.data.get("refused", []):
            refused_at.setdefault(receipt, e.t1)
        if e.status != 200:
            continue
        if e.op == "sqs:ReceiveMessage":
            for mid, receipt, count in e.data.get("messages", []):
                receives[mid].append((e.t0, e.t1, e.app, receipt, count, e.data.get("visibility"), e.delivered))
        elif e.op in ("sqs:DeleteMessage", "sqs:DeleteMessageBatch"):
            for receipt in e.data.get("ok", []):
                deleted_at.setdefault(receipt, e.t1)
        elif e.op in ("sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch"):
            for receipt, timeout in e.data.get("changes", []):
                changes[receipt].append((e.t0, int(timeout)))
    why: Counter = Counter()
    details = []
    for mid, recs in receives.items():
        recs.sort()
        for prev, cur in zip(recs, recs[1:]):
            p_t0, p_t1, p_app, p_receipt, _, p_vis, p_delivered = prev
            c_t0, c_t1 = cur[0], cur[1]
            expiry = p_t0 + (p_vis if p_vis is not None else 30)
            short = False
            for t, timeout in changes.get(p_receipt, []):
                if t < c_t1:
                    expiry = t + timeout if timeout == 0 else max(expiry, t + timeout)
                    short = short or timeout < (p_vis or 30)
            if p_receipt in deleted_at and deleted_at[p_receipt] < c_t0:
                reason = ENDPOINT_AFTER_DELETE
            elif c_t1 < expiry - margin_s:
                reason = ENDPOINT_IN_FLIGHT
            elif p_receipt in refused_at and refused_at[p_receipt] < c_t0:
                reason = ENDPOINT_DELETE_REFUSED
            elif not p_delivered:
                reason = KILLED if p_app in kills and kills[p_app] <= c_t0 else LOST_RESPONSE
            elif short:
                reason = RELEASED
            elif p_app in kills and kills[p_app] <= expiry + margin_s:
                reason = KILLED
            else:
                reason = TOOL
            why[reason] += 1
            details.append({"message_id": mid, "reason": reason, "prev_app": p_app, "app": cur[2],
                            "gap_s": round(c_t0 - p_t0, 2)})
    return why, details
