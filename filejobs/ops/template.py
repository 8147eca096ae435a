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
    """``yaml.SafeLoader`` (libyaml's when there) that turns CloudFormation's short tags (``!Ref X``,
    ``!Sub ...``, ``!GetAtt A.B``...) into their long forms (``{"Ref": "X"}``, ``{"Fn::Sub": ...}``...).

    PyYAML is imported here, not at module level: only the operator commands read templates, and
    the worker's install (``pip install filejobs``) does not include it (``filejobs[deploy]`` does)."""
    try:
        import yaml
    except ImportError:
        raise TemplateError("reading the CloudFormation template needs PyYAML: pip install 'filejobs[deploy]'") from None

    # libyaml's parser when PyYAML was built with it (its wheels are): the stack's template took
    # 0.2 s to read with the pure-Python one, on every deploy, simulate and status of a stack.
    class CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
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
    if "\n" not in text:
        with open(text, encoding="utf-8") as fh:
            text = fh.read()
    yaml, loader = _cfn_loader()
    return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass


class Unresolvable(ValueError):
    pass


_SUB_RE = re.compile(r"\$\{([^}]*)\}")
#: What ``Fn::If`` returns to remove a property or a list item.
NO_VALUE = object()
_PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
           "AWS::StackName": "filejobs", "AWS::URLSuffix": "amazonaws.com",
           "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/filejobs/"
                           "00000000-1111-2222-3333-444444444444"}


@dataclass
class Resolver:
    """Resolves intrinsic functions for reading a template offline.

    ``values`` maps a parameter, pseudo parameter (``AWS::Region``) or logical id to what ``Ref``
    returns, and ``"Logical.Attribute"`` to what ``Fn::GetAtt`` returns. An unknown ``Ref`` of a
    resource resolves to its logical id, an unknown ``GetAtt`` to ``"Logical.Attribute"`` and a
    parameter without value or default to ``"<Name>"``, so references stay recognisable. Conditions
    are evaluated from the same values; ``Fn::If`` to ``AWS::NoValue`` drops the property or item.
    """

    template: dict
    values: dict = field(default_factory=dict)

    def __post_init__(self):
        merged = dict(_PSEUDO)
        for name, spec in (self.template.get("Parameters") or {}).items():
            if "Default" in spec:
                merged[name] = _text(spec["Default"])
        merged.update({k: _text(v) for k, v in self.values.items()})
        self.values = merged

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        parameters = self.template.get("Parameters") or {}
        if name in self.values:
            value = self.values[name]
            if parameters.get(name, {}).get("Type", "").startswith(("CommaDelimitedList", "List<")):
                return [] if value == "" else value.split(",")
            return value
        if name in (self.template.get("Resources") or {}):
            return name
        if name in parameters:
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
            return _text(self.ref(inner))

        return _SUB_RE.sub(one, text)

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise Unresolvable(f"unknown condition {name!r}")
        return bool(self.resolve(conditions[name]))

    def resolve(self, node):
        """``node`` with every intrinsic function replaced by its value."""
        if isinstance(node, list):
            return [v for v in (self.resolve(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}

    def _function(self, name: str, arg):
        if name == "If":
            condition, yes, no = arg
            return self.resolve(yes if self.condition(condition) else no)
        if name == "GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.get_att(logical, attribute)
        if name == "Sub":
            return self.sub(arg[0], arg[1]) if isinstance(arg, list) else self.sub(arg)
        if name == "Base64":
            return self.resolve(arg)
        args = self.resolve(arg)
        simple = {
            "Join": lambda: args[0].join(_text(i) for i in args[1]),
            "Select": lambda: args[1][int(args[0])],
            "Split": lambda: args[1].split(args[0]),
            "FindInMap": lambda: self.template["Mappings"][_text(args[0])][_text(args[1])][_text(args[2])],
            "Equals": lambda: _text(args[0]) == _text(args[1]),
            "Not": lambda: not args[0],
            "And": lambda: all(args),
            "Or": lambda: any(args),
        }
        if name not in simple:
            raise Unresolvable(f"Fn::{name} is not supported by this resolver")
        return simple[name]()


def _text(value) -> str:
    """A value as CloudFormation passes it to a string context (lists joined by commas)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def resources_of_type(template: dict, resource_type: str) -> dict:
    return {name: r for name, r in (template.get("Resources") or {}).items() if r.get("Type") == resource_type}
