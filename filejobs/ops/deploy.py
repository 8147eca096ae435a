"""``jobctl deploy``: create or update the stack of the shipped template, put the worker artifact where
user data fetches it, and say how to use what was built.

A new stack: the plan (parameters, the resources the template creates with them) is shown, then
CreateStack. An existing one: an UPDATE change set (what CloudFormation will change, and the
parameters that differ) is shown, then executed; a change set that changes nothing is deleted and
nothing else happens. Either way the events are shown live until the operation ends, and a rollback
names the first resource that failed and why. The artifact (a byte-identical wheelhouse for one
version, ``filejobs.ops.artifact``) is uploaded only when the bucket does not already hold those
bytes, and before an update is executed, so no new instance boots without it.
"""

from __future__ import annotations

import json
import shlex
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import botocore.exceptions as bexc

from .. import aws, transfer
from . import cfn
from .artifact import Artifact
from .cfn import OpsError, Services
from .template import Resolver

#: The parameter jobctl sets itself: the key of the artifact it uploads.
CODE_KEY = "CodeKey"


@dataclass(frozen=True)
class DeployRequest:
    stack: str
    parameters: dict  # given by the user, by the template's names; the rest keep their values
    tags: tuple = (("Application", "filejobs"),)


@dataclass
class DeployResult:
    stack: dict
    action: str  # created, updated or unchanged
    artifact_uploaded: bool


def deploy(svc: Services, request: DeployRequest, *, template: dict, build_artifact: Callable[[], Artifact],
           confirm: Callable[[str], bool], say: Callable[[str], None]) -> DeployResult:
    if not cfn.STACK_NAME_RE.match(request.stack):
        raise OpsError(f"invalid stack name {request.stack!r}: a letter, then letters, digits and '-' (at most 128)")
    body = cfn.template_body(template)
    stack = cfn.describe_stack(svc.cloudformation, request.stack)
    if stack is not None:
        check_updatable(stack)
    artifact = build_artifact()
    given = {**request.parameters, CODE_KEY: artifact.key}
    if stack is None:
        return _create(svc, request, template, body, given, artifact, confirm, say)
    return _update(svc, stack, template, body, given, artifact, confirm, say)


def check_updatable(stack: dict) -> None:
    name, status = stack["StackName"], stack["StackStatus"]
    if status in cfn.UPDATABLE:
        return
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"):
        raise OpsError(f"stack {name} is {status} (its creation failed or a deletion did not finish) and cannot "
                       f"be updated: remove it with 'jobctl destroy {name}', then deploy again", "state")
    if status == "UPDATE_ROLLBACK_FAILED":
        raise OpsError(f"stack {name} is UPDATE_ROLLBACK_FAILED and cannot be updated: continue the rollback "
                       "(aws cloudformation continue-update-rollback) or destroy it", "state")
    if status == "REVIEW_IN_PROGRESS":
        raise OpsError(f"stack {name} is REVIEW_IN_PROGRESS (a change set was never executed): execute or "
                       f"delete that change set, or 'jobctl destroy {name}'", "state")
    raise OpsError(f"stack {name} is {status}: wait until it is done, then run this again", "state")


# --------------------------------------------------------------------------- create


def default_network(ec2, region: str, given: dict) -> dict:
    """VpcId and Subnets: as given, the VPC of the given subnets, or the default VPC and its
    default subnets (one per Availability Zone, public IPv4 on launch: the workers reach AWS)."""
    if given.get("Subnets") and given.get("VpcId"):
        return {}
    if given.get("VpcId"):
        raise OpsError("--vpc-id needs --subnets (subnets of that VPC in several Availability Zones)")
    if given.get("Subnets"):
        first = given["Subnets"].split(",")[0]
        return {"VpcId": ec2.describe_subnets(SubnetIds=[first])["Subnets"][0]["VpcId"]}
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise OpsError(f"{region} has no default VPC: pass --vpc-id and --subnets")
    vpc = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                            {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    if not subnets:
        raise OpsError(f"the default VPC {vpc} has no default subnets: pass --subnets")
    ids = [s["SubnetId"] for s in sorted(subnets, key=lambda s: s.get("AvailabilityZone", ""))]
    return {"VpcId": vpc, "Subnets": ",".join(ids)}


def planned_resources(template: dict, values: dict) -> list[str]:
    """The logical ids the template creates with these parameter values (conditions applied)."""
    r = Resolver(template, values)
    return [name for name, spec in (template.get("Resources") or {}).items()
            if "Condition" not in spec or r.condition(spec["Condition"])]


def _create(svc, request, template, body, given, artifact, confirm, say) -> DeployResult:
    given = {**given, **default_network(svc.ec2, svc.region, given)}
    say(f"stack {request.stack} does not exist in {svc.region}; it will be created with:")
    for key, value in given.items():
        say(f"  {key} = {value}")
    names = planned_resources(template, given)
    for line in textwrap.wrap(f"and these {len(names)} resources: {', '.join(names)}", 96,
                              initial_indent="  ", subsequent_indent="    "):
        say(line)
    say("  (the other parameters at the template's defaults, see --help; the group starts at 0 instances)")
    if not confirm(f"create stack {request.stack}?"):
        raise OpsError("not confirmed: nothing was created")
    # Every parameter is passed, the defaults too, so the stack records each value it was created with.
    full = {k: str(v["Default"]) for k, v in (template.get("Parameters") or {}).items() if "Default" in v}
    full.update(given)
    stack_id = svc.cloudformation.create_stack(
        StackName=request.stack, TemplateBody=body, Capabilities=["CAPABILITY_IAM"], OnFailure="ROLLBACK",
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in full.items()],
        Tags=[{"Key": k, "Value": v} for k, v in request.tags])["StackId"]
    watch = cfn.EventWatch(svc.cloudformation, stack_id)
    final = cfn.wait_for_stack(svc, stack_id, watch, say)
    if final["StackStatus"] != "CREATE_COMPLETE":
        raise OpsError(f"stack {request.stack} was not created ({final['StackStatus']}): "
                       f"{cfn.first_failure(watch.events, final)}; remove what is left with "
                       f"'jobctl destroy {request.stack}', then deploy again", "failed")
    uploaded = ensure_artifact(svc.s3, cfn.outputs(final)["BucketName"], artifact, say)
    return DeployResult(final, "created", uploaded)


# --------------------------------------------------------------------------- update


def parameter_changes(old: dict, given: dict, template: dict) -> list[str]:
    defaults = {k: str(v.get("Default", "")) for k, v in (template.get("Parameters") or {}).items()}
    out = [f"  parameter {k}: {old[k]!r} -> {v!r}" for k, v in given.items() if k in old and old[k] != v]
    out += [f"  parameter {k}: (new) {v!r}" for k, v in given.items() if k not in old]
    out += [f"  parameter {k}: (new, default) {defaults[k]!r}" for k in defaults if k not in old and k not in given]
    return out


def previous_values(stack: dict, template: dict, given: dict) -> list[dict]:
    """The parameters not given, as the stack has them. Sent as values rather than UsePreviousValue
    (which moto cannot execute for a List parameter), except a NoEcho value that DescribeStacks masks.
    For an SSM parameter type DescribeStacks gives the parameter's name in ParameterValue and its
    value in ResolvedValue; an entry without ResolvedValue (moto) is left to the template's default."""
    spec = template.get("Parameters") or {}
    out = []
    for p in stack.get("Parameters") or []:
        key, value = p["ParameterKey"], p.get("ParameterValue", "")
        if key in given or key not in spec:
            continue
        if value == "****":
            out.append({"ParameterKey": key, "UsePreviousValue": True})
        elif not str(spec[key].get("Type", "")).startswith("AWS::SSM::") or "ResolvedValue" in p:
            out.append({"ParameterKey": key, "ParameterValue": value})
    return out


def _update(svc, stack, template, body, given, artifact, confirm, say) -> DeployResult:
    name, stack_id, old = stack["StackName"], stack["StackId"], cfn.parameters(stack)
    if "Subnets" in given and "VpcId" not in given:
        given = {**given, **default_network(svc.ec2, svc.region, given)}
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]
    params += previous_values(stack, template, given)
    changes = parameter_changes(old, given, template)
    same_template = cfn.deployed_template(svc.cloudformation, stack_id) == json.loads(body)
    cs_name = "jobctl-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    say(f"computing the changes to stack {name} ...")
    cs = cfn.create_change_set(svc, name, cs_name, body, params)
    bucket = cfn.outputs(stack)["BucketName"]
    if cs is None or (not cs["Changes"] and not changes and same_template):
        if cs is not None:
            svc.cloudformation.delete_change_set(ChangeSetName=cs["ChangeSetId"])
        say(f"stack {name} is up to date: no change")
        return DeployResult(stack, "unchanged", ensure_artifact(svc.s3, bucket, artifact, say))
    say(f"changes to stack {name} (change set {cs_name}):")
    for line in changes + cfn.change_lines(cs) + ([] if same_template else ["  template: the shipped one, updated"]):
        say(line)
    if not confirm(f"apply these changes to {name}?"):
        svc.cloudformation.delete_change_set(ChangeSetName=cs["ChangeSetId"])
        raise OpsError("not confirmed: nothing was changed (the change set was deleted)")
    uploaded = ensure_artifact(svc.s3, bucket, artifact, say)
    watch = cfn.EventWatch(svc.cloudformation, stack_id)
    watch.prime()
    svc.cloudformation.execute_change_set(ChangeSetName=cs["ChangeSetId"])
    final = cfn.wait_for_stack(svc, stack_id, watch, say)
    if final["StackStatus"] != "UPDATE_COMPLETE":
        raise OpsError(f"the update of stack {name} failed and was rolled back ({final['StackStatus']}): "
                       f"{cfn.first_failure(watch.events, final)}", "failed")
    return DeployResult(final, "updated", uploaded)


# --------------------------------------------------------------------------- the artifact


def ensure_artifact(s3, bucket: str, artifact: Artifact, say: Callable[[str], None]) -> bool:
    """Upload the wheelhouse to ``bucket`` unless those very bytes are there already (builds of one
    version are byte-identical, and the upload records their SHA-256). True when uploaded."""
    try:
        head = s3.head_object(Bucket=bucket, Key=artifact.key)
        if (head.get("Metadata") or {}).get("sha256") == artifact.sha256:
            say(f"worker artifact s3://{bucket}/{artifact.key} is up to date")
            return False
    except bexc.ClientError as exc:
        if not aws.is_not_found(exc):
            raise
    say(f"uploading the worker artifact to s3://{bucket}/{artifact.key}")
    transfer.put_file(s3, artifact.path, bucket, artifact.key, metadata={"sha256": artifact.sha256})
    return True


# --------------------------------------------------------------------------- how to use it


def usage(stack: dict, region: str) -> dict:
    """The commands and settings to use the deployed stack (what ``jobctl deploy`` prints)."""
    out, p = cfn.outputs(stack), cfn.parameters(stack)
    bucket, queue = out.get("BucketName", "BUCKET"), out.get("QueueUrl", "QUEUE_URL")
    inp, outp, ext = p.get("InputPrefix", "input/"), p.get("OutputPrefix", "output/"), p.get("OutputExtension", ".out")
    worker = ["getjobs", "--concurrency", p.get("SlotsPerInstance", "2"), "--bucket", bucket, "--input-prefix", inp,
              "--output-prefix", outp]
    if p.get("JobTimeout", "0") != "0":
        worker += ["--job-timeout", p["JobTimeout"]]
    worker += ["--grace", p.get("GraceSeconds", "120"), "WORK_DIR", ext, queue, region]
    worker += p.get("Command", "cp").split()
    return {
        "stack": stack.get("StackName"), "status": stack.get("StackStatus"), "region": region,
        "bucket": bucket, "queue_url": queue, "dead_letter_queue_url": out.get("DeadLetterQueueUrl"),
        "group": out.get("AutoScalingGroupName"), "log_group": out.get("LogGroupName"),
        "sendjobs": shlex.join(["sendjobs", "DIR", bucket, inp, outp, queue, region]),
        "getjobs": shlex.join(worker),
        "status_command": shlex.join(["jobctl", "status", bucket, "--ext", ext, "--region", region]),
        "dashboard": out.get("DashboardUrl"),
        "destroy": shlex.join(["jobctl", "destroy", str(stack.get("StackName")), "--region", region]),
    }


def usage_lines(info: dict) -> list[str]:
    return [
        f"stack {info['stack']} is {info['status']} in {info['region']} (0 instances until jobs arrive)",
        "send every file of a directory as a job (replace DIR):",
        f"  {info['sendjobs']}",
        "each worker instance runs the equivalent of:",
        f"  {info['getjobs']}",
        "follow a batch:",
        f"  {info['status_command']} --wait",
        "dashboard:",
        f"  {info['dashboard']}",
        "tear it all down:",
        f"  {info['destroy']}",
    ]
