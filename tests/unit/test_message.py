"""The job message: one schema, strict decoding, legacy bodies, trust rules, safe names."""

import json

import pytest

from filejobs import message
from filejobs.message import Allowed, Job, MessageError


def job(**kw):
    base = dict(bucket="my-bucket", input_key="input/a/b.txt", input_prefix="input/", output_prefix="output/",
                batch_id="20261128T020501Z-abc123", size=12, etag='"0123456789abcdef0123456789abcdef"')
    base.update(kw)
    return Job(**base)


def test_a_job_round_trips_through_its_wire_format():
    j = job()
    assert message.decode(message.encode(j)) == j


def test_encoded_bodies_are_ascii_so_any_key_survives_sqs_character_rules():
    j = job(input_key="input/été \t\u0001 $(rm) `x`;|-.txt")
    body = message.encode(j)
    assert body.isascii()
    assert message.decode(body).input_key == j.input_key


def test_the_output_key_is_output_prefix_plus_relative_path_plus_extension():
    assert job().output_key(".out") == "output/a/b.txt.out"


def test_the_original_sample_body_is_accepted():
    j = message.decode(json.dumps(["process", "my-bucket", "input/", "output/", "photo 1.jpg"]))
    assert (j.legacy, j.input_key, j.output_key(".out")) == (True, "input/photo 1.jpg", "output/photo 1.jpg.out")


@pytest.mark.parametrize("body, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "legacy body"),
    ('"text"', "expected an object"),
    ("{}", "missing field 'v'"),
    ('{"v": 2}', "unsupported schema version 2"),
    ('{"v": true}', "unsupported schema version"),
    ('{"v": 1, "bucket": "my-bucket"}', "missing field 'input_key'"),
    ('{"v": 1, "bucket": 5, "input_key": "i/a", "input_prefix": "i/", "output_prefix": "o/"}', "must be str"),
    ('{"v": 1, "bucket": "my-bucket", "input_key": "i/a", "input_prefix": "i/", "output_prefix": "o/", "size": "9"}',
     "'size' must be int"),
    ('{"v": 1, "bucket": "my-bucket", "input_key": "i/a", "input_prefix": "i/", "output_prefix": "o/", "size": true}',
     "'size' must be int"),
    ('{"v": 1, "bucket": "My_Bucket", "input_key": "i/a", "input_prefix": "i/", "output_prefix": "o/"}',
     "invalid bucket"),
    ('{"v": 1, "bucket": "my-bucket", "input_key": "x/a", "input_prefix": "i/", "output_prefix": "o/"}',
     "not under input_prefix"),
    ('{"v": 1, "bucket": "my-bucket", "input_key": "i/", "input_prefix": "i/", "output_prefix": "o/"}',
     "names no file"),
])
def test_decoding_rejects_bad_bodies_with_a_one_line_reason(body, reason):
    with pytest.raises(MessageError) as err:
        message.decode(body)
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["/etc/passwd", "input/../../etc/passwd", "input/a/../../b", "input/a\x00b",
                                 "input/" + "x" * 1100])
def test_keys_that_could_escape_or_are_not_s3_keys_are_refused_always(key):
    with pytest.raises(MessageError):
        message.decode(json.dumps(["process", "my-bucket", "", "output/", key]))


def test_a_dot_dot_output_prefix_is_refused():
    with pytest.raises(MessageError, match="'..' segment"):
        message.decode(json.dumps(["process", "my-bucket", "input/", "output/../x/", "a.txt"]))


def test_names_that_merely_contain_two_dots_are_fine():
    assert message.decode(json.dumps(["process", "my-bucket", "input/", "output/", "a..b/..c"])).relative_name == "a..b/..c"


def test_without_configuration_the_message_decides_bucket_and_prefixes():
    message.authorize(job(bucket="other-bucket"), Allowed())


@pytest.mark.parametrize("forged, reason", [
    (dict(bucket="someone-elses"), "not the configured bucket"),
    (dict(input_key="secret/a.txt", input_prefix="secret/"), "outside 'input/'"),
    (dict(output_prefix="public/"), "outside 'output/'"),
])
def test_configured_bucket_and_prefixes_are_enforced(forged, reason):
    with pytest.raises(MessageError, match=reason):
        message.authorize(job(**forged), Allowed(bucket="my-bucket", input_prefix="input/", output_prefix="output/"))


@pytest.mark.parametrize("rel, expected", [
    ("a/b.txt", "b.txt"),
    ("a/-rf", "-rf"),
    ("..", "input"),
    ("a/.", "input"),
    ("x\x00y", "x_y"),
    ("dir\\..\\..\\win.txt", "dir_.._.._win.txt"),
])
def test_local_names_are_one_safe_path_component(rel, expected):
    assert message.safe_local_name(rel) == expected


def test_over_long_local_names_are_cut_keeping_the_extension():
    name = message.safe_local_name("é" * 300 + ".jpeg", ".out")
    assert len(name.encode()) <= message.MAX_LOCAL_NAME_BYTES
    assert name.endswith(".jpeg.out") and "/" not in name


def test_printable_puts_any_name_on_one_visible_line():
    assert message.printable("a\nb\tc'd") == "'a\\nb\\tc\\'d'"


def test_batch_ids_sort_by_time():
    from datetime import datetime, timezone
    a = message.new_batch_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "aaaaaa")
    b = message.new_batch_id(datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc), "000000")
    assert a == "20260102T030405Z-aaaaaa" and a < b


@pytest.mark.parametrize("file_name, reason", [
    ("/tmp/x.txt", "file name is absolute"),
    ("a/../../x.txt", "file name has a '..' segment"),
    ("a//b.txt", "file name has an empty segment"),
    ("a/", "file name has an empty segment"),
])
def test_a_legacy_file_name_that_is_not_a_plain_relative_path_is_refused(file_name, reason):
    # Accepted, "input/" + "/tmp/x.txt" would have written "output//tmp/x.txt.out".
    with pytest.raises(MessageError, match=reason):
        message.decode(json.dumps(["process", "my-bucket", "input/", "output/", file_name]))


@pytest.mark.parametrize("input_key, reason", [
    ("input//tmp/x.txt", "is absolute"),
    ("input/a//b.txt", "has an empty segment"),
])
def test_a_v1_input_key_with_an_empty_segment_below_its_prefix_is_refused_like_a_legacy_one(input_key, reason):
    with pytest.raises(MessageError, match=f"input_key below input_prefix {reason}"):
        message.decode(json.dumps({"v": 1, "bucket": "my-bucket", "input_key": input_key, "input_prefix": "input/",
                                   "output_prefix": "output/"}))
