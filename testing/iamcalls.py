"""Which IAM action(s) on which resource ARN(s) one API call needs, for the evaluator in
testing/policy.py: an S3 ``HeadObject`` needs ``s3:GetObject`` on the object, a
``SendMessageBatch`` needs ``sqs:SendMessage`` on the queue, ... from the parameters the tests'
call recorder keeps. See https://docs.aws.amazon.com/service-authorization/latest/reference/ for
the tables. Pure: no boto3, no I/O.
"""

from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import urlparse

from testing.policy import Need, UnknownOperation

#: An Auto Scaling group's ARN holds a UUID the API calls never show; requests use this one, so a
#: policy must say ``autoScalingGroup:*:autoScalingGroupName/NAME`` (as AWS recommends) to match.
ANY_GROUP_ID = "00000000-0000-0000-0000-000000000000"


def queue_arn(queue_url: str, *, region: str, account: str, partition: str = "aws") -> str:
    """``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`` → ``arn:aws:sqs:REGION:ACCOUNT:NAME``.

    The legacy host forms (``queue.amazonaws.com``, ``REGION.queue.amazonaws.com``) are understood;
    a local endpoint's URL (``http://127.0.0.1:5000/ACCOUNT/NAME``) takes ``region`` as given.
    """
    parsed = urlparse(queue_url)
    path = [p for p in parsed.path.split("/") if p]
    if len(path) != 2:
        raise ValueError(f"not a queue URL: {queue_url!r}")
    url_account, name = path
    host = (parsed.hostname or "").lower()
    m = re.match(r"^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$", host) or \
        re.match(r"^([a-z0-9-]+)\.queue\.amazonaws\.com(\.cn)?$", host)
    if m:
        region = m.group(1)
        if m.group(2):
            partition = "aws-cn"
    elif host == "queue.amazonaws.com":
        region = "us-east-1"
    return f"arn:{partition}:sqs:{region}:{url_account or account}:{name}"


def group_arn(name: str, *, region: str, account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:{ANY_GROUP_ID}:autoScalingGroupName/{name}"


_S3_OBJECT = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject",
    "GetObjectTagging": "s3:GetObjectTagging",
}
_S3_BUCKET = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLocation": "s3:GetBucketLocation",
    "CreateBucket": "s3:CreateBucket",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
_SQS_QUEUE = {
    "GetQueueUrl": "sqs:GetQueueUrl",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "PurgeQueue": "sqs:PurgeQueue",
    "SetQueueAttributes": "sqs:SetQueueAttributes",
    "CreateQueue": "sqs:CreateQueue",
}
_AUTOSCALING_GROUP = {
    "SetInstanceProtection": "autoscaling:SetInstanceProtection",
    "SetDesiredCapacity": "autoscaling:SetDesiredCapacity",
    "UpdateAutoScalingGroup": "autoscaling:UpdateAutoScalingGroup",
    "CompleteLifecycleAction": "autoscaling:CompleteLifecycleAction",
    "RecordLifecycleActionHeartbeat": "autoscaling:RecordLifecycleActionHeartbeat",
    # Names an instance only; IAM authorizes it on the instance's group, which the caller passes
    # here as AutoScalingGroupName.
    "SetInstanceHealth": "autoscaling:SetInstanceHealth",
}
#: Describe* calls have no resource-level permissions: their only resource is "*".
_AUTOSCALING_STAR = {
    "DescribeAutoScalingInstances": "autoscaling:DescribeAutoScalingInstances",
    "DescribeAutoScalingGroups": "autoscaling:DescribeAutoScalingGroups",
    "DescribeScalingActivities": "autoscaling:DescribeScalingActivities",
}

#: Reading metrics has no resource-level permissions either.
_CLOUDWATCH_STAR = ("GetMetricStatistics", "GetMetricData", "ListMetrics", "DescribeAlarms")
#: CloudWatch Logs: a log group's streams (what the CloudWatch agent calls).
_LOGS = {"CreateLogStream": "logs:CreateLogStream", "PutLogEvents": "logs:PutLogEvents",
         "DescribeLogStreams": "logs:DescribeLogStreams"}


def _logs(operation: str, params: Mapping, *, region: str, account: str, partition: str) -> list[Need]:
    # Checked against the log group's streams, as AWS's own examples grant them ("log-group:NAME:*").
    group = f"arn:{partition}:logs:{region}:{account}:log-group:{params['logGroupName']}"
    return [Need(_LOGS[operation], f"{group}:log-stream:{params.get('logStreamName') or '*'}")]


def _sqs(operation: str, params: Mapping, *, region: str, account: str, partition: str) -> list[Need] | None:
    if operation == "GetQueueUrl":
        account_id = params.get("QueueOwnerAWSAccountId") or account
        return [Need("sqs:GetQueueUrl", f"arn:{partition}:sqs:{region}:{account_id}:{params['QueueName']}")]
    if operation == "CreateQueue":
        return [Need("sqs:CreateQueue", f"arn:{partition}:sqs:{region}:{account}:{params['QueueName']}")]
    if operation == "ListQueues":
        return [Need("sqs:ListQueues", "*")]
    if operation in ("StartMessageMoveTask", "ListMessageMoveTasks"):
        # A move task reads and deletes from its source (the DLQ) and sends to the destination
        # (by default the queues the messages came from):
        # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html
        source = params["SourceArn"]
        needs = [Need(f"sqs:{operation}", source)]
        if operation == "StartMessageMoveTask":
            needs += [Need(a, source) for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                 "sqs:GetQueueAttributes")]
            if params.get("DestinationArn"):
                needs.append(Need("sqs:SendMessage", params["DestinationArn"]))
        return needs
    if operation in _SQS_QUEUE:
        arn = queue_arn(params["QueueUrl"], region=region, account=account, partition=partition)
        return [Need(_SQS_QUEUE[operation], arn)]
    return None


def required(service: str, operation: str, params: Mapping, *, region: str, account: str,
             partition: str = "aws") -> list[Need]:
    """The permissions one API call needs, from its service, operation name and parameters
    (``Bucket``, ``Key``, ``Prefix``, ``Delete``, ``QueueUrl``, ``QueueName``, ``AutoScalingGroupName``,
    ``SourceArn``/``DestinationArn``, ``Namespace``, ``logGroupName``/``logStreamName``). Raises ``UnknownOperation`` for a call it has no rule for and
    ``KeyError`` when a parameter it needs is missing."""
    if service == "s3":
        bucket_arn = f"arn:{partition}:s3:::{params['Bucket']}"
        if operation == "DeleteObjects":
            # One request, but IAM checks s3:DeleteObject for every key in it.
            return [Need("s3:DeleteObject", f"{bucket_arn}/{o['Key']}") for o in params["Delete"]["Objects"]]
        if operation in _S3_OBJECT:
            return [Need(_S3_OBJECT[operation], f"{bucket_arn}/{params['Key']}")]
        if operation in _S3_BUCKET:
            context = ()
            if operation in ("ListObjectsV2", "ListObjects"):
                # s3:prefix is always in the request context of a listing ("" when no Prefix).
                context = (("s3:prefix", params.get("Prefix") or ""),)
            return [Need(_S3_BUCKET[operation], bucket_arn, context)]
    elif service == "sqs":
        needs = _sqs(operation, params, region=region, account=account, partition=partition)
        if needs is not None:
            return needs
    elif service == "autoscaling":
        if operation in _AUTOSCALING_STAR:
            return [Need(_AUTOSCALING_STAR[operation], "*")]
        if operation in _AUTOSCALING_GROUP:
            arn = group_arn(params["AutoScalingGroupName"], region=region, account=account, partition=partition)
            return [Need(_AUTOSCALING_GROUP[operation], arn)]
    elif service in ("cloudwatch", "monitoring"):
        if operation in _CLOUDWATCH_STAR:
            return [Need(f"cloudwatch:{operation}", "*")]
        if operation == "PutMetricData":
            return [Need("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", params["Namespace"]),))]
    elif service == "logs" and operation in _LOGS:
        return _logs(operation, params, region=region, account=account, partition=partition)
    raise UnknownOperation(f"no IAM mapping for {service}:{operation}")
