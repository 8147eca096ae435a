"""The CloudFormation template this package ships (``filejobs/infra/stack.yaml``), read offline.

``load_template`` parses it (CloudFormation's short tags included) and ``Resolver`` evaluates the
intrinsic functions the template uses, so the operator commands and the tests read the very rules
that get deployed. No boto3; PyYAML only when a template is actually loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

#: The template deployed by ``jobctl deploy`` and described in setup.md.
TEMPLATE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "infra", "stack.yaml")


class TemplateError(ValueError):
    """The template cannot be read (one line)."""


_FN_TAGS = ("Base64", "Cidr", "FindInMap", "GetAZs", "ImportValue", "Join", "Select", "Split", "Sub",
            "Transform", "If", "Not", "Equals", "And", "Or", "Length", "ToJsonString")


def _cfn_loader():
    """``yaml.SafeLoader`` that turns CloudFormation's short tags (``!Ref X``, ``!Sub ...``,
    ``!GetAtt A.B``...) into their long forms (``{"Ref": "X"}``, ``{"Fn::Sub": ...}``...).

    PyYAML is imported here, not at module level: only the operator commands read templates, and
    the worker's install (``pip install filejobs``) does not include it (``filejobs[deploy]`` does)."""
    try:
        import yaml
    except ImportError:
        raise TemplateError("reading the CloudFormation template needs PyYAML: pip install 'filejobs[deploy]'") from None

    class CfnLoader(yaml.SafeLoader):
        pass

    def construct(node_name: str):
        def build(loader, node):
            if isinstance(node, yaml.ScalarNode):
                value = loader.construct_scalar(node)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            if node_name == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
            return {node_name: value}
        return build

    CfnLoader.add_constructor("!Ref", construct("Ref"))
    CfnLoader.add_constructor("!Condition", construct("Condition"))
    CfnLoader.add_constructor("!GetAtt", construct("Fn::GetAtt"))
    for tag in _FN_TAGS:
        CfnLoader.add_constructor(f"!{tag}", construct(f"Fn::{tag}"))
    return yaml, CfnLoader


def load_template(path_or_text: str | None = None) -> dict:
    """A template file (or its text; default: the one this package ships) as plain dicts and
    lists, short tags in long form."""
    text = path_or_text or TEMPLATE_PATH
    if "\n" not in path_or_text:
        with open(path_or_text, encoding="utf-8") as fh:
            text = fh.read()
    yaml, loader = _cfn_loader()
    return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass


class Unresolvable(ValueError):
    pass


_SUB_RE = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Resolver:
    """Resolves intrinsic functions for reading a template offline.

    ``values`` maps a parameter, pseudo parameter (``AWS::Region``) or logical id to what ``Ref``
    returns, and ``"Logical.Attribute"`` to what ``Fn::GetAtt`` returns. An unknown ``Ref`` of a
    resource resolves to its logical id, an unknown ``GetAtt`` to ``"Logical.Attribute"`` and a
    parameter without value or default to ``"<Name>"``, so references stay recognisable.
    """

    template: dict
    values: dict = field(default_factory=dict)

    def __post_init__(self):
        merged = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
                  "AWS::StackName": "filejobs", "AWS::URLSuffix": "amazonaws.com"}
        for name, spec in (self.template.get("Parameters") or {}).items():
            if "Default" in spec:
                default = spec["Default"]
                merged[name] = ",".join(default) if isinstance(default, list) else str(default)
        merged.update({k: (",".join(v) if isinstance(v, list) else str(v)) if not isinstance(v, str) else v
                       for k, v in self.values.items()})
        self.values = merged

    def ref(self, name: str) -> str:
        if name in self.values:
            return self.values[name]
        if name in (self.template.get("Resources") or {}):
            return name
        if name in (self.template.get("Parameters") or {}):
            return f"<{name}>"  # a parameter with no default and no value: a visible placeholder
        raise Unresolvable(f"Ref to unknown name {name!r}")

    def get_att(self, logical: str, attribute: str) -> str:
        key = f"{logical}.{attribute}"
        if key in self.values:
            return self.values[key]
        if logical in (self.template.get("Resources") or {}):
            return key
        raise Unresolvable(f"GetAtt of unknown resource {logical!r}")

    def sub(self, text: str, variables: Mapping | None = None) -> str:
        variables = {k: self.resolve(v) for k, v in (variables or {}).items()}

        def one(m: re.Match) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if inner in variables:
                return str(variables[inner])
            if "." in inner and not inner.startswith("AWS::"):
                logical, attribute = inner.split(".", 1)
                return self.get_att(logical, attribute)
            return self.ref(inner)

        return _SUB_RE.sub(one, text)

    def resolve(self, node):
        """``node`` with every intrinsic function replaced by its value."""
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    return self.sub(arg[0], arg[1])
                return self.sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items))
            if key == "Fn::Base64":
                return self.resolve(arg)
            if key == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if key.startswith("Fn::") or key == "Condition":
                raise Unresolvable(f"{key} is not supported by this resolver")
        return {k: self.resolve(v) for k, v in node.items()}


def resources_of_type(template: dict, resource_type: str) -> dict:
    return {name: r for name, r in (template.get("Resources") or {}).items() if r.get("Type") == resource_type}
