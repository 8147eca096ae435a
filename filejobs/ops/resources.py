"""Create the bucket, the queue and its dead-letter queue (quick start, local endpoint and tests).

Idempotent: running it twice changes nothing. The same code serves the embedded endpoint and a
quick start on real AWS; the CloudFormation template in ``infra/`` is the production path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import botocore.exceptions as bexc

#: 14 days, SQS's maximum, so failed jobs wait for a human as long as possible.
DLQ_RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True)
class QueueSettings:
    visibility_timeout_s: int = 60
    max_receive_count: int = 5
    retention_s: int = 4 * 24 * 3600


@dataclass(frozen=True)
class Created:
    bucket: str
    queue_url: str
    dlq_url: str


def ensure_bucket(s3, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except bexc.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    args = {"Bucket": bucket}
    # us-east-1 is the one region that rejects an explicit LocationConstraint.
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**args)
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True})


def ensure_queue(sqs, name: str, settings: QueueSettings = QueueSettings()) -> tuple[str, str]:
    """Create ``name`` and ``name-dlq`` with a redrive policy; return (queue url, dlq url)."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq", Attributes={
        "MessageRetentionPeriod": str(DLQ_RETENTION_S), "SqsManagedSseEnabled": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {
        "VisibilityTimeout": str(settings.visibility_timeout_s),
        "MessageRetentionPeriod": str(settings.retention_s),
        # Long polling by default also helps tools that forget WaitTimeSeconds.
        "ReceiveMessageWaitTimeSeconds": "20",
        "SqsManagedSseEnabled": "true",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(settings.max_receive_count)}),
    }
    try:
        queue_url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except bexc.ClientError as exc:
        # An existing queue with other attributes: keep it, but make its settings ours.
        if "QueueAlreadyExists" not in (exc.response.get("Error", {}).get("Code") or ""):
            raise
        queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    return queue_url, dlq_url


def create_all(s3, sqs, *, bucket: str, queue: str, region: str,
               settings: QueueSettings = QueueSettings()) -> Created:
    ensure_bucket(s3, bucket, region)
    queue_url, dlq_url = ensure_queue(sqs, queue, settings)
    return Created(bucket=bucket, queue_url=queue_url, dlq_url=dlq_url)
