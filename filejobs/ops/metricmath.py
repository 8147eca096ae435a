"""CloudWatch metric math over one datapoint per metric, as an alarm evaluates its expression.

Pure (no boto3, no I/O). Supports what the template's alarms use and a little more: numbers, ids,
``+ - * /``, parentheses, unary minus, ``CEIL FLOOR ABS``, ``MAX([a, b])``/``MIN([a, b])`` and
``FILL(x, value)``/``FILL(x, REPEAT)``. A missing datapoint (``None``) propagates as a gap does in
CloudWatch, division by zero gives a gap, ``FILL`` replaces a gap with a value or, with ``REPEAT``,
with the most recent actual value of that metric (the caller passes the ones it still has in the
alarm's evaluation range). https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html
"""

from __future__ import annotations

import math
import re
from typing import Mapping


class ExpressionError(ValueError):
    pass


_TOKEN_RE = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")

#: The functions this evaluator knows (CloudWatch has many more).
FUNCTIONS = ("CEIL", "FLOOR", "ABS", "FILL", "MAX", "MIN")
_UNARY = {"CEIL": math.ceil, "FLOOR": math.floor, "ABS": abs}
_BINARY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: None if b == 0 else a / b}


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r}")
        number, name, op = m.groups()
        if number is not None:
            out.append(("num", number))
        elif name is not None:
            out.append(("name", name))
        elif op.strip():
            if op not in "+-*/(),[]":
                raise ExpressionError(f"unsupported character {op!r} in {text!r}")
            out.append(("op", op))
        pos = m.end()
    return out


class Expression:
    """A parsed expression: ``Expression("CEIL(v / 10) - FILL(d, REPEAT)").evaluate({...})``."""

    def __init__(self, text: str):
        self.text = text
        self._tokens = _tokens(text)
        self._pos = 0
        self.tree = self._sum()
        if self._pos != len(self._tokens):
            raise ExpressionError(f"unexpected {self._tokens[self._pos][1]!r} in {text!r}")

    # recursive descent: sum := product (("+"|"-") product)*; product := unary (("*"|"/") unary)*
    def _peek(self):
        return self._tokens[self._pos] if self._pos < len(self._tokens) else (None, None)

    def _take(self, value=None):
        kind, text = self._peek()
        if kind is None or (value is not None and text != value):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self._pos += 1
        return kind, text

    def _sum(self):
        node = self._product()
        while self._peek()[1] in ("+", "-"):
            op = self._take()[1]
            node = (op, node, self._product())
        return node

    def _product(self):
        node = self._unary()
        while self._peek()[1] in ("*", "/"):
            op = self._take()[1]
            node = (op, node, self._unary())
        return node

    def _unary(self):
        if self._peek()[1] == "-":
            self._take()
            return ("neg", self._unary())
        return self._atom()

    def _items(self, close: str) -> list:
        items = [self._sum()]
        while self._peek()[1] == ",":
            self._take()
            items.append(self._sum())
        self._take(close)
        return items

    def _atom(self):
        kind, text = self._take()
        if kind == "num":
            return ("num", float(text))
        if kind == "op" and text == "(":
            node = self._sum()
            self._take(")")
            return node
        if kind == "op" and text == "[":
            return ("list", self._items("]"))
        if kind == "name" and self._peek()[1] == "(":
            name = text.upper()
            if name not in FUNCTIONS:
                raise ExpressionError(f"unsupported function {text} in {self.text!r}")
            self._take("(")
            return self._call(name, self._items(")"))
        if kind == "name":
            return ("id", text)
        raise ExpressionError(f"unexpected {text!r} in {self.text!r}")

    def _call(self, name: str, args: list):
        if name == "FILL":
            if len(args) != 2:
                raise ExpressionError("FILL takes (series, value | REPEAT)")
            if args[1] == ("id", "LINEAR"):
                raise ExpressionError("FILL(..., LINEAR) is not modelled")
            if args[1] == ("id", "REPEAT"):
                if args[0][0] != "id":
                    raise ExpressionError("FILL(..., REPEAT) is modelled for a metric id only")
                return ("repeat", args[0][1])
        elif name not in ("MAX", "MIN") and len(args) != 1:
            raise ExpressionError(f"{name} takes one argument")
        return ("call", name, args)

    def ids(self) -> set[str]:
        found = set()

        def walk(node):
            if node[0] in ("id", "repeat"):
                found.add(node[1])
            elif node[0] in _BINARY:
                walk(node[1])
                walk(node[2])
            elif node[0] == "neg":
                walk(node[1])
            elif node[0] == "list":
                for n in node[1]:
                    walk(n)
            elif node[0] == "call":
                for n in node[2]:
                    walk(n)
        walk(self.tree)
        return found

    def evaluate(self, values: Mapping[str, float | None],
                 last_known: Mapping[str, float | None] | None = None) -> float | None:
        """The expression's value this period; ``last_known[id]`` is the most recent actual value of
        that metric in the evaluation range (for ``FILL(id, REPEAT)``)."""
        return self._eval(self.tree, values, last_known or {})

    def _eval(self, node, values, last_known):
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind in ("id", "repeat"):
            if node[1] not in values:
                raise ExpressionError(f"unknown id {node[1]!r} in {self.text!r}")
            value = values[node[1]]
            return last_known.get(node[1]) if value is None and kind == "repeat" else value
        if kind == "neg":
            v = self._eval(node[1], values, last_known)
            return None if v is None else -v
        if kind in _BINARY:
            a, b = self._eval(node[1], values, last_known), self._eval(node[2], values, last_known)
            return None if a is None or b is None else _BINARY[kind](a, b)
        if kind == "list":
            raise ExpressionError("an array is only allowed inside MAX/MIN")
        name, args = node[1], node[2]
        if name == "FILL":
            v = self._eval(args[0], values, last_known)
            return self._eval(args[1], values, last_known) if v is None else v
        if name in ("MAX", "MIN"):
            items = args[0][1] if len(args) == 1 and args[0][0] == "list" else args
            vals = [v for v in (self._eval(i, values, last_known) for i in items) if v is not None]
            return (max if name == "MAX" else min)(vals) if vals else None
        v = self._eval(args[0], values, last_known)
        return None if v is None else _UNARY[name](v)
