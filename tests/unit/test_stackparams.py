"""The template's Parameters as options: names, defaults, groups and the checks CloudFormation would make."""

from __future__ import annotations

import pytest

from filejobs.ops.stackparams import kebab, param_specs
from filejobs.ops.template import load_template


@pytest.fixture(scope="module")
def specs():
    return {s.name: s for s in param_specs(load_template())}


@pytest.mark.parametrize("name,option", [("MaxSize", "max-size"), ("VpcId", "vpc-id"),
                                         ("OnDemandPercentageAboveBase", "on-demand-percentage-above-base"),
                                         ("S3EventNotifications", "s3-event-notifications"),
                                         ("LatestAmiIdX86", "latest-ami-id-x86")])
def test_option_names_are_the_parameters_in_kebab_case(name, option):
    assert kebab(name) == option


def test_every_parameter_is_an_option_with_its_default_and_group(specs):
    template = load_template()
    assert set(specs) == set(template["Parameters"])
    assert (specs["MaxSize"].default, specs["MaxSize"].group, specs["MaxSize"].option) == ("4", "Workers", "--max-size")
    assert specs["VpcId"].default is None and specs["Subnets"].is_list
    assert list(specs)[:2] == ["VpcId", "Subnets"]  # the ParameterGroups' order


@pytest.mark.parametrize("name,value,result", [
    ("MaxSize", "10", "10"), ("MaxSize", "10.0", "10"), ("GraceSeconds", "300", "300"),
    ("Command", "convert -resize 50%", "convert -resize 50%"), ("Subnets", "subnet-1, subnet-2", "subnet-1,subnet-2"),
    ("Packages", "", ""), ("LogRetentionDays", "14", "14"),
])
def test_values_cloudformation_accepts(specs, name, value, result):
    assert specs[name].check(value) == result


@pytest.mark.parametrize("name,value,why", [
    ("MaxSize", "0", "below the minimum 1"), ("MaxSize", "1001", "above the maximum 1000"),
    ("MaxSize", "ten", "is not a number"), ("GraceSeconds", "45", "is not one of"),
    ("Command", "a; rm -rf /", "no shell"), ("InputPrefix", "input", "does not match"),
    ("LogRetentionDays", "2", "is not one of"),
])
def test_values_cloudformation_would_refuse(specs, name, value, why):
    with pytest.raises(ValueError, match=why):
        specs[name].check(value)
