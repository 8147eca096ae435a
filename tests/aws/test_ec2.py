"""EC2 specifics: the instance id through IMDSv2 only, and scale-in protection while busy."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from filejobs.ec2 import InstanceProtector, instance_id


@pytest.fixture
def imds():
    """A metadata service that, like EC2 with IMDSv2 required, answers only with a session token."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_PUT(self):
            seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"token-123")

        def do_GET(self):
            seen.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
            if self.headers.get("X-aws-ec2-metadata-token") != "token-123":
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"i-0123456789abcdef0")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_the_instance_id_comes_from_imdsv2_with_a_session_token(imds):
    url, seen = imds
    assert instance_id(endpoint=url) == "i-0123456789abcdef0"
    assert seen[0][:2] == ("PUT", "/latest/api/token") and seen[0][2]
    assert seen[1] == ("GET", "/latest/meta-data/instance-id", "token-123")


def asg_with_instance(mocked):
    ec2 = mocked.session.client("ec2")
    autoscaling = mocked.session.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="workers-lt", LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                            "InstanceType": "t3.micro"})
    autoscaling.create_auto_scaling_group(AutoScalingGroupName="workers", MinSize=0, MaxSize=2, DesiredCapacity=2,
                                          LaunchTemplate={"LaunchTemplateName": "workers-lt"}, VPCZoneIdentifier=subnet)
    ids = [i["InstanceId"] for i in autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]["Instances"]]
    return autoscaling, ids


def protected(autoscaling, instance):
    return autoscaling.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"][0][
        "ProtectedFromScaleIn"]


def test_a_busy_worker_is_protected_from_scale_in_and_survives_it(mocked):
    autoscaling, (busy, idle) = asg_with_instance(mocked)
    protector = InstanceProtector(autoscaling, busy, idle_grace_s=0.2)
    assert protector.group == "workers"  # found from the instance id
    protector.set_busy(True)
    deadline = time.monotonic() + 5
    while not protected(autoscaling, busy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert protected(autoscaling, busy) and not protected(autoscaling, idle)
    autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=0)
    left = [i["InstanceId"] for i in autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=["workers"])["AutoScalingGroups"][0]["Instances"]]
    assert left == [busy]


def test_protection_is_cleared_after_a_short_idle_spell(mocked):
    autoscaling, (instance, _) = asg_with_instance(mocked)
    protector = InstanceProtector(autoscaling, instance, idle_grace_s=0.3)
    protector.set_busy(True)
    time.sleep(1.2)
    protector.set_busy(False)
    deadline = time.monotonic() + 5
    while protected(autoscaling, instance) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not protected(autoscaling, instance)
