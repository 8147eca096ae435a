"""The CloudFormation helpers of the operator commands, without AWS: errors as one line and an exit
status, the first failure of a rollback, the events shown once each and oldest first, the template
as CloudFormation receives it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import botocore.exceptions as bexc
import pytest

from filejobs.ops import cfn
from filejobs.ops.template import load_template


def client_error(code: str, message: str, operation: str) -> bexc.ClientError:
    return bexc.ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize("code,message,operation,action", [
    ("AccessDenied", "User: arn:aws:iam::1:user/x is not authorized to perform: cloudformation:CreateChangeSet on "
                     "resource: arn:aws:cloudformation:eu-west-1:1:stack/s/*", "CreateChangeSet",
     "cloudformation:CreateChangeSet"),
    ("AccessDenied", "Access Denied", "PutObject", "s3:PutObject"),
    ("AccessDenied", "Access Denied", "ListObjectVersions", "s3:ListBucketVersions"),
    ("AccessDenied", "Access Denied", "DeleteObjects", "s3:DeleteObject"),
    ("AccessDenied", "", "PurgeQueue", "sqs:PurgeQueue"),
    ("AccessDenied", "", "TerminateInstanceInAutoScalingGroup", "autoscaling:TerminateInstanceInAutoScalingGroup"),
    ("UnauthorizedOperation", "You are not authorized to perform this operation.", "DescribeVpcs",
     "ec2:DescribeVpcs"),
])
def test_a_denied_call_names_the_iam_action_it_needed(code, message, operation, action):
    assert cfn.iam_action(client_error(code, message, operation)) == action


def test_every_failure_has_its_exit_status():
    assert cfn.explain(bexc.NoCredentialsError()).exit_code == 3
    assert cfn.explain(client_error("ExpiredToken", "expired", "DescribeStacks")).exit_code == 3
    denied = cfn.explain(client_error("AccessDenied", "Access Denied", "DeleteBucket"))
    assert denied.exit_code == 4 and str(denied).startswith("missing permission s3:DeleteBucket")
    assert cfn.explain(client_error("UnauthorizedOperation", "You are not authorized", "DescribeVpcs")).exit_code == 4
    assert cfn.explain(client_error("Throttling", "Rate exceeded", "DescribeStacks")).exit_code == 1
    assert cfn.OpsError("x", "drain-timeout").exit_code == 7
    assert len(set(cfn.EXIT_CODES.values())) == len(cfn.EXIT_CODES)  # distinct


def event(n: int, logical: str, status: str, reason: str = "", kind: str = "AWS::SQS::Queue") -> dict:
    return {"EventId": f"e{n}", "LogicalResourceId": logical, "ResourceType": kind, "ResourceStatus": status,
            "ResourceStatusReason": reason, "Timestamp": datetime(2026, 12, 4, 9, 0, n, tzinfo=timezone.utc)}


def test_the_first_failure_is_the_cause_not_the_cancellations_after_it():
    events = [event(1, "s", "CREATE_IN_PROGRESS", kind="AWS::CloudFormation::Stack"),
              event(2, "Queue", "CREATE_FAILED", "Resource creation cancelled"),
              event(3, "WorkerRole", "CREATE_FAILED", "  Role name too long\n", kind="AWS::IAM::Role"),
              event(4, "s", "ROLLBACK_IN_PROGRESS", "The following resource(s) failed", kind="AWS::CloudFormation::Stack")]
    assert cfn.first_failure(events, {}) == "WorkerRole (AWS::IAM::Role): Role name too long"
    assert cfn.first_failure(events[:1], {"StackStatusReason": "Template error"}) == "Template error"


class PagedEvents:
    """describe_stack_events as AWS pages it: newest first, ``size`` per page, NextToken."""

    def __init__(self, size: int = 2):
        self.events, self.size, self.requests = [], size, 0

    def add(self, *events):
        self.events = list(reversed(events)) + self.events

    def describe_stack_events(self, StackName, NextToken=None):
        self.requests += 1
        start = int(NextToken or 0)
        page = self.events[start:start + self.size]
        more = start + self.size < len(self.events)
        return {"StackEvents": page, **({"NextToken": str(start + self.size)} if more else {})}


def test_events_are_shown_once_each_oldest_first_across_pages():
    client = PagedEvents(size=2)
    client.add(event(1, "old", "UPDATE_COMPLETE"))
    watch = cfn.EventWatch(client, "stack-id")
    watch.prime()
    client.add(event(2, "a", "UPDATE_IN_PROGRESS"), event(3, "b", "UPDATE_IN_PROGRESS"), event(4, "a", "UPDATE_COMPLETE"))
    assert [e["EventId"] for e in watch.poll()] == ["e2", "e3", "e4"]
    assert watch.poll() == []
    client.add(event(5, "b", "UPDATE_COMPLETE"))
    assert [e["EventId"] for e in watch.poll()] == ["e5"]
    assert [e["EventId"] for e in watch.events] == ["e2", "e3", "e4", "e5"]
    assert cfn.event_line(event(5, "b", "UPDATE_COMPLETE", "done\nnow")).startswith("09:00:05  UPDATE_COMPLETE")


def test_the_template_goes_as_compact_json_under_the_inline_limit():
    body = cfn.template_body(load_template())
    assert json.loads(body) == load_template() and len(body.encode()) <= cfn.TEMPLATE_BODY_LIMIT
    huge = load_template()
    huge["Description"] = "x" * cfn.TEMPLATE_BODY_LIMIT
    with pytest.raises(cfn.OpsError, match="over CloudFormation's 51200-byte limit"):
        cfn.template_body(huge)


def test_a_change_set_is_listed_one_resource_a_line():
    cs = {"Changes": [{"ResourceChange": {"Action": "Modify", "LogicalResourceId": "LaunchTemplate",
                                          "ResourceType": "AWS::EC2::LaunchTemplate", "Scope": ["Properties"],
                                          "Replacement": "False"}},
                      {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "Queue",
                                          "ResourceType": "AWS::SQS::Queue", "Scope": ["Properties"],
                                          "Replacement": "True"}}]}
    lines = cfn.change_lines(cs)
    assert lines[0].split() == ["Modify", "LaunchTemplate", "AWS::EC2::LaunchTemplate", "(Properties)"]
    assert lines[1].endswith("(Properties; replacement: True)")


@pytest.mark.parametrize("name,ok", [("filejobs", True), ("a", True), ("x" * 128, True), ("x" * 129, False),
                                     ("1abc", False), ("my_stack", False), ("ab-c9", True)])
def test_stack_names_follow_cloudformation(name, ok):
    assert bool(cfn.STACK_NAME_RE.match(name)) is ok
