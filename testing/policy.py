"""A small, pure IAM evaluator: does a policy document allow what the tools really call?

Used by the tests (``tests/infra/test_policies.py``) to prove that ``role.json`` and ``sender-policy.json``
allow every AWS call the worker and the sender make, and nothing they never make. Not used by the
tools at run time; no boto3, no I/O.

What it models (enough for identity policies like ours, and it fails loudly on anything else):

* ``Allow``/``Deny`` statements with ``Action``/``NotAction`` and ``Resource``/``NotResource``;
  an explicit deny wins, no matching allow is an implicit deny;
* ``*`` and ``?`` wildcards: actions match case-insensitively, resources case-sensitively, and ``*``
  spans ``:`` and ``/`` as in IAM;
* conditions ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``, ``StringLike``,
  ``StringNotLike`` and ``Bool`` (each also with ``IfExists``); condition keys are case-insensitive,
  several values of one key are OR-ed, several keys and operators AND-ed. Any other operator, or a
  policy variable (``${aws:username}``), raises ``PolicyError`` rather than guessing.

Which IAM action(s) on which resource(s) one API call needs is testing/iamcalls.py's part.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z0-9_]*)>")


class PolicyError(ValueError):
    """A policy this evaluator cannot judge (unknown operator, policy variable, malformed)."""


class UnknownOperation(KeyError):
    """An API operation ``required`` has no mapping for (add it, with its IAM action)."""


# --------------------------------------------------------------------------- placeholders


def placeholders(text: str) -> set[str]:
    """The ``<NAME>`` placeholders in a policy's text."""
    return set(PLACEHOLDER_RE.findall(text))


def substitute(document: str | dict, values: Mapping[str, str]) -> dict:
    """The policy with every ``<NAME>`` replaced by ``values[NAME]``; raises if one is left over
    or unknown, so a test can never pass on an unsubstituted policy."""
    text = document if isinstance(document, str) else json.dumps(document)
    missing = placeholders(text) - set(values)
    if missing:
        raise PolicyError(f"no value for placeholder(s): {', '.join(sorted(missing))}")
    return json.loads(PLACEHOLDER_RE.sub(lambda m: _json_inner(values[m.group(1)]), text))


def _json_inner(value: str) -> str:
    return json.dumps(value)[1:-1]


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Need:
    """One permission a call needs: an action on a resource, in a request context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    @property
    def context_dict(self) -> dict[str, str]:
        return dict(self.context)

    def __str__(self) -> str:
        ctx = "".join(f" {k}={v!r}" for k, v in self.context)
        return f"{self.action} on {self.resource}{ctx}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Sids (or statement indexes) of the statements that allowed or denied it.
    statements: tuple[str, ...] = ()
    explicit_deny: bool = False


@dataclass
class _Statement:
    sid: str
    effect: str
    actions: list[str] | None
    not_actions: list[str] | None
    resources: list[str] | None
    not_resources: list[str] | None
    conditions: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- matching


def _glob_regex(pattern: str, *, ignore_case: bool) -> re.Pattern:
    if "${" in pattern:
        raise PolicyError(f"policy variables are not supported: {pattern!r}")
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard matching: ``*`` any run of characters (``:`` and ``/`` included), ``?`` one."""
    return _glob_regex(pattern, ignore_case=ignore_case).fullmatch(value) is not None


def _as_list(value, what: str) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise PolicyError(f"{what} must be a string or a list of strings, got {value!r}")


def _condition_values(values, what: str) -> list[str]:
    """A condition's value(s) as strings (JSON booleans as IAM reads them: "true"/"false")."""
    if not isinstance(values, list):
        values = [values]
    if not values or not all(isinstance(v, (str, bool, int)) for v in values):
        raise PolicyError(f"{what}: values must be strings, got {values!r}")
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in values]


_OPERATORS = {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
              "StringLike", "StringNotLike", "Bool"}


def _condition_holds(operator: str, block: Mapping, context: Mapping[str, str]) -> bool:
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        raise PolicyError(f"multivalued condition operators are not supported: {operator}")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    if base not in _OPERATORS:
        raise PolicyError(f"unsupported condition operator {operator!r}")
    if not isinstance(block, Mapping):
        raise PolicyError(f"condition {operator} must map keys to values")
    lowered = {k.lower(): v for k, v in context.items()}
    negated = "Not" in base
    for key, values in block.items():
        wanted = _condition_values(values, f"condition {operator} {key}")
        actual = lowered.get(key.lower())
        if actual is None:
            # An absent key: IfExists makes the condition true; otherwise positive operators are
            # false and negated ones true (IAM's documented behaviour).
            if if_exists or negated:
                continue
            return False
        if base in ("StringEquals", "StringNotEquals"):
            hit = actual in wanted
        elif base in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
            hit = actual.lower() in [w.lower() for w in wanted]
        elif base in ("StringLike", "StringNotLike"):
            hit = any(glob_match(w, actual) for w in wanted)
        else:  # Bool
            hit = actual.lower() in [w.lower() for w in wanted]
        if hit == negated:
            return False
    return True


class Policy:
    """An identity policy document (a dict, or JSON text)."""

    def __init__(self, document: str | Mapping):
        doc = json.loads(document) if isinstance(document, str) else document
        if not isinstance(doc, Mapping) or "Statement" not in doc:
            raise PolicyError("a policy document needs a Statement")
        if doc.get("Version") != "2012-10-17":
            raise PolicyError("policy Version must be 2012-10-17")
        raw = doc["Statement"]
        raw = [raw] if isinstance(raw, Mapping) else raw
        self.statements: list[_Statement] = []
        for i, s in enumerate(raw):
            effect = s.get("Effect")
            if effect not in ("Allow", "Deny"):
                raise PolicyError(f"statement {i}: Effect must be Allow or Deny")
            if ("Action" in s) == ("NotAction" in s):
                raise PolicyError(f"statement {i}: exactly one of Action/NotAction")
            if ("Resource" in s) == ("NotResource" in s):
                raise PolicyError(f"statement {i}: exactly one of Resource/NotResource")
            if "Principal" in s or "NotPrincipal" in s:
                raise PolicyError(f"statement {i}: Principal belongs in resource policies, not identity policies")
            conditions = s.get("Condition", {})
            for op, block in conditions.items():  # validate now, not at first use
                base = op[: -len("IfExists")] if op.endswith("IfExists") else op
                if base not in _OPERATORS or not isinstance(block, Mapping):
                    raise PolicyError(f"statement {i}: unsupported condition {op!r}")
                for key, values in block.items():
                    for v in _condition_values(values, f"statement {i} {op} {key}"):
                        if base in ("StringLike", "StringNotLike"):
                            _glob_regex(v, ignore_case=False)
            get = lambda k: _as_list(s[k], k) if k in s else None  # noqa: E731
            stmt = _Statement(sid=s.get("Sid") or f"#{i}", effect=effect, actions=get("Action"),
                              not_actions=get("NotAction"), resources=get("Resource"),
                              not_resources=get("NotResource"), conditions=conditions)
            for pattern in (stmt.resources or []) + (stmt.not_resources or []):
                _glob_regex(pattern, ignore_case=False)
            self.statements.append(stmt)

    # -- evaluation ------------------------------------------------------------------------------

    @staticmethod
    def _action_hits(stmt: _Statement, action: str) -> list[str]:
        if stmt.actions is not None:
            return [p for p in stmt.actions if glob_match(p, action, ignore_case=True)]
        return [] if any(glob_match(p, action, ignore_case=True) for p in stmt.not_actions) else ["NotAction"]

    @staticmethod
    def _resource_hits(stmt: _Statement, resource: str) -> list[str]:
        if stmt.resources is not None:
            return [p for p in stmt.resources if glob_match(p, resource)]
        return [] if any(glob_match(p, resource) for p in stmt.not_resources) else ["NotResource"]

    def matches(self, action: str, resource: str, context: Mapping[str, str] | None = None):
        """Yield ``(statement, action pattern, resource pattern)`` for every statement that applies."""
        context = context or {}
        for stmt in self.statements:
            actions = self._action_hits(stmt, action)
            if not actions:
                continue
            resources = self._resource_hits(stmt, resource)
            if not resources:
                continue
            if all(_condition_holds(op, block, context) for op, block in stmt.conditions.items()):
                for a in actions:
                    for r in resources:
                        yield stmt, a, r

    def decide(self, action: str, resource: str, context: Mapping[str, str] | None = None) -> Decision:
        allow, deny = [], []
        for stmt, _, _ in self.matches(action, resource, context):
            (deny if stmt.effect == "Deny" else allow).append(stmt.sid)
        if deny:
            return Decision(False, tuple(dict.fromkeys(deny)), explicit_deny=True)
        return Decision(bool(allow), tuple(dict.fromkeys(allow)))

    def allows(self, action: str, resource: str, context: Mapping[str, str] | None = None) -> bool:
        return self.decide(action, resource, context).allowed

    def allows_need(self, need: Need) -> bool:
        return self.allows(need.action, need.resource, need.context_dict)

    # -- what it grants ----------------------------------------------------------------------------

    def grants(self) -> set[tuple[str, str, str]]:
        """Every ``(Sid, action pattern, resource pattern)`` an Allow statement lists."""
        out = set()
        for stmt in self.statements:
            if stmt.effect != "Allow":
                continue
            for a in stmt.actions or ["NotAction"]:
                for r in stmt.resources or ["NotResource"]:
                    out.add((stmt.sid, a, r))
        return out

    def exercised_by(self, needs: Iterable[Need]) -> set[tuple[str, str, str]]:
        """The ``(Sid, action pattern, resource pattern)`` grants that at least one need used."""
        used = set()
        for need in needs:
            for stmt, a, r in self.matches(need.action, need.resource, need.context_dict):
                if stmt.effect == "Allow":
                    used.add((stmt.sid, a, r))
        return used
