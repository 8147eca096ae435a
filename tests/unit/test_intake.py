"""What a message body asks for, in each of the three forms, and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from filejobs import message
from filejobs.intake import Ask, read
from filejobs.message import Allowed, Job
from test_s3event import record, sns

EVENTS = Allowed(bucket="in-bucket", input_prefix="input/", output_prefix="output/", s3_events=True)
TEST_EVENT = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-12-04T10:00:00Z", "Bucket": "in-bucket"}


def ask(data, allowed=EVENTS):
    return read(data if isinstance(data, str) else json.dumps(data), allowed=allowed, extension=".out")


def events(*records):
    return {"Records": list(records)}


def test_a_version_1_message_is_one_job():
    job = Job(bucket="in-bucket", input_key="input/a.txt", input_prefix="input/", output_prefix="output/")
    request = ask(message.encode(job), Allowed())
    assert (request.ask, request.jobs) == (Ask.JOBS, (job,))


def test_the_original_sample_message_is_one_job():
    (job,) = ask(["process", "in-bucket", "input/", "output/", "a b.txt"], Allowed()).jobs
    assert (job.input_key, job.legacy) == ("input/a b.txt", True)


def test_an_object_created_event_is_a_job_with_the_configured_prefixes_and_the_events_version():
    (job,) = ask(events(record("input/red+flower.jpg", bucket="in-bucket", etag="abc", version="v7"))).jobs
    assert job == Job(bucket="in-bucket", input_key="input/red flower.jpg", input_prefix="input/",
                      output_prefix="output/", size=12, etag='"abc"', version_id="v7")


def test_an_sns_wrapped_event_is_the_same_job():
    assert ask(sns(events(record("input/a.txt", bucket="in-bucket")))) == ask(events(record("input/a.txt",
                                                                                            bucket="in-bucket")))


def test_several_records_are_several_jobs_and_a_repeated_one_is_one():
    request = ask(events(*(record(f"input/{k}", bucket="in-bucket") for k in ("a", "b", "a"))))
    assert [j.input_key for j in request.jobs] == ["input/a", "input/b"]


@pytest.mark.parametrize("data, why", [
    (TEST_EVENT, "s3:TestEvent"),
    (sns(TEST_EVENT), "s3:TestEvent"),
    (events(record("input/gone.txt", bucket="in-bucket", name="ObjectRemoved:Delete")), "ObjectRemoved:Delete"),
    (events(record("input/folder/", bucket="in-bucket", size=0)), "folder marker"),
])
def test_a_test_event_a_removal_or_a_folder_asks_for_nothing(data, why):
    request = ask(data)
    assert request.ask is Ask.NOTHING and why in request.reason and request.jobs == ()


def test_records_left_out_beside_jobs_are_named():
    request = ask(events(record("input/a", bucket="in-bucket"),
                         record("input/b", bucket="in-bucket", name="ObjectRemoved:Delete")))
    assert request.ask is Ask.JOBS and len(request.jobs) == 1 and "ObjectRemoved:Delete" in request.reason


@pytest.mark.parametrize("data, why", [
    (events(record("input/a.txt", bucket="someone-else")), "S3 event: bucket 'someone-else' is not the configured"),
    (events(record("other/a.txt", bucket="in-bucket")), "S3 event: input key 'other/a.txt' is outside 'input/'"),
    (events(record("input/../etc/passwd", bucket="in-bucket")), "'..' segment"),
    (events(record("input/a//b", bucket="in-bucket")), "empty segment"),
    (events(record("input/%FF.txt", bucket="in-bucket")), "not UTF-8 once decoded"),
    (events(record("input/a", bucket="in-bucket", etag=7)), "non-string eTag"),
    (events(record("input/ok", bucket="in-bucket"), record("elsewhere/x", bucket="in-bucket")),
     "record 1 ('elsewhere/x'): input key"),
    ({"Records": []}, "S3 event: S3 event without records"),
])
def test_an_event_for_another_bucket_or_outside_the_prefix_or_malformed_is_rejected(data, why):
    request = ask(data)
    assert request.ask is Ask.REJECTED and why in request.reason and request.jobs == ()
    assert "\n" not in request.reason


def test_without_s3_events_an_event_is_rejected_with_what_to_do():
    for data in (events(record("input/a.txt", bucket="in-bucket")), TEST_EVENT):
        request = ask(data, Allowed(bucket="in-bucket", input_prefix="input/", output_prefix="output/"))
        assert request.ask is Ask.REJECTED and "start getjobs with --s3-events" in request.reason


def test_events_without_configured_prefixes_are_rejected():
    request = ask(events(record("input/a", bucket="in-bucket")), Allowed(s3_events=True))
    assert request.ask is Ask.REJECTED and "configured bucket, input prefix and output prefix" in request.reason


def test_job_messages_stay_accepted_in_event_mode():
    job = Job(bucket="in-bucket", input_key="input/a.txt", input_prefix="input/", output_prefix="output/")
    assert ask(message.encode(job)).jobs == (job,)


@pytest.mark.parametrize("body, why", [
    ("{not json", "not JSON"),
    ('{"hello": 1}', "missing field 'v'"),
    (json.dumps(["process", "in-bucket", "input/", "output/", "/etc/x"]), "absolute"),
    (json.dumps(["process", "other-bucket", "input/", "output/", "a"]), "not the configured bucket"),
    (json.dumps(["process", "in-bucket", "input/", "output/", "a" * 1016]), "output key is 1027 bytes"),
])
def test_a_bad_job_message_is_rejected_with_one_line(body, why):
    request = read(body, allowed=EVENTS, extension=".out")
    assert request.ask is Ask.REJECTED and why in request.reason
