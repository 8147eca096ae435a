"""An Auto Scaling group with one instance in moto, for the worker's EC2 tests."""

from __future__ import annotations


def instance_in_a_group(session, group: str) -> str:
    """Create a VPC, subnet, launch template and a group of one in moto; return the instance id."""
    ec2, autoscaling = session.client("ec2"), session.client("autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    template = f"{group}-lt"
    ec2.create_launch_template(LaunchTemplateName=template, LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                                "InstanceType": "t3.micro"})
    autoscaling.create_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=1, DesiredCapacity=1,
                                          LaunchTemplate={"LaunchTemplateName": template}, VPCZoneIdentifier=subnet)
    return autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0][
        "Instances"][0]["InstanceId"]
