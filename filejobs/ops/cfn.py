"""CloudFormation for the operator commands: a stack's state, resources and outputs, its events as a
live view, change sets, and every failure a person must act on as one line with its own exit code.

The AWS clients, the clock and the sleeper are injected (``Services``), so a wait can be tested
without waiting. No click: progress goes to the ``say`` callable the caller passes.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Callable

import botocore.exceptions as bexc

from .. import aws

#: ``OpsError.kind`` → exit status (usage errors are click's 2, Ctrl-C 130).
EXIT_CODES = {"error": 1, "credentials": 3, "denied": 4, "failed": 5, "state": 6, "drain-timeout": 7}

#: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html
TEMPLATE_BODY_LIMIT = 51_200
STACK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
#: States from which a stack can be updated (anything else is in progress, failed or gone).
UPDATABLE = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                       "IMPORT_ROLLBACK_COMPLETE"})
#: CloudFormation's two ways of saying "nothing to do": UpdateStack/CreateChangeSet validation, and a
#: change set that FAILED for that reason.
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
_BAD_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId", "ExpiredToken",
                    "ExpiredTokenException", "SignatureDoesNotMatch", "InvalidToken"}
_NOT_AUTHORIZED_RE = re.compile(r"not authorized to perform:? ([A-Za-z0-9-]+:[A-Za-z0-9*]+)")
#: IAM actions of the calls these commands make whose name is not the operation's.
_S3_ACTIONS = {"HeadObject": "GetObject", "HeadBucket": "ListBucket", "ListObjectVersions": "ListBucketVersions",
               "ListMultipartUploads": "ListBucketMultipartUploads", "DeleteObjects": "DeleteObject",
               "ListObjectsV2": "ListBucket"}
_SERVICES = {"s3": ("HeadObject", "HeadBucket", "PutObject", "ListObjectVersions", "ListObjectsV2", "DeleteObjects",
                    "ListMultipartUploads", "AbortMultipartUpload", "DeleteBucket"),
             "sqs": ("GetQueueAttributes", "PurgeQueue"),
             "autoscaling": ("DescribeAutoScalingGroups", "UpdateAutoScalingGroup",
                             "TerminateInstanceInAutoScalingGroup"),
             "cloudwatch": ("DisableAlarmActions",),
             "ec2": ("DescribeVpcs", "DescribeSubnets")}


class OpsError(Exception):
    """A failure the user must act on (one line); ``kind`` picks the exit status."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]


@dataclass
class Services:
    """The clients the operator commands use, and the time they run on."""

    cloudformation: object
    s3: object
    sqs: object
    autoscaling: object
    cloudwatch: object
    ec2: object
    region: str
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = 5.0  # CloudFormation's own waiters poll every 5 s (DescribeStacks is throttled)


def iam_action(exc: bexc.ClientError) -> str:
    """The IAM action a denied call needed: from AWS's message when it names it ("... is not
    authorized to perform: cloudformation:CreateStack on resource ..."), else from the operation."""
    message = exc.response.get("Error", {}).get("Message") or ""
    m = _NOT_AUTHORIZED_RE.search(message)
    if m:
        return m.group(1)
    op = getattr(exc, "operation_name", "") or "?"
    service = next((s for s, ops in _SERVICES.items() if op in ops), "cloudformation")
    return f"{service}:{_S3_ACTIONS.get(op, op) if service == 's3' else op}"


def explain(exc: BaseException) -> OpsError:
    """Any exception of an AWS call as the one line (and exit status) a person acts on."""
    if isinstance(exc, OpsError):
        return exc
    if isinstance(exc, (bexc.NoCredentialsError, bexc.PartialCredentialsError)) or \
            aws.error_code(exc) in _BAD_CREDENTIALS:
        return OpsError(aws.describe(exc), "credentials")
    # EC2 says UnauthorizedOperation where the other services say AccessDenied.
    if isinstance(exc, bexc.ClientError) and (aws.is_denied(exc) or aws.error_code(exc) == "UnauthorizedOperation"):
        return OpsError(f"missing permission {iam_action(exc)} (AWS denied {exc.operation_name}; "
                        "grant it to these credentials, see setup.md)", "denied")
    return OpsError(aws.describe(exc))


# --------------------------------------------------------------------------- stacks


def describe_stack(cfn, name_or_id: str) -> dict | None:
    """The stack, or None when there is none by that name (a deleted stack has no name any more)."""
    try:
        return cfn.describe_stacks(StackName=name_or_id)["Stacks"][0]
    except bexc.ClientError as exc:
        message = exc.response.get("Error", {}).get("Message") or ""
        if aws.error_code(exc) == "ValidationError" and "does not exist" in message:
            return None
        raise


def outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def parameters(stack: dict) -> dict[str, str]:
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []}


def resources(cfn, stack_id: str) -> dict[str, dict]:
    """The stack's resources by logical id (moto lists the types it skips with no id: left out)."""
    out = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_id):
        for r in page["StackResourceSummaries"]:
            if r.get("LogicalResourceId"):
                out[r["LogicalResourceId"]] = r
    return out


def template_body(template: dict) -> str:
    """The template as compact JSON: the same document as the shipped YAML without its comments,
    under CloudFormation's 51,200-byte limit for a TemplateBody (the YAML file is above it)."""
    body = json.dumps(template, separators=(",", ":"), sort_keys=False)
    if len(body.encode()) > TEMPLATE_BODY_LIMIT:
        raise OpsError(f"the template is {len(body.encode())} bytes as JSON, over CloudFormation's "
                       f"{TEMPLATE_BODY_LIMIT}-byte limit for a template sent inline")
    return body


def deployed_template(cfn, stack_id: str):
    """The stack's template as a document (botocore decodes a JSON body; a YAML one stays text)."""
    body = cfn.get_template(StackName=stack_id, TemplateStage="Original")["TemplateBody"]
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            from .template import load_template

            return load_template(body if "\n" in body else body + "\n")
    return json.loads(json.dumps(body))


# --------------------------------------------------------------------------- events, a live view


def event_line(event: dict) -> str:
    when = event["Timestamp"].strftime("%H:%M:%S") if hasattr(event.get("Timestamp"), "strftime") else ""
    reason = " ".join(str(event.get("ResourceStatusReason") or "").split())
    return f"{when}  {event.get('ResourceStatus', ''):<28} {event.get('LogicalResourceId', ''):<24} {reason}".rstrip()


class EventWatch:
    """New events of one stack, oldest first, as they come (the API lists newest first)."""

    def __init__(self, cfn, stack_id: str):
        self.cfn, self.stack_id = cfn, stack_id
        self.seen: set[str] = set()
        self.events: list[dict] = []  # everything seen since ``prime``, oldest first

    def prime(self) -> None:
        """Mark what happened before the operation as seen (the newest page is enough)."""
        page = self.cfn.describe_stack_events(StackName=self.stack_id)
        self.seen.update(e["EventId"] for e in page["StackEvents"])

    def poll(self) -> list[dict]:
        new, token = [], None
        while True:
            kwargs = {"StackName": self.stack_id, **({"NextToken": token} if token else {})}
            page = self.cfn.describe_stack_events(**kwargs)
            fresh = [e for e in page["StackEvents"] if e["EventId"] not in self.seen]
            new.extend(fresh)
            token = page.get("NextToken")
            if not token or len(fresh) < len(page["StackEvents"]):
                break
        new.reverse()
        self.seen.update(e["EventId"] for e in new)
        self.events.extend(new)
        return new


def first_failure(events: list[dict], stack: dict) -> str:
    """The first resource that failed and why (the cancellations that follow it are noise)."""
    for e in events:
        reason = str(e.get("ResourceStatusReason") or "")
        if e.get("ResourceStatus", "").endswith("_FAILED") and "cancelled" not in reason.lower() \
                and e.get("ResourceType") != "AWS::CloudFormation::Stack":
            return f"{e['LogicalResourceId']} ({e.get('ResourceType', '?')}): {' '.join(reason.split())}"
    return " ".join(str(stack.get("StackStatusReason") or "no reason given").split())


def wait_for_stack(svc: Services, stack_id: str, watch: EventWatch, say: Callable[[str], None]) -> dict:
    """Print the stack's events until its operation ends; the final description (by id, so a
    deleted stack is still found)."""
    while True:
        for event in watch.poll():
            say(event_line(event))
        stack = describe_stack(svc.cloudformation, stack_id)
        if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack or {"StackStatus": "DELETE_COMPLETE", "StackId": stack_id}
        svc.sleep(svc.poll_s)


# --------------------------------------------------------------------------- change sets


def create_change_set(svc: Services, stack: str, name: str, body: str, params: list[dict]) -> dict | None:
    """An UPDATE change set of the stack of that name, described once CloudFormation has computed it;
    None when it says the request changes nothing (the change set, if any, is deleted)."""
    cfn = svc.cloudformation
    try:
        cs_id = cfn.create_change_set(StackName=stack, ChangeSetName=name, ChangeSetType="UPDATE",
                                      TemplateBody=body, Parameters=params, Capabilities=["CAPABILITY_IAM"])["Id"]
    except bexc.ClientError as exc:
        if aws.error_code(exc) == "ValidationError" and any(s in str(exc) for s in NO_CHANGES):
            return None
        raise
    while True:
        cs = describe_change_set(cfn, cs_id)
        if cs["Status"] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
            break
        svc.sleep(svc.poll_s)
    if cs["Status"] == "FAILED":
        cfn.delete_change_set(ChangeSetName=cs_id)
        reason = str(cs.get("StatusReason") or "")
        if any(s in reason for s in NO_CHANGES):
            return None
        raise OpsError(f"CloudFormation refused the change set: {' '.join(reason.split())}")
    return cs


def describe_change_set(cfn, cs_id: str) -> dict:
    """The change set with all its changes (the API pages them)."""
    cs = cfn.describe_change_set(ChangeSetName=cs_id)
    changes = list(cs.get("Changes") or [])
    while cs.get("NextToken"):
        cs = cfn.describe_change_set(ChangeSetName=cs_id, NextToken=cs["NextToken"])
        changes += cs.get("Changes") or []
    return {**cs, "Changes": changes}


def change_lines(cs: dict) -> list[str]:
    out = []
    for change in cs.get("Changes") or []:
        rc = change.get("ResourceChange") or {}
        detail = ", ".join(sorted(set(rc.get("Scope") or []))) or "-"
        replace = rc.get("Replacement")
        tail = f"; replacement: {replace}" if replace and replace != "False" else ""
        out.append(f"  {rc.get('Action', '?'):<7} {rc.get('LogicalResourceId', '?'):<24} "
                   f"{rc.get('ResourceType', '')} ({detail}{tail})")
    return out
