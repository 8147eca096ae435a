"""``jobctl destroy``: tear a stack down in an order that cuts no running job and leaves nothing
behind, every step idempotent, so a rerun after an interruption finishes the job.

1. Say what will be deleted, and ask.
2. Stop new work: the stack's alarms lose their actions (no scale-out, no notifications), the group's
   minimum, maximum and desired capacity become 0.
3. Drain: each instance still in service is terminated through its group.
   ``TerminateInstanceInAutoScalingGroup`` is not stopped by scale-in protection, but it does go
   through the termination lifecycle hook: the worker stops receiving, lets running jobs finish
   within GraceSeconds, releases the others (visibility 0) and completes the lifecycle action.
   https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html
   Wait until the group has no instance and no job is in flight, at most ``timeout_s``; nothing is
   deleted before that unless ``force``.
4. Purge the queues.
5. Empty the bucket (every version, delete marker and unfinished multipart upload) and delete it:
   only a bucket this stack created, and not with ``keep_bucket``. The template retains the bucket
   when the stack is deleted (DeletionPolicy Retain), so it is done before the stack, while the
   stack's resources still name it.
6. Delete the stack and wait.

A stack already deleted (by an interrupted run, or a plain delete-stack) whose retained bucket is still
there: step 5 only, found through the deleted stack's resources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import botocore.exceptions as bexc

from .. import aws
from . import cfn
from .cfn import OpsError, Services

_IN_SERVICE = ("InService",)
DRAIN_POLL_S = 10.0


@dataclass(frozen=True)
class DestroyRequest:
    stack: str
    keep_bucket: bool = False
    force: bool = False
    timeout_s: float | None = None  # None: GraceSeconds + VisibilityTimeout + 120 s of the stack


@dataclass
class Teardown:
    """What one stack holds, read from its resources."""

    name: str
    stack_id: str
    status: str
    group: str | None = None
    queue: str | None = None  # the job queue's URL
    queues: list = field(default_factory=list)
    alarms: list = field(default_factory=list)
    bucket: str | None = None  # created by this stack
    foreign_bucket: str | None = None  # a bucket resource the stack did not create (imported)
    drain_limit_s: float = 360.0


def own_bucket_name(stack_id: str) -> str:
    """The name the template gives its bucket: ``filejobs-<the stack id's UUID>``, unique to this stack."""
    return "filejobs-" + stack_id.split("/")[2]


def survey(svc: Services, stack: dict) -> Teardown:
    stack_id = stack["StackId"]
    res = cfn.resources(svc.cloudformation, stack_id)
    # What a rollback already deleted is left out; a retained bucket is DELETE_SKIPPED and stays in.
    of = lambda kind: [r for r in res.values() if r.get("ResourceType") == kind  # noqa: E731
                       and r.get("PhysicalResourceId") and r.get("ResourceStatus") != "DELETE_COMPLETE"]
    params = cfn.parameters(stack)
    td = Teardown(name=stack["StackName"], stack_id=stack_id, status=stack["StackStatus"],
                  alarms=[r["PhysicalResourceId"] for r in of("AWS::CloudWatch::Alarm")],
                  queues=[r["PhysicalResourceId"] for r in of("AWS::SQS::Queue")],
                  drain_limit_s=float(params.get("GraceSeconds", 120)) + float(params.get("VisibilityTimeout", 120))
                  + 120)
    groups = of("AWS::AutoScaling::AutoScalingGroup")
    td.group = groups[0]["PhysicalResourceId"] if groups else None
    td.queue = (res.get("Queue") or {}).get("PhysicalResourceId") or cfn.outputs(stack).get("QueueUrl")
    for bucket in of("AWS::S3::Bucket"):
        name = bucket["PhysicalResourceId"]
        if name == own_bucket_name(stack_id):
            td.bucket = name
        else:
            td.foreign_bucket = name
    return td


# --------------------------------------------------------------------------- what is there


def group_instances(autoscaling, group: str | None) -> list[dict] | None:
    """The group's instances, or None when the group is gone."""
    if not group:
        return None
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return groups[0].get("Instances", []) if groups else None


def queue_counts(sqs, url: str | None) -> tuple[int, int] | None:
    """(visible, in flight) of a queue, or None when it is gone."""
    if not url:
        return None
    try:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    except bexc.ClientError as exc:
        if aws.is_queue_missing(exc):
            return None
        raise
    return int(a.get("ApproximateNumberOfMessages", 0)), int(a.get("ApproximateNumberOfMessagesNotVisible", 0))


def bucket_contents(s3, bucket: str) -> str | None:
    """"12 objects", "1000+ objects", or None when the bucket is gone (one request)."""
    try:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
    except bexc.ClientError as exc:
        if aws.error_code(exc) == "NoSuchBucket":
            return None
        raise
    n = len(page.get("Versions") or []) + len(page.get("DeleteMarkers") or [])
    more = "+" if page.get("IsTruncated") else ""
    return f"{n}{more} object{'' if n == 1 and not more else 's'} (versions included)"


def plan_lines(svc: Services, td: Teardown, request: DestroyRequest) -> list[str]:
    out = [f"stack {td.name} ({td.status}) in {svc.region} will be deleted, with:"]
    instances = group_instances(svc.autoscaling, td.group)
    if instances is not None:
        busy = sum(bool(i.get("ProtectedFromScaleIn")) for i in instances)
        out.append(f"  group {td.group}: {len(instances)} instances, {busy} busy: scaled to 0 and drained")
    for url in td.queues:
        counts = queue_counts(svc.sqs, url)
        if counts is not None:
            out.append(f"  queue {aws.queue_name(url)}: {counts[0]} waiting, {counts[1]} in flight: purged")
    if td.bucket:
        contents = bucket_contents(svc.s3, td.bucket)
        if contents is not None:
            verb = "kept (--keep-bucket)" if request.keep_bucket else "emptied and deleted"
            out.append(f"  bucket {td.bucket}: {contents}: {verb}")
    if td.foreign_bucket:
        out.append(f"  bucket {td.foreign_bucket}: not created by this stack: kept")
    out.append(f"  {len(td.alarms)} alarms (their actions are turned off first), the role, launch template, log "
               "group, dashboard and topic; the KMS key is scheduled for deletion (7 days)")
    return out


# --------------------------------------------------------------------------- the steps


def stop_new_work(svc: Services, td: Teardown, say: Callable[[str], None]) -> None:
    for i in range(0, len(td.alarms), 100):  # DisableAlarmActions takes at most 100 names
        svc.cloudwatch.disable_alarm_actions(AlarmNames=td.alarms[i:i + 100])
    if group_instances(svc.autoscaling, td.group) is not None:
        svc.autoscaling.update_auto_scaling_group(AutoScalingGroupName=td.group, MinSize=0, MaxSize=0,
                                                  DesiredCapacity=0)
        say(f"stopped new work: alarms' actions off, group {td.group} at 0")


def drain(svc: Services, td: Teardown, request: DestroyRequest, say: Callable[[str], None]) -> None:
    limit = td.drain_limit_s if request.timeout_s is None else request.timeout_s
    deadline, asked, last = svc.clock() + limit, set(), None
    while True:
        instances = group_instances(svc.autoscaling, td.group) or []
        for inst in instances:
            if inst["LifecycleState"] in _IN_SERVICE and inst["InstanceId"] not in asked:
                _terminate(svc.autoscaling, inst["InstanceId"])
                asked.add(inst["InstanceId"])
        in_flight = (queue_counts(svc.sqs, td.queue) or (0, 0))[1]
        state = f"{len(instances)} instances ({_states(instances)}), {in_flight} jobs in flight"
        if not instances and in_flight == 0:
            say("drained: no instance left, no job in flight")
            return
        if request.force:
            say(f"--force: not waiting for {state}")
            return
        if svc.clock() >= deadline:
            why = "" if instances else " (no worker of the group holds them: retries waiting, or a worker elsewhere)"
            raise OpsError(f"still draining after {limit:.0f} s: {state}{why}; nothing was deleted; run this again "
                           "to keep waiting, or add --force to delete anyway", "drain-timeout")
        if state != last:
            say(f"waiting for running jobs to finish or be released: {state}")
            last = state
        svc.sleep(DRAIN_POLL_S)


def _terminate(autoscaling, instance_id: str) -> None:
    try:
        autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance_id,
                                                             ShouldDecrementDesiredCapacity=False)
    except bexc.ClientError as exc:
        if aws.error_code(exc) != "ValidationError":  # already terminating or gone since it was listed
            raise


def _states(instances: list[dict]) -> str:
    counts: dict[str, int] = {}
    for inst in instances:
        counts[inst["LifecycleState"]] = counts.get(inst["LifecycleState"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"


def purge_queues(svc: Services, td: Teardown, say: Callable[[str], None]) -> None:
    for url in td.queues:
        try:
            svc.sqs.purge_queue(QueueUrl=url)
            say(f"purged {aws.queue_name(url)}")
        except bexc.ClientError as exc:
            # A purge in the last 60 s is still running (PurgeQueueInProgress): that one will do.
            if not (aws.is_queue_missing(exc) or aws.error_code(exc) in ("PurgeQueueInProgress",
                                                                        "AWS.SimpleQueueService.PurgeQueueInProgress")):
                raise


def empty_bucket(s3, bucket: str) -> int | None:
    """Delete every object version, delete marker and unfinished multipart upload; how many, or None
    when the bucket is gone. Page by page, so memory stays flat whatever the bucket holds."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or [])]
            for i in range(0, len(keys), 1000):
                response = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i:i + 1000], "Quiet": True})
                if response.get("Errors"):
                    e = response["Errors"][0]
                    raise OpsError(f"could not delete s3://{bucket}/{e.get('Key')}: {e.get('Code')} "
                                   f"{e.get('Message', '')}".rstrip())
                deleted += len(keys[i:i + 1000])
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads") or []:
                s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    except bexc.ClientError as exc:
        if aws.error_code(exc) == "NoSuchBucket":
            return None
        raise
    return deleted


def remove_bucket(s3, bucket: str, say: Callable[[str], None], *, attempts: int = 3) -> None:
    """Empty and delete ``bucket``; if something wrote to it meanwhile (BucketNotEmpty), again."""
    for attempt in range(attempts):
        deleted = empty_bucket(s3, bucket)
        if deleted is None:
            return
        try:
            s3.delete_bucket(Bucket=bucket)
            say(f"deleted bucket {bucket} and the {deleted} objects in it")
            return
        except bexc.ClientError as exc:
            if aws.error_code(exc) == "NoSuchBucket":
                return
            if aws.error_code(exc) != "BucketNotEmpty" or attempt == attempts - 1:
                raise


def delete_stack(svc: Services, td: Teardown, say: Callable[[str], None]) -> None:
    watch = cfn.EventWatch(svc.cloudformation, td.stack_id)
    watch.prime()
    if td.status != "DELETE_IN_PROGRESS":
        svc.cloudformation.delete_stack(StackName=td.stack_id)
    final = cfn.wait_for_stack(svc, td.stack_id, watch, say)
    if final["StackStatus"] != "DELETE_COMPLETE":
        raise OpsError(f"stack {td.name} could not be deleted ({final['StackStatus']}): "
                       f"{cfn.first_failure(watch.events, final)}; fix that and run this again", "failed")


# --------------------------------------------------------------------------- the whole teardown


def destroy(svc: Services, request: DestroyRequest, *, confirm: Callable[[str], bool],
            say: Callable[[str], None]) -> dict:
    stack = cfn.describe_stack(svc.cloudformation, request.stack)
    if stack is None:
        return _retained_bucket(svc, request, confirm, say)
    status = stack["StackStatus"]
    if status.endswith("_IN_PROGRESS") and status != "DELETE_IN_PROGRESS":
        raise OpsError(f"stack {request.stack} is {status}: wait until it is done, then run this again", "state")
    td = survey(svc, stack)
    if request.keep_bucket and td.bucket:
        check_bucket_is_retained(svc.cloudformation, td)
    for line in plan_lines(svc, td, request):
        say(line)
    if not confirm(f"delete stack {td.name} and all of the above?"):
        raise OpsError("not confirmed: nothing was changed")
    remove = td.bucket and not request.keep_bucket
    if status == "DELETE_IN_PROGRESS":
        # CloudFormation already removes the group (its instances drain through the hook): wait for
        # that, then the bucket it retains.
        delete_stack(svc, td, say)
        if remove:
            remove_bucket(svc.s3, td.bucket, say)
    else:
        stop_new_work(svc, td, say)
        drain(svc, td, request, say)
        purge_queues(svc, td, say)
        if remove:
            remove_bucket(svc.s3, td.bucket, say)
        delete_stack(svc, td, say)
    if td.bucket and request.keep_bucket:
        say(f"kept bucket {td.bucket} and its data (delete it later with 'aws s3 rb s3://{td.bucket} --force')")
    return {"stack": td.name, "stack_id": td.stack_id, "deleted": True, "bucket": td.bucket,
            "bucket_deleted": bool(remove), "foreign_bucket_kept": td.foreign_bucket}


def check_bucket_is_retained(cfn_client, td: Teardown) -> None:
    """--keep-bucket relies on the template's DeletionPolicy; a stack deployed from an older template
    would delete the bucket with the stack (or fail on a non-empty one)."""
    spec = (cfn.deployed_template(cfn_client, td.stack_id).get("Resources") or {}).get("Bucket") or {}
    if spec.get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate"):
        raise OpsError(f"stack {td.name} was deployed from a template that deletes its bucket with the stack: run "
                       f"'jobctl deploy {td.name}' first (the current template keeps it), then destroy --keep-bucket",
                       "state")


def last_deleted(cfn_client, name: str) -> dict | None:
    """The most recently deleted stack of that name (CloudFormation keeps them for 90 days)."""
    found = []
    for page in cfn_client.get_paginator("list_stacks").paginate(StackStatusFilter=["DELETE_COMPLETE"]):
        found += [s for s in page["StackSummaries"] if s["StackName"] == name]
    return max(found, key=lambda s: s.get("DeletionTime") or s["CreationTime"], default=None)


def _retained_bucket(svc: Services, request: DestroyRequest, confirm, say) -> dict:
    gone = last_deleted(svc.cloudformation, request.stack)
    bucket = None
    if gone and not request.keep_bucket:
        res = cfn.resources(svc.cloudformation, gone["StackId"])
        names = [r.get("PhysicalResourceId") for r in res.values() if r.get("ResourceType") == "AWS::S3::Bucket"]
        bucket = next((b for b in names if b == own_bucket_name(gone["StackId"])), None)
    contents = bucket_contents(svc.s3, bucket) if bucket else None
    if contents is None:
        say(f"stack {request.stack} does not exist in {svc.region}: nothing to destroy")
        return {"stack": request.stack, "deleted": False, "bucket": None, "bucket_deleted": False}
    say(f"stack {request.stack} is already deleted; its bucket {bucket} was kept ({contents}): "
        "it will be emptied and deleted")
    if not confirm(f"delete bucket {bucket} and everything in it?"):
        raise OpsError("not confirmed: nothing was changed")
    remove_bucket(svc.s3, bucket, say)
    return {"stack": request.stack, "stack_id": gone["StackId"], "deleted": True, "bucket": bucket,
            "bucket_deleted": True}
