"""Choosing the AWS CRT for uploads, and its errors read the way botocore's are."""

from types import SimpleNamespace

import pytest

from filejobs import aws, crt


def clients(proxies=None):
    return SimpleNamespace(s3=SimpleNamespace(meta=SimpleNamespace(config=SimpleNamespace(proxies=proxies))))


def test_auto_takes_the_crt_only_when_it_is_installed_and_usable(monkeypatch):
    monkeypatch.setattr(crt, "available", lambda: True)
    assert crt.choose("auto", clients(), "my-bucket", {}) == "crt"
    assert crt.choose("auto", clients(), "my-bucket", {"HTTPS_PROXY": "http://proxy:3128"}) == "botocore"
    assert crt.choose("auto", clients({"https": "http://proxy"}), "my-bucket", {}) == "botocore"
    assert crt.choose("auto", clients(), "arn:aws:s3:eu-west-1:1:accesspoint/x", {}) == "botocore"
    assert crt.choose("auto", clients(), "fast--usw2-az1--x-s3", {}) == "botocore"
    assert crt.choose("botocore", clients(), "my-bucket", {}) == "botocore"
    monkeypatch.setattr(crt, "available", lambda: False)
    assert crt.choose("auto", clients(), "my-bucket", {}) == "botocore"


def test_asking_for_the_crt_where_it_cannot_serve_says_why(monkeypatch):
    monkeypatch.setattr(crt, "available", lambda: False)
    with pytest.raises(ValueError, match=r"not installed \(pip install 'filejobs\[crt\]'\)"):
        crt.choose("crt", clients(), "my-bucket", {})
    monkeypatch.setattr(crt, "available", lambda: True)
    with pytest.raises(ValueError, match="a proxy is configured"):
        crt.choose("crt", clients(), "my-bucket", {"https_proxy": "http://proxy:3128"})


def test_an_s3_error_answer_becomes_a_client_error_the_tools_already_understand():
    body = b"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"
    error = crt.client_error(RuntimeError("crt"), 404, body)
    assert aws.error_code(error) == "NoSuchBucket" and aws.is_fatal(error)
    assert aws.describe(error, bucket="b-x") == "bucket b-x does not exist"
    precondition = crt.client_error(RuntimeError("crt"), 412, b"<Error><Code>PreconditionFailed</Code></Error>")
    assert aws.is_precondition_failed(precondition)
    assert aws.error_code(crt.client_error(RuntimeError("crt"), 503, b"not xml")) == "503"


def test_a_connection_failure_names_the_endpoint():
    refused = SimpleNamespace(name="AWS_IO_SOCKET_CONNECTION_REFUSED")
    error = crt.client_error(refused, None, None, endpoint_url="http://127.0.0.1:9")
    assert aws.describe(error) == "cannot reach the endpoint http://127.0.0.1:9"


def test_a_worker_without_a_bucket_takes_the_crt_and_checks_each_jobs_bucket(monkeypatch):
    monkeypatch.setattr(crt, "available", lambda: True)
    assert crt.choose("auto", clients(), None, {}) == "crt"
    assert crt.plain_bucket("my-bucket") and not crt.plain_bucket("arn:aws:s3:eu-west-1:1:accesspoint/x")
    assert not crt.plain_bucket("fast--usw2-az1--x-s3")
