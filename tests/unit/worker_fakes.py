"""In-memory stand-ins for the worker's unit tests: a clock, S3 and SQS clients that answer the few
calls the worker makes, the way the services document them, and record every call."""

from __future__ import annotations

import hashlib
import io
import json
import threading

import botocore.exceptions as bexc

from filejobs import message
from filejobs.message import Job
from filejobs.worker import Inflight, Lease, QueueInfo, Stats, WorkerConfig
from testing.helpers import RecordingLog


def client_error(code: str, op: str = "Request") -> bexc.ClientError:
    return bexc.ClientError({"Error": {"Code": code, "Message": f"{code} (fake)"}}, op)


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRng:
    """``uniform`` always answers the middle of its range: no jitter."""

    def uniform(self, low: float, high: float) -> float:
        return (low + high) / 2


class _Body:
    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def iter_chunks(self, size):
        while block := self._data.read(size):
            yield block

    def close(self):
        pass


class FakeS3:
    """Objects with ETags, metadata and versions; conditional GET and PUT as S3 answers them."""

    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.errors: dict[str, BaseException] = {}  # operation -> what it raises
        self.on_put = lambda: None

    def add(self, bucket, key, data: bytes, metadata=None, version_id=None) -> str:
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        self.objects[(bucket, key)] = {"data": data, "ETag": etag, "Metadata": dict(metadata or {}),
                                       "VersionId": version_id}
        return etag

    def _call(self, op, params):
        self.calls.append((op, params))
        if op in self.errors:
            raise self.errors[op]

    def _get(self, op, bucket, key):
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise client_error("NoSuchKey" if op == "GetObject" else "404", op) from None

    def get_object(self, *, Bucket, Key, IfMatch=None):
        self._call("GetObject", {"Bucket": Bucket, "Key": Key})
        obj = self._get("GetObject", Bucket, Key)
        if IfMatch and IfMatch != obj["ETag"]:
            raise client_error("PreconditionFailed", "GetObject")
        return {"Body": _Body(obj["data"]), "ContentLength": len(obj["data"]), "ETag": obj["ETag"],
                "Metadata": obj["Metadata"], "VersionId": obj["VersionId"]}

    def head_object(self, *, Bucket, Key):
        self._call("HeadObject", {"Bucket": Bucket, "Key": Key})
        obj = self._get("HeadObject", Bucket, Key)
        return {"ETag": obj["ETag"], "Metadata": obj["Metadata"], "ContentLength": len(obj["data"]),
                "VersionId": obj["VersionId"]}

    def list_objects_v2(self, *, Bucket, Prefix, MaxKeys=1000):
        self._call("ListObjectsV2", {"Bucket": Bucket, "Prefix": Prefix})
        keys = sorted(k for b, k in self.objects if b == Bucket and k.startswith(Prefix))[:MaxKeys]
        return {"Contents": [{"Key": k} for k in keys]} if keys else {}

    def put_object(self, *, Bucket, Key, Body, IfNoneMatch=None, IfMatch=None, Metadata=None, **_):
        self._call("PutObject", {"Bucket": Bucket, "Key": Key, "IfNoneMatch": IfNoneMatch, "IfMatch": IfMatch})
        self.on_put()
        existing = self.objects.get((Bucket, Key))
        if (IfNoneMatch == "*" and existing) or (IfMatch and (not existing or existing["ETag"] != IfMatch)):
            raise client_error("PreconditionFailed", "PutObject")
        data = Body.read() if hasattr(Body, "read") else Body
        return {"ETag": self.add(Bucket, Key, data, Metadata)}

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]


class FakeSQS:
    """Records calls; batch calls answer per entry (``refuse``: receipts answered with a sender fault)."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.errors: dict[str, BaseException] = {}
        self.refuse: set[str] = set()
        self.lock = threading.Lock()
        #: What GetQueueAttributes answers for RedrivePolicy (None: the queue has none).
        self.max_receive_count: int | None = 3

    def _call(self, op, params):
        with self.lock:
            self.calls.append((op, params))
        if op in self.errors:
            raise self.errors[op]

    def _batch(self, op, entries):
        self._call(op, {"Entries": entries})
        return {"Successful": [{"Id": e["Id"]} for e in entries if e["ReceiptHandle"] not in self.refuse],
                "Failed": [{"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid"}
                           for e in entries if e["ReceiptHandle"] in self.refuse]}

    def change_message_visibility_batch(self, *, QueueUrl, Entries):
        return self._batch("ChangeMessageVisibilityBatch", Entries)

    def delete_message_batch(self, *, QueueUrl, Entries):
        return self._batch("DeleteMessageBatch", Entries)

    def change_message_visibility(self, **params):
        self._call("ChangeMessageVisibility", params)

    def get_queue_attributes(self, **params):
        self._call("GetQueueAttributes", params)
        if self.max_receive_count is None:
            return {"Attributes": {}}
        return {"Attributes": {"RedrivePolicy": json.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:q-dlq",
                                                            "maxReceiveCount": self.max_receive_count})}}

    def send_message(self, **params):
        self._call("SendMessage", params)
        return {"MessageId": "dlq-copy"}

    def of(self, op) -> list[dict]:
        return [p for o, p in self.calls if o == op]


QUEUE = QueueInfo(url="https://sqs.test/123456789012/q", visibility_timeout_s=30, heartbeat_s=10,
                  dlq_url="https://sqs.test/123456789012/q-dlq", max_receive_count=3)


def config(tmp_path, **kw) -> WorkerConfig:
    kw.setdefault("retry_base_s", 10)
    kw.setdefault("retry_max_s", 100)
    return WorkerConfig(work_dir=str(tmp_path), extension=".out", queue=QUEUE.url, **kw)


def body(key="input/a.txt", **fields) -> str:
    return message.encode(Job(bucket="my-bucket", input_key=key, input_prefix="input/", output_prefix="output/",
                              batch_id=fields.pop("batch_id", "b1"), **fields))


def admit(inflight: Inflight, *bodies: str, attempt: int = 1) -> list[Lease]:
    return inflight.admit([{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": b,
                            "Attributes": {"ApproximateReceiveCount": str(attempt)}}
                           for i, b in enumerate(bodies)])


class Parts:
    """An Inflight, Stats and RecordingLog on a fake clock, as the worker wires them."""

    def __init__(self, concurrency: int = 1):
        self.clock = FakeClock()
        self.inflight = Inflight(concurrency=concurrency, clock=self.clock)
        self.stats = Stats()
        self.log = RecordingLog()


def error_record(s3: FakeS3, key: str) -> dict:
    return json.loads(s3.objects[("my-bucket", key)]["data"])
