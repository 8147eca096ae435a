"""getjobs moving inputs and outputs through the AWS CRT (--transfers crt), against a moto server
over real HTTP (the CRT's native client cannot reach mock_aws): outputs carry their metadata and
the input's ETag, writes stay create-only, a replaced input is skipped, a missing one fails with
its reason, and files above 1 MiB still go through botocore."""

import json

import pytest

from filejobs import message
from filejobs.ops import resources
from testing.helpers import REGION, list_keys, run_tool, unique

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not __import__("filejobs.crt").crt.available(),
                                                  reason="the crt extra is not installed")]

META = "filejobs-input-etag"


@pytest.fixture
def res(server):
    return resources.create_all(server.s3, server.sqs, bucket=unique("b"), queue=unique("q"), region=REGION,
                                settings=resources.QueueSettings(visibility_timeout_s=30, max_receive_count=1))


def put_input(server, res, name, body):
    return server.s3.put_object(Bucket=res.bucket, Key=f"input/{name}", Body=body)["ETag"]


def send_job(server, res, name, *, etag=None, size=None, batch_id="20261204T000000Z-abcdef"):
    job = message.Job(bucket=res.bucket, input_key=f"input/{name}", input_prefix="input/", output_prefix="output/",
                      batch_id=batch_id, size=size, etag=etag)
    server.sqs.send_message(QueueUrl=res.queue_url, MessageBody=message.encode(job))


def work(server, res, tmp_path, *extra):
    """Run getjobs until the queue stays empty; its events (JSON lines), by name."""
    ran = run_tool("getjobs", "--transfers", "crt", "--log-format", "json", "--exit-when-idle", "1",
                   "--wait-time", "1", "--retry-delay", "0", *extra, tmp_path / "work", ".out", res.queue_url,
                   REGION, "cp", env=server.env)
    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "started" and events[0]["transfers"] == "crt"
    return {e["event"]: e for e in events}, events


def test_an_output_written_through_the_crt_has_its_metadata_and_the_input_etag(server, res, tmp_path):
    etag = put_input(server, res, "a b+c.txt", b"alpha")
    send_job(server, res, "a b+c.txt", etag=etag, size=5)
    by_name, _ = work(server, res, tmp_path)
    head = server.s3.head_object(Bucket=res.bucket, Key="output/a b+c.txt.out")
    assert by_name["done"]["output"] == "output/a b+c.txt.out"
    assert head["Metadata"] == {META: etag.strip('"'), "filejobs-batch": "20261204T000000Z-abcdef"}
    assert server.s3.get_object(Bucket=res.bucket, Key="output/a b+c.txt.out")["Body"].read() == b"alpha"
    assert list(tmp_path.joinpath("work").rglob("*.txt*")) == []


def test_a_second_write_of_the_same_output_is_refused_as_a_duplicate(server, res, tmp_path):
    etag = put_input(server, res, "a.txt", b"alpha")
    send_job(server, res, "a.txt", etag=etag, size=5)
    work(server, res, tmp_path)
    first = server.s3.head_object(Bucket=res.bucket, Key="output/a.txt.out")
    send_job(server, res, "a.txt", etag=etag, size=5)  # a fresh message: no redelivery check, the PUT meets 412
    by_name, _ = work(server, res, tmp_path)
    assert by_name["skipped"]["reason"] == "a duplicate delivery wrote it first"
    again = server.s3.head_object(Bucket=res.bucket, Key="output/a.txt.out")
    assert (again["ETag"], again["LastModified"]) == (first["ETag"], first["LastModified"])
    assert server.sqs.get_queue_attributes(QueueUrl=res.queue_url, AttributeNames=["All"])["Attributes"][
        "ApproximateNumberOfMessagesNotVisible"] == "0"


def test_an_older_versions_output_is_replaced_with_if_match_through_the_crt(server, res, tmp_path):
    server.s3.put_object(Bucket=res.bucket, Key="output/a.txt.out", Body=b"old", Metadata={META: "0" * 32})
    etag = put_input(server, res, "a.txt", b"newer")
    send_job(server, res, "a.txt", etag=etag, size=5)
    by_name, _ = work(server, res, tmp_path)
    assert "done" in by_name
    head = server.s3.head_object(Bucket=res.bucket, Key="output/a.txt.out")
    assert head["Metadata"][META] == etag.strip('"') and head["ContentLength"] == 5


def test_an_input_replaced_after_its_job_was_sent_is_skipped_as_stale(server, res, tmp_path):
    old = put_input(server, res, "a.txt", b"first")
    put_input(server, res, "a.txt", b"second")
    send_job(server, res, "a.txt", etag=old, size=5)  # the GET's If-Match fails with 412
    by_name, _ = work(server, res, tmp_path)
    assert by_name["skipped"]["reason"] == "input changed since the job was sent"
    assert list_keys(server.s3, res.bucket, "output/") == []
    assert list(tmp_path.joinpath("work").rglob("a.txt")) == []


def test_a_missing_input_fails_with_its_reason_and_leaves_no_partial_file(server, res, tmp_path):
    send_job(server, res, "gone.txt", size=5)
    by_name, _ = work(server, res, tmp_path)
    assert by_name["failed"]["reason"] == "input object is missing"
    assert list_keys(server.s3, res.bucket, "output/") == []
    assert list(tmp_path.joinpath("work").rglob("gone.txt")) == []


def test_inputs_above_one_mib_or_without_a_size_are_moved_whole(server, res, tmp_path):
    body = bytes(range(256)) * (5 * 1024)  # 1.25 MiB
    etag = put_input(server, res, "big.bin", body)
    send_job(server, res, "big.bin", etag=etag, size=len(body))
    send_job(server, res, "unsized.txt", etag=put_input(server, res, "unsized.txt", b"no size in its job"))
    work(server, res, tmp_path)
    assert server.s3.get_object(Bucket=res.bucket, Key="output/big.bin.out")["Body"].read() == body
    assert server.s3.get_object(Bucket=res.bucket, Key="output/unsized.txt.out")["Body"].read() == \
        b"no size in its job"


def test_an_empty_input_gives_an_empty_output(server, res, tmp_path):
    send_job(server, res, "empty", etag=put_input(server, res, "empty", b""), size=0)
    by_name, _ = work(server, res, tmp_path)
    assert by_name["done"]["output"] == "output/empty.out"
    assert server.s3.head_object(Bucket=res.bucket, Key="output/empty.out")["ContentLength"] == 0


@pytest.mark.slow
def test_jobs_survive_s3_errors_resets_and_lost_answers_on_the_crts_requests(server, tmp_path):
    from testing.faultproxy import FaultProxy

    res = resources.create_all(server.s3, server.sqs, bucket=unique("b"), queue=unique("q"), region=REGION,
                               settings=resources.QueueSettings(visibility_timeout_s=5, max_receive_count=5))
    names = [f"f{i:02d}.txt" for i in range(20)]
    for name in names:
        send_job(server, res, name, etag=put_input(server, res, name, name.encode()), size=len(name))
    # 10 % of all requests fail (SQS's through botocore, whose retries get through; the CRT's on
    # any attempt: a request is lost only if all 6 of its attempts are, and then the job is retried).
    with FaultProxy(server.target.endpoint_url, rate=0.10, seed=5, timeout_delay_s=0.5) as proxy:
        ran = run_tool("getjobs", "--transfers", "crt", "--concurrency", "4", "--exit-when-idle", "8",
                       "--wait-time", "1", "--retry-delay", "0", "--visibility-timeout", "5", tmp_path / "work",
                       ".out", res.queue_url, REGION, "cp", env={**server.env, "AWS_ENDPOINT_URL": proxy.url})
    assert ran.returncode == 0, ran.stderr
    assert proxy.faults_by_op.get("s3:GET", 0) + proxy.faults_by_op.get("s3:PUT", 0) > 0
    for name in names:
        assert server.s3.get_object(Bucket=res.bucket, Key=f"output/{name}.out")["Body"].read() == name.encode()
