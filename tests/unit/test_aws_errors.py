"""One-line errors name what is wrong: the bucket, the queue, the operation (filejobs/aws.py describe)."""

import pytest
from botocore.exceptions import ClientError

from filejobs import aws


def client_error(code, op, message="", **extra):
    return ClientError({"Error": {"Code": code, "Message": message, **extra}}, op)


@pytest.mark.parametrize("exc, kwargs, line", [
    (client_error("NoSuchBucket", "ListObjectsV2"), {"bucket": "b-1"}, "bucket b-1 does not exist"),
    # The endpoint names the bucket in its answer when the caller did not say which.
    (client_error("NoSuchBucket", "GetObject", BucketName="b-2"), {}, "bucket b-2 does not exist"),
    (client_error("404", "HeadBucket"), {"bucket": "b-3"}, "bucket b-3 does not exist"),
    (client_error("404", "HeadBucket"), {}, "a bucket does not exist (HeadBucket)"),
    (client_error("AWS.SimpleQueueService.NonExistentQueue", "GetQueueUrl"), {"queue": "q-1"},
     "queue q-1 does not exist (or is in another region/account)"),
    (client_error("QueueDoesNotExist", "ReceiveMessage"), {},
     "a queue does not exist (ReceiveMessage; or it is in another region/account)"),
])
def test_a_missing_bucket_or_queue_is_named(exc, kwargs, line):
    assert aws.describe(exc, **kwargs) == line


@pytest.mark.parametrize("exc, kwargs, line", [
    (client_error("AccessDenied", "GetObject", "Access Denied"), {"bucket": "b-1", "queue": "q-1"},
     "access denied for GetObject on bucket b-1 (check the IAM policy)"),
    (client_error("AccessDenied", "SendMessageBatch", "Access to the resource is denied."),
     {"bucket": "b-1", "queue": "q-1"}, "access denied for SendMessageBatch on queue q-1 (check the IAM policy)"),
    (client_error("AccessDenied", "ReceiveMessage",
                  "User: arn:aws:iam::123456789012:user/u is not authorized to perform: sqs:receivemessage on "
                  "resource: arn:aws:sqs:eu-west-1:123456789012:jobs because no identity-based policy allows it"), {},
     "access denied for ReceiveMessage on arn:aws:sqs:eu-west-1:123456789012:jobs (check the IAM policy)"),
    (client_error("AccessDenied", "PutObject", 'User: x is not authorized to perform: s3:PutObject on resource: '
                  '"arn:aws:s3:::b-9/out/a.txt" because no identity-based policy allows it'), {},
     "access denied for PutObject on arn:aws:s3:::b-9/out/a.txt (check the IAM policy)"),
    (client_error("AccessDenied", "ListObjectsV2"), {}, "access denied for ListObjectsV2 (check the IAM policy)"),
])
def test_access_denied_names_the_operation_and_what_it_was_denied_on(exc, kwargs, line):
    assert aws.describe(exc, **kwargs) == line
