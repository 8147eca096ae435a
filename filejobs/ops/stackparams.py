"""The template's Parameters as command-line options: names (``MaxSize`` → ``--max-size``), defaults,
descriptions and the constraints CloudFormation would check (allowed values, patterns, ranges),
checked here first so a typo is a usage error before any AWS call.

Pure: no boto3, no click (``filejobs.deploycli`` turns these into click options).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEBAB_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class ParamSpec:
    name: str  # the template's name, e.g. MaxSize
    type: str  # CloudFormation's, e.g. Number, String, CommaDelimitedList, List<AWS::EC2::Subnet::Id>
    default: str | None
    description: str
    group: str
    allowed_values: tuple[str, ...] = ()
    pattern: str | None = None
    constraint: str | None = None
    min_value: float | None = None
    max_value: float | None = None

    @property
    def option(self) -> str:
        return "--" + kebab(self.name)

    @property
    def is_list(self) -> bool:
        return self.type == "CommaDelimitedList" or self.type.startswith("List<")

    def check(self, value: str) -> str:
        """``value`` as CloudFormation will receive it, or ValueError saying which rule it breaks."""
        value = str(value)
        if self.type == "Number":
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
            if self.min_value is not None and number < self.min_value:
                raise ValueError(f"{value} is below the minimum {_num(self.min_value)}")
            if self.max_value is not None and number > self.max_value:
                raise ValueError(f"{value} is above the maximum {_num(self.max_value)}")
            value = _num(number)
        if self.allowed_values and value not in self.allowed_values:
            raise ValueError(f"{value!r} is not one of {', '.join(self.allowed_values)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ValueError(f"{value!r}: {self.constraint or 'does not match ' + self.pattern}")
        if self.is_list:
            value = ",".join(v.strip() for v in value.split(",") if v.strip())
        return value

    def help(self) -> str:
        return " ".join(self.description.split())


def kebab(name: str) -> str:
    """``OnDemandPercentageAboveBase`` → ``on-demand-percentage-above-base``, ``S3EventNotifications``
    → ``s3-event-notifications``."""
    return _KEBAB_RE.sub("-", name).lower()


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _groups(template: dict) -> dict[str, str]:
    interface = (template.get("Metadata") or {}).get("AWS::CloudFormation::Interface") or {}
    out = {}
    for group in interface.get("ParameterGroups") or []:
        for name in group.get("Parameters") or []:
            out[name] = group.get("Label", {}).get("default", "Parameters")
    return out


def param_specs(template: dict, *, exclude: tuple[str, ...] = ()) -> list[ParamSpec]:
    """The template's parameters in the order of its ParameterGroups (then the others)."""
    groups = _groups(template)
    params = template.get("Parameters") or {}
    order = [n for n in groups if n in params] + [n for n in params if n not in groups]
    out = []
    for name in order:
        if name in exclude:
            continue
        p = params[name]
        out.append(ParamSpec(
            name=name, type=p.get("Type", "String"),
            default=None if "Default" not in p else _text(p["Default"]),
            description=str(p.get("Description", "")), group=groups.get(name, "Other parameters"),
            allowed_values=tuple(_text(v) for v in p.get("AllowedValues") or ()),
            pattern=p.get("AllowedPattern"), constraint=p.get("ConstraintDescription"),
            min_value=None if "MinValue" not in p else float(p["MinValue"]),
            max_value=None if "MaxValue" not in p else float(p["MaxValue"])))
    return out


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
