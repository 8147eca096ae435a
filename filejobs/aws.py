"""Everything about reaching AWS (or a local endpoint): sessions, clients, retries, and turning
botocore's exceptions into one line a user can act on.

Real AWS and the embedded endpoint share this code path; only ``endpoint_url`` differs.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import botocore.exceptions as bexc

if TYPE_CHECKING:
    from botocore.config import Config

# boto3 and the rest of botocore (0.15 s of CPU to import) are imported when the first session or
# client is made, so that --help, --version and a usage error answer at once.

#: Credentials the tools supply for a loopback endpoint only (moto accepts anything), so that the
#: embedded mode needs no account. Real endpoints always use the standard credential chain.
LOCAL_CREDENTIALS = {"aws_access_key_id": "filejobs-local", "aws_secret_access_key": "filejobs-local"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_REGION_RE = re.compile(r"^[a-z]{2,4}(-[a-z0-9]+)+-\d+$")


class AwsSetupError(Exception):
    """A configuration problem found before any work is done (one line, exit 1)."""


@dataclass(frozen=True)
class Target:
    """Where requests go: region, endpoint (``None`` = AWS), named profile."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None

    @property
    def resolved_endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None

    @property
    def is_local(self) -> bool:
        url = self.resolved_endpoint
        return bool(url) and urlparse(url).hostname in _LOOPBACK


@dataclass
class Clients:
    s3: object
    sqs: object
    session: object = field(repr=False, default=None)
    target: Target = field(default_factory=Target)

    def client(self, service: str, **kwargs):
        """Another client (autoscaling, cloudwatch…) built the same way."""
        return _client(self.session, service, self.target, **kwargs)


def make_session(target: Target):
    # botocore reads AWS_DEFAULT_REGION only; other AWS SDKs and tools also honour AWS_REGION.
    import boto3

    region = target.region or os.environ.get("AWS_REGION") or None
    try:
        session = boto3.Session(profile_name=target.profile, region_name=region)
    except bexc.ProfileNotFound:
        raise AwsSetupError(f"AWS profile {target.profile!r} not found") from None
    if target.is_local and session.get_credentials() is None:
        session = boto3.Session(region_name=region or session.region_name or "us-east-1",
                                **LOCAL_CREDENTIALS)
    if not session.region_name:
        raise AwsSetupError("no AWS region: pass REGION or set AWS_REGION / AWS_DEFAULT_REGION or a profile region")
    region = session.region_name
    if not target.resolved_endpoint and not _REGION_RE.match(region):
        raise AwsSetupError(f"invalid AWS region {region!r} (expected a name like eu-west-1)")
    return session


def is_known_region(session, region: str) -> bool:
    """Whether this botocore's bundled endpoint list names ``region``. The list lags new regions, so
    an unknown but well-formed name is only worth a warning: an older botocore on a worker must not
    refuse a region that AWS opened after it was released."""
    return any(region in session.get_available_regions("sqs", partition_name=partition)
               for partition in session.get_available_partitions())


def client_config(*, max_pool_connections: int = 10, read_timeout_s: int = 70, max_attempts: int = 5) -> Config:
    from botocore.config import Config

    # Standard retry mode retries throttling, 5xx and connection errors with exponential backoff
    # and a retry quota: https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
    # The read timeout must exceed the 20 s long poll.
    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        # Uploads carry a Content-MD5 we compute (transfer.py), which S3 verifies; a second,
        # CRC32 checksum on every request would cost ~0.5 ms of CPU per PUT for no extra safety.
        # Responses are still validated ("when_supported").
        request_checksum_calculation="when_required",
        max_pool_connections=max(10, max_pool_connections),
        connect_timeout=5,
        read_timeout=read_timeout_s,
    )


#: Bodies up to this size go out without ``Expect: 100-continue`` (the Go SDK's default threshold
#: is 2 MB, ``s3.Options.ContinueHeaderThresholdBytes``).
EXPECT_CONTINUE_MIN_BYTES = 2 * 1024 * 1024


def _no_expect_for_small_bodies(params, **_):
    """botocore asks for ``Expect: 100-continue`` on every S3 PUT with a body and then reads the
    interim answer one byte per system call: a round trip and ≈50 syscalls per request, which is
    most of a small PUT's cost. Waiting for "100 Continue" only spares re-sending a large body the
    server refuses, so small bodies are sent at once (S3 accepts both):
    https://docs.aws.amazon.com/AmazonS3/latest/API/RESTCommonRequestHeaders.html"""
    headers = params.get("headers") or {}
    if "Expect" not in headers:
        return
    length = headers.get("Content-Length")
    if length is None:
        from botocore.utils import determine_content_length

        length = determine_content_length(params.get("body"))
    else:
        length = int(length)
    if length is not None and length <= EXPECT_CONTINUE_MIN_BYTES:
        del headers["Expect"]


def _client(session, service: str, target: Target, **config_kwargs):
    client = session.client(service, endpoint_url=target.resolved_endpoint, config=client_config(**config_kwargs))
    if service == "s3":
        client.meta.events.register_last("before-call.s3", _no_expect_for_small_bodies)
    return client


def make_clients(target: Target, *, max_pool_connections: int = 10) -> Clients:
    session = make_session(target)
    return Clients(
        s3=_client(session, "s3", target, max_pool_connections=max_pool_connections),
        sqs=_client(session, "sqs", target, max_pool_connections=max_pool_connections),
        session=session,
        target=target,
    )


def queue_url_from_arn(arn: str, sibling_url: str) -> str:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME`` → its URL, built beside a known queue's URL so that it
    goes to the same endpoint (AWS, a VPC endpoint or a local emulator)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn!r}")
    account, name = parts[4], parts[5]
    return f"{sibling_url.rstrip('/').rsplit('/', 2)[0]}/{account}/{name}"


def dead_letter_target(redrive_policy: str | dict) -> tuple[str, int]:
    """(dead-letter queue ARN, maxReceiveCount) of a queue's ``RedrivePolicy`` attribute."""
    policy = json.loads(redrive_policy) if isinstance(redrive_policy, str) else redrive_policy
    return policy["deadLetterTargetArn"], int(policy["maxReceiveCount"])


def resolve_queue_url(sqs, queue: str) -> str:
    """QUEUE may be a name (looked up) or a URL (used as is)."""
    if queue.startswith(("https://", "http://")):
        return queue
    return sqs.get_queue_url(QueueName=queue)["QueueUrl"]


def queue_name(queue: str) -> str:
    return queue.rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- errors

_QUEUE_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
_DENIED = {"AccessDenied", "AccessDeniedException", "AuthorizationError", "AllAccessDisabled",
           "KMS.AccessDeniedException", "Forbidden", "403"}
_BAD_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId",
                    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "InvalidToken"}


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, bexc.ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchVersion"}
_PRECONDITION = {"PreconditionFailed", "412"}
#: S3 answers 409 ConditionalRequestConflict when two conditional writes to one key race.
#: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
_CONDITIONAL_CONFLICT = {"ConditionalRequestConflict", "409"}


def is_not_found(exc: BaseException) -> bool:
    """The object (or version) does not exist."""
    return error_code(exc) in _NOT_FOUND


def is_denied(exc: BaseException) -> bool:
    return error_code(exc) in _DENIED


def is_precondition_failed(exc: BaseException) -> bool:
    """An ``If-Match``/``If-None-Match`` condition did not hold (or lost a race to another write)."""
    code = error_code(exc)
    return code in _PRECONDITION or code in _CONDITIONAL_CONFLICT


def is_queue_missing(exc: BaseException) -> bool:
    return error_code(exc) in _QUEUE_MISSING


def is_fatal(exc: BaseException) -> bool:
    """Errors no retry can fix: the configuration is wrong (queue gone, access denied, bad keys)."""
    if isinstance(exc, (bexc.NoCredentialsError, bexc.NoRegionError, bexc.ProfileNotFound,
                        bexc.PartialCredentialsError)):
        return True
    code = error_code(exc)
    return code in _QUEUE_MISSING or code in _DENIED or code in _BAD_CREDENTIALS or code == "NoSuchBucket"


#: What botocore raises for a request that failed (the endpoint's answer, or no answer at all).
AWS_ERRORS = (bexc.BotoCoreError, bexc.ClientError)

#: "User: arn:… is not authorized to perform: sqs:ReceiveMessage on resource: arn:aws:sqs:… because …"
_RESOURCE_RE = re.compile(r"on resource:\s*\"?([^\"\s]+)")


def describe(exc: BaseException, *, bucket: str | None = None, queue: str | None = None) -> str:
    """One line naming what is wrong, for any exception botocore raises. A missing bucket or queue
    is named (from ``bucket``/``queue``, or the endpoint's answer), an access denied names the
    operation and what it was denied on."""
    if isinstance(exc, AwsSetupError):
        return str(exc)
    if isinstance(exc, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
        return "no AWS credentials found (use --profile, AWS_PROFILE, environment variables or an instance role)"
    if isinstance(exc, bexc.NoRegionError):
        return "no AWS region: pass REGION or set AWS_REGION"
    if isinstance(exc, bexc.ProfileNotFound):
        return f"AWS profile not found: {exc.kwargs.get('profile')}"
    if isinstance(exc, (bexc.EndpointConnectionError, bexc.ConnectTimeoutError)):
        return f"cannot reach the endpoint {exc.kwargs.get('endpoint_url', '')}".rstrip()
    if isinstance(exc, bexc.ReadTimeoutError):
        return f"the endpoint did not answer in time ({exc.kwargs.get('endpoint_url', '')})"
    if isinstance(exc, bexc.ClientError):
        return _describe_client_error(exc, bucket=bucket, queue=queue)
    if isinstance(exc, bexc.BotoCoreError):
        return str(exc).splitlines()[0]
    return f"{exc.__class__.__name__}: {exc}".splitlines()[0]


def _describe_client_error(exc: bexc.ClientError, *, bucket: str | None, queue: str | None) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code") or "?"
    op = getattr(exc, "operation_name", None) or "request"
    if code in _QUEUE_MISSING:
        return (f"queue {queue} does not exist (or is in another region/account)" if queue
                else f"a queue does not exist ({op}; or it is in another region/account)")
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and op == "HeadBucket"):
        name = bucket or error.get("BucketName")
        return f"bucket {name} does not exist" if name else f"a bucket does not exist ({op})"
    if code in _DENIED:
        on = _denied_on(error.get("Message") or "", op, bucket=bucket, queue=queue)
        return f"access denied for {op}" + (f" on {on}" if on else "") + " (check the IAM policy)"
    if code in _BAD_CREDENTIALS:
        return f"AWS rejected the credentials ({code})"
    msg = error.get("Message") or ""
    return f"{op} failed: {code} {msg}".strip()


def _denied_on(msg: str, op: str, *, bucket: str | None, queue: str | None) -> str | None:
    """What access was denied on: the resource AWS names in its message, else the bucket or queue."""
    found = _RESOURCE_RE.search(msg)
    if found:
        return found.group(1)
    # Every SQS operation's name has "Queue" or "Message" in it (GetQueueUrl, ReceiveMessage…); no S3 one has.
    is_sqs = "Queue" in op or "Message" in op
    if queue and (is_sqs or not bucket):
        return f"queue {queue}"
    return f"bucket {bucket}" if bucket else None
