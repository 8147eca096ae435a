"""Create the bucket, the queue and its dead-letter queue (quick start, local endpoint and tests), and
optionally wire S3 event notifications for a prefix to the queue (``jobctl create --watch``).

Idempotent: running it twice changes nothing. The same code serves the embedded endpoint and a
quick start on real AWS; the CloudFormation template in ``infra/`` is the production path.
"""

from __future__ import annotations

import hashlib
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


# --------------------------------------------------------------------------- S3 events to the queue (--watch)


@dataclass(frozen=True)
class Watch:
    prefix: str
    configuration_id: str
    policy_sid: str


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def watch(s3, sqs, *, bucket: str, queue_url: str, prefix: str) -> Watch:
    """Send an S3 event to the queue for every object created under ``prefix`` in ``bucket``.

    The queue policy lets S3 send only on behalf of this bucket in the queue's own account
    (``aws:SourceArn`` and ``aws:SourceAccount``, as AWS recommends against the confused deputy:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/grant-destinations-permissions-to-s3.html).
    It is set first, because S3 checks that it may send (with an ``s3:TestEvent``) when the
    notification is configured. Idempotent: our policy statement and notification configuration
    are named after the bucket and prefix and replaced, everything else is kept.
    """
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    w = Watch(prefix=prefix, configuration_id=f"filejobs-watch-{_short_hash(prefix)}",
              policy_sid=f"FilejobsS3Events{_short_hash(bucket)}")
    _allow_bucket(sqs, queue_url, queue_arn, bucket, w.policy_sid)
    config = {k: v for k, v in s3.get_bucket_notification_configuration(Bucket=bucket).items()
              if k in ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations",
                       "EventBridgeConfiguration")}
    ours = {"Id": w.configuration_id, "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
    if prefix:  # no prefix: the whole bucket
        ours["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    config["QueueConfigurations"] = [c for c in config.get("QueueConfigurations", [])
                                     if c.get("Id") != w.configuration_id] + [ours]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    return w


def _allow_bucket(sqs, queue_url: str, queue_arn: str, bucket: str, sid: str) -> None:
    partition, account = queue_arn.split(":")[1], queue_arn.split(":")[4]
    current = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"]).get("Attributes", {}).get("Policy")
    policy = json.loads(current) if current else {"Version": "2012-10-17", "Statement": []}
    statements = policy.get("Statement", [])
    statements = [s for s in ([statements] if isinstance(statements, dict) else statements) if s.get("Sid") != sid]
    statements.append({
        "Sid": sid, "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": f"arn:{partition}:s3:::{bucket}"},
                      "StringEquals": {"aws:SourceAccount": account}}})
    policy["Statement"] = statements
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
