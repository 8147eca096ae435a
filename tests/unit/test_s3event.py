"""S3 Event Notification messages, direct and wrapped by SNS, as AWS documents them."""

from __future__ import annotations

import json

import pytest

from filejobs.s3event import EventError, decode, is_event


def record(key, *, name="ObjectCreated:Put", bucket="in-bucket", size=12, etag="0123abcd", version=None,
           sequencer="0055AED6DCD90281E5"):
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
    obj = {"key": key, "size": size, "eTag": etag, "sequencer": sequencer}
    if version:
        obj["versionId"] = version
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-12-04T10:00:00.000Z", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "filejobs",
                   "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj}}


def sns(inner: dict) -> dict:
    return {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
            "Subject": "Amazon S3 Notification", "Message": json.dumps(inner), "Timestamp": "2026-12-04T10:00:00Z"}


def test_keys_are_url_decoded_the_way_s3_encodes_them():
    n = decode({"Records": [record("input/red+flower%C3%BC+%2B1.jpg")]})
    (obj,) = n.objects
    assert obj.key == "input/red flowerü +1.jpg"
    assert obj.etag == '"0123abcd"' and obj.size == 12 and obj.bucket == "in-bucket"


def test_an_sns_wrapped_event_reads_like_a_direct_one():
    direct = decode({"Records": [record("input/a.txt")]})
    assert is_event(sns({"Records": [record("input/a.txt")]}))
    assert decode(sns({"Records": [record("input/a.txt")]})) == direct


def test_test_events_are_recognised_direct_and_wrapped():
    test = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-12-04T10:00:00Z", "Bucket": "b"}
    assert decode(test).test and decode(sns(test)).test


def test_removals_are_skipped_and_folders_are_not_jobs():
    n = decode({"Records": [record("input/gone.txt", name="ObjectRemoved:Delete"),
                            record("input/folder/", size=0), record("input/a.txt"), record("input/b.txt")]})
    assert [o.key for o in n.objects] == ["input/a.txt", "input/b.txt"]
    assert "ObjectRemoved:Delete" in n.skipped[0] and "folder marker" in n.skipped[1]


def test_a_version_id_is_kept_for_versioned_buckets():
    (obj,) = decode({"Records": [record("input/a.txt", version="3HL4kqtJlcpXroDTDmJ")]}).objects
    assert obj.version_id == "3HL4kqtJlcpXroDTDmJ"


@pytest.mark.parametrize("body, why", [
    ({"Records": []}, "without records"),
    ({"Records": [{"eventSource": "aws:sqs"}]}, "not an S3 event record"),
    ({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}, "lacks the bucket"),
    ({"Records": [record("input/a", size=-1)]}, "invalid object size"),
    ({"Records": [record("input/%C3%28.txt")]}, "not UTF-8 once decoded"),
    ({"Records": [record("input/a", etag={"x": 1})]}, "non-string eTag"),
    ({"Records": [record("input/a", version=["v1"])]}, "non-string eTag, versionId"),
    ({"Type": "Notification", "TopicArn": "t", "Message": "not json"}, "not JSON"),
    ({"Type": "Notification", "TopicArn": "t", "Message": "{\"hello\": 1}"}, "does not carry an S3 event"),
])
def test_a_malformed_event_is_one_line_saying_why(body, why):
    assert is_event(body)
    with pytest.raises(EventError, match=why):
        decode(body)


def test_job_messages_are_not_events():
    assert not is_event({"v": 1, "bucket": "b"}) and not is_event(["process", "b", "i/", "o/", "f"])


def test_localstack_and_moto_percent_encodings_decode_to_the_same_key():
    # LocalStack sends a space as %20 and moto encodes "/" as %2F; AWS documents "+" for a space.
    keys = {decode({"Records": [record(k)]}).objects[0].key
            for k in ("input/a+b%2B%C3%BC.txt", "input/a%20b%2B%C3%BC.txt", "input%2Fa+b%2B%C3%BC.txt")}
    assert keys == {"input/a b+ü.txt"}


def test_skipped_records_are_named_on_one_line():
    n = decode({"Records": [record("input/new%0Aline/", size=0)]})
    assert n.skipped == ("'input/new\\nline/' is a folder marker",)
