"""Status without a batch: the files under an input prefix, for files that arrive on their own
(S3 event notifications) or were sent in many batches (``jobctl status BUCKET --prefix input/``).

With no manifest, the inputs themselves say which jobs exist:

* every object under the input prefix is a job, except a zero-byte key ending in ``/`` (a console
  "folder", which the worker skips);
* it is **done** when ``OUTPUT_PREFIX + path + EXT`` exists (or a directory of parts under it);
* it has **failed** when a failure record ``errors/<batch id or no-batch>/<path>.json`` exists and
  its output does not. A record's path is relative to the input prefix of the worker or batch that
  wrote it: ``no-batch`` records (event mode) to the prefix asked about, a batch's to the input
  prefix in its manifest header (one ranged GET per batch folder holding records, cached across
  the polls of ``--wait``). With several records for one input, the newest counts.
* the rest is **pending**, split into in progress and waiting by the queue's counters if a queue is
  given.

Cost: ⌈inputs/1000⌉ + about ⌈outputs/1000⌉ + ⌈records/1000⌉ LIST (listing.py), the folder
listing of the errors prefix, the manifest headers above, up to ``reasons`` GETs for the
failure details, and the queue's counters.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .. import aws, message
from ..records import ManifestHeader, RecordError
from . import listing
from .status import BatchStatus, failure, finish

NO_BATCH = "no-batch"
#: A manifest header is one JSON line of a few hundred bytes; this is ample.
HEADER_BYTES = 16384


def prefix_status(clients, *, bucket: str, input_prefix: str, output_prefix: str, ext: str,
                  errors_prefix: str = "errors/", batch_prefix: str = "batches/", queue_url: str | None = None,
                  reasons: int = 20, headers: dict | None = None, now: datetime | None = None) -> BatchStatus:
    """``headers``: a dict kept between calls (batch id -> its input prefix), so a wait reads each
    manifest header once."""
    s3, requests = clients.s3, listing.Requests()
    ordered = listing.trusts_start_after(clients.target)
    listed, uncertain = listing.list_all(s3, bucket, input_prefix, requests=requests, ordered=ordered)
    inputs = sorted(k for k, o in listed.items() if not (k.endswith("/") and not o.get("Size")))
    outputs = {k: output_prefix + k[len(input_prefix):] + ext for k in inputs}
    done = listing.settled(set(outputs.values()),
                           listing.find(s3, bucket, outputs.values(), requests=requests, ordered=ordered))
    open_inputs = {k for k in inputs if outputs[k] not in done}
    records, records_uncertain = _records(s3, bucket, errors_prefix, batch_prefix, input_prefix, open_inputs,
                                          headers if headers is not None else {}, requests, ordered)
    failed = sorted(records.items())
    status = BatchStatus(batch_id=None, prefix=input_prefix, total=len(inputs), done=len(done), failed=len(failed),
                         in_progress=0, waiting=0,
                         failures=[failure(s3, bucket, inp, rk, requests) for inp, rk in failed[:reasons]])
    for where, flag in ((input_prefix, uncertain), (errors_prefix, records_uncertain)):
        if flag:
            status.warnings.append(f"over 1,000 keys under {message.printable(where)} were listed with continuation "
                                   f"tokens, which this endpoint may not page as S3 does: counts may miss keys")
    finish(clients, status, queue_url, requests, now or datetime.now(timezone.utc))
    return status


def _records(s3, bucket: str, errors_prefix: str, batch_prefix: str, input_prefix: str, open_inputs: set[str],
             headers: dict, requests: listing.Requests, ordered: bool) -> tuple[dict[str, str], bool]:
    """Input key -> the newest failure record key, for the inputs that have no output; and whether
    the listing of the records may have missed some."""
    newest: dict[str, tuple] = {}
    if not open_inputs:
        return {}, False
    found, uncertain = listing.list_all(s3, bucket, errors_prefix, requests=requests, ordered=ordered)
    for key, obj in found.items():
        folder, _, rest = key[len(errors_prefix):].partition("/")
        if not rest.endswith(".json"):
            continue
        base = input_prefix if folder == NO_BATCH else _batch_input_prefix(s3, bucket, batch_prefix, folder,
                                                                          headers, requests)
        inp = None if base is None else base + rest[:-len(".json")]
        if inp in open_inputs:
            when = obj.get("LastModified") or datetime.min.replace(tzinfo=timezone.utc)
            if inp not in newest or when > newest[inp][0]:
                newest[inp] = (when, key)
    return {inp: key for inp, (_, key) in newest.items()}, uncertain


def _batch_input_prefix(s3, bucket: str, batch_prefix: str, batch_id: str, headers: dict,
                        requests: listing.Requests) -> str | None:
    """The input prefix a batch was sent with (its manifest header), or None without a readable one."""
    if batch_id not in headers:
        headers[batch_id] = None
        try:
            body = requests(s3.get_object, Bucket=bucket, Key=message.manifest_key(batch_prefix, batch_id),
                            Range=f"bytes=0-{HEADER_BYTES - 1}")["Body"].read()
            headers[batch_id] = ManifestHeader.decode(body.split(b"\n", 1)[0]).input_prefix
        except RecordError:
            pass  # unreadable header: its records are not matched
        except Exception as exc:  # noqa: BLE001
            if not aws.is_not_found(exc):
                raise
            # No manifest (a run that was cut short before writing it): its records are not matched.
    return headers[batch_id]
