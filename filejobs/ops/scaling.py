"""The template's scaling rules, read from ``infra/stack.yaml`` and replayed minute by minute.

Pure module for tests and docs (PyYAML, no boto3); the tools never import it. It loads the alarms
and scaling policies the template really defines (a YAML loader that knows CloudFormation's short
tags, plus a tiny resolver for ``Ref``/``Fn::Sub``/``Fn::GetAtt``), then replays a sequence of
per-minute queue metrics (visible, in flight, ...) and says, each minute, which alarms are in ALARM,
which policy ran and what desired capacity resulted.

What is modelled, as AWS documents it:

* an alarm's datapoint is its metric (or the ``ReturnData`` metric-math expression) for that
  minute; it is in ALARM when at least ``DatapointsToAlarm`` of the last ``EvaluationPeriods``
  datapoints breach; missing datapoints (``None`` or not enough history yet) count as
  ``TreatMissingData`` says (``notBreaching``/``missing`` → not breaching, ``breaching`` → breaching);
* Auto Scaling alarm actions are invoked every minute while the alarm stays in ALARM (unlike other
  alarm actions, which run on state changes only);
* step policies pick the step whose bounds (relative to the threshold; lower bound inclusive,
  upper exclusive above the threshold, the reverse below) hold the breach; ``ChangeInCapacity``,
  ``ExactCapacity`` and ``PercentChangeInCapacity``; the result is clamped to the group's min/max;
  simple policies wait for their cooldown; when several policies run in the same minute the one
  giving the largest capacity wins.

Not modelled: instance warm-up (it can only make a step policy add *fewer* instances for a while;
ours already subtracts the desired capacity, warming instances included) and the few minutes SQS
metrics lag behind the queue.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from .template import Resolver, load_template, resources_of_type

# --------------------------------------------------------------------------- expressions


class ExpressionError(ValueError):
    pass


_TOKEN_RE = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")


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


#: The metric-math functions this evaluator knows (CloudWatch has many more).
FUNCTIONS = ("CEIL", "FLOOR", "ABS", "FILL", "MAX", "MIN")


class Expression:
    """A CloudWatch metric-math expression over scalars (one datapoint per metric id):
    numbers, ids, ``+ - * /``, parentheses, unary minus, ``CEIL FLOOR ABS``, ``FILL(x, value)``,
    ``MAX([a, b])``/``MIN([a, b])``. A missing value (``None``) propagates, as a gap does in
    CloudWatch; ``FILL`` replaces it; division by zero gives a gap."""

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

    def _atom(self):
        kind, text = self._take()
        if kind == "num":
            return ("num", float(text))
        if kind == "op" and text == "(":
            node = self._sum()
            self._take(")")
            return node
        if kind == "op" and text == "[":
            items = [self._sum()]
            while self._peek()[1] == ",":
                self._take()
                items.append(self._sum())
            self._take("]")
            return ("list", items)
        if kind == "name":
            if self._peek()[1] == "(":
                if text.upper() not in FUNCTIONS:
                    raise ExpressionError(f"unsupported function {text} in {self.text!r}")
                self._take("(")
                args = [self._sum()]
                while self._peek()[1] == ",":
                    self._take()
                    args.append(self._sum())
                self._take(")")
                return ("call", text.upper(), args)
            return ("id", text)
        raise ExpressionError(f"unexpected {text!r} in {self.text!r}")

    def ids(self) -> set[str]:
        found = set()

        def walk(node):
            if node[0] == "id":
                found.add(node[1])
            elif node[0] in ("+", "-", "*", "/"):
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

    def evaluate(self, values: Mapping[str, float | None]) -> float | None:
        return self._eval(self.tree, values)

    def _eval(self, node, values):
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "id":
            if node[1] not in values:
                raise ExpressionError(f"unknown id {node[1]!r} in {self.text!r}")
            return values[node[1]]
        if kind == "neg":
            v = self._eval(node[1], values)
            return None if v is None else -v
        if kind in ("+", "-", "*", "/"):
            a, b = self._eval(node[1], values), self._eval(node[2], values)
            if a is None or b is None:
                return None
            if kind == "+":
                return a + b
            if kind == "-":
                return a - b
            if kind == "*":
                return a * b
            return None if b == 0 else a / b
        if kind == "list":
            raise ExpressionError("an array is only allowed inside MAX/MIN")
        name, args = node[1], node[2]
        if name == "FILL":
            if len(args) != 2:
                raise ExpressionError("FILL takes (series, value)")
            v = self._eval(args[0], values)
            return self._eval(args[1], values) if v is None else v
        if name in ("MAX", "MIN"):
            items = args[0][1] if len(args) == 1 and args[0][0] == "list" else args
            vals = [v for v in (self._eval(i, values) for i in items) if v is not None]
            return (max if name == "MAX" else min)(vals) if vals else None
        if len(args) != 1:
            raise ExpressionError(f"{name} takes one argument")
        v = self._eval(args[0], values)
        if v is None:
            return None
        return {"CEIL": math.ceil, "FLOOR": math.floor, "ABS": abs}[name](v)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Sample:
    """One minute of metrics. ``capacity`` overrides the simulated desired capacity that minute
    (None: the simulation's own). ``None`` for a queue metric means no datapoint that minute."""

    visible: float | None = 0
    in_flight: float | None = 0
    capacity: int | None = None
    dead_letters: float | None = 0
    oldest_age_s: float | None = 0


@dataclass(frozen=True)
class MetricRef:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str


@dataclass
class Alarm:
    name: str
    comparison: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing: str
    actions: list[str]
    metrics: dict[str, MetricRef]  # id -> metric ("m" for a single-metric alarm)
    expression: Expression | None = None
    period: int = 60

    def breaches(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return {
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
            "GreaterThanThreshold": value > self.threshold,
            "LessThanThreshold": value < self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
        }[self.comparison]


@dataclass
class StepAdjustment:
    lower: float | None
    upper: float | None
    adjustment: int


@dataclass
class ScalingPolicy:
    name: str
    policy_type: str
    adjustment_type: str
    steps: list[StepAdjustment] = field(default_factory=list)
    scaling_adjustment: int | None = None
    cooldown_s: int | None = None
    min_adjustment_magnitude: int | None = None

    def step_for(self, breach: float) -> StepAdjustment | None:
        """``breach`` = metric - threshold."""
        for step in self.steps:
            lower = -math.inf if step.lower is None else step.lower
            upper = math.inf if step.upper is None else step.upper
            if breach >= 0 and lower <= breach < upper:
                return step
            if breach < 0 and lower < breach <= upper:
                return step
        return None

    def new_capacity(self, current: int, breach: float | None) -> int | None:
        if self.policy_type == "StepScaling":
            step = self.step_for(breach if breach is not None else 0.0)
            if step is None:
                return None
            adjustment = step.adjustment
        else:
            adjustment = int(self.scaling_adjustment)
        if self.adjustment_type == "ExactCapacity":
            return adjustment
        if self.adjustment_type == "ChangeInCapacity":
            return current + adjustment
        if self.adjustment_type == "PercentChangeInCapacity":
            change = current * adjustment / 100
            change = math.floor(change) if change > 0 else math.ceil(change)
            if self.min_adjustment_magnitude and abs(change) < self.min_adjustment_magnitude:
                change = int(math.copysign(self.min_adjustment_magnitude, adjustment))
            return current + change
        raise ValueError(f"unknown AdjustmentType {self.adjustment_type}")


@dataclass
class Model:
    min_size: int
    max_size: int
    alarms: dict[str, Alarm]
    policies: dict[str, ScalingPolicy]
    queue_name: str
    dlq_name: str | None
    group_name: str
    topics: set[str] = field(default_factory=set)


def _metric_ref(spec: Mapping, stat: str) -> MetricRef:
    dims = tuple((d["Name"], str(d["Value"])) for d in spec.get("Dimensions", []))
    return MetricRef(spec["Namespace"], spec["MetricName"], dims, stat)


def load_model(template: dict | str, parameters: Mapping | None = None) -> Model:
    """The scaling model of a template (a path, text or loaded dict) with ``parameters`` applied
    over the template's defaults."""
    if not isinstance(template, dict):
        template = load_template(template)
    r = Resolver(template, dict(parameters or {}))
    groups = resources_of_type(template, "AWS::AutoScaling::AutoScalingGroup")
    if len(groups) != 1:
        raise ValueError("expected exactly one Auto Scaling group")
    (group_id, group), = groups.items()
    gprops = r.resolve(group["Properties"])
    queues = resources_of_type(template, "AWS::SQS::Queue")
    main = [q for q, spec in queues.items() if "RedrivePolicy" in spec.get("Properties", {})]
    if len(main) != 1:
        raise ValueError("expected exactly one queue with a RedrivePolicy")
    dlq_target = queues[main[0]]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
    dlq_id = dlq_target["Fn::GetAtt"][0] if isinstance(dlq_target, dict) and "Fn::GetAtt" in dlq_target else None
    policies = {}
    for pid, spec in resources_of_type(template, "AWS::AutoScaling::ScalingPolicy").items():
        p = r.resolve(spec["Properties"])
        if p.get("AutoScalingGroupName") != r.ref(group_id):
            continue
        policy_type = p.get("PolicyType", "SimpleScaling")
        if policy_type not in ("StepScaling", "SimpleScaling"):
            raise ValueError(f"{pid}: {policy_type} is not modelled")
        policies[pid] = ScalingPolicy(
            name=pid, policy_type=policy_type, adjustment_type=p["AdjustmentType"],
            steps=[StepAdjustment(None if s.get("MetricIntervalLowerBound") is None else float(s["MetricIntervalLowerBound"]),
                                  None if s.get("MetricIntervalUpperBound") is None else float(s["MetricIntervalUpperBound"]),
                                  int(s["ScalingAdjustment"])) for s in p.get("StepAdjustments", [])],
            scaling_adjustment=None if p.get("ScalingAdjustment") is None else int(p["ScalingAdjustment"]),
            cooldown_s=None if p.get("Cooldown") is None else int(p["Cooldown"]),
            min_adjustment_magnitude=None if p.get("MinAdjustmentMagnitude") is None else int(p["MinAdjustmentMagnitude"]))
    alarms = {}
    for aid, spec in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        a = r.resolve(spec["Properties"])
        metrics, expression = {}, None
        if "Metrics" in a:
            returned = [m for m in a["Metrics"] if m.get("ReturnData", True)]
            if len(returned) != 1:
                raise ValueError(f"{aid}: exactly one metric-math entry must return data")
            for m in a["Metrics"]:
                if "MetricStat" in m:
                    ms = m["MetricStat"]
                    metrics[m["Id"]] = _metric_ref(ms["Metric"], ms["Stat"])
            ret = returned[0]
            expression = Expression(ret["Expression"]) if "Expression" in ret else Expression(ret["Id"])
            period = {int(m["MetricStat"]["Period"]) for m in a["Metrics"] if "MetricStat" in m}
            if len(period) != 1:
                raise ValueError(f"{aid}: metrics must share one period")
            period = period.pop()
        else:
            metrics["m"] = _metric_ref(a, a.get("Statistic", "Average"))
            expression = Expression("m")
            period = int(a["Period"])
        evaluation_periods = int(a["EvaluationPeriods"])
        alarms[aid] = Alarm(
            name=aid, comparison=a["ComparisonOperator"], threshold=float(a["Threshold"]),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(a.get("DatapointsToAlarm", evaluation_periods)),
            treat_missing=a.get("TreatMissingData", "missing"), actions=list(a.get("AlarmActions", [])),
            metrics=metrics, expression=expression, period=period)
    return Model(min_size=int(gprops["MinSize"]), max_size=int(gprops["MaxSize"]), alarms=alarms,
                 policies=policies, queue_name=r.get_att(main[0], "QueueName"),
                 dlq_name=r.get_att(dlq_id, "QueueName") if dlq_id else None, group_name=r.ref(group_id),
                 topics={r.ref(t) for t in resources_of_type(template, "AWS::SNS::Topic")})


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class Minute:
    minute: int
    capacity_before: int
    datapoints: dict[str, float | None]
    in_alarm: tuple[str, ...]
    policies_run: tuple[str, ...]
    chosen: str | None
    capacity_after: int
    notifications: tuple[str, ...] = ()


def metric_value(model: Model, metric: MetricRef, sample: Sample, capacity: int) -> float | None:
    dims = dict(metric.dimensions)
    if metric.namespace == "AWS/SQS":
        queue = dims.get("QueueName")
        if queue == model.queue_name:
            table = {"ApproximateNumberOfMessagesVisible": sample.visible,
                     "ApproximateNumberOfMessagesNotVisible": sample.in_flight,
                     "ApproximateAgeOfOldestMessage": sample.oldest_age_s}
        elif queue == model.dlq_name:
            table = {"ApproximateNumberOfMessagesVisible": sample.dead_letters}
        else:
            raise ValueError(f"metric of an unknown queue: {dims}")
        if metric.name not in table:
            raise ValueError(f"SQS metric {metric.name} is not modelled")
        return table[metric.name]
    if metric.namespace == "AWS/AutoScaling":
        if dims.get("AutoScalingGroupName") != model.group_name:
            raise ValueError(f"metric of an unknown group: {dims}")
        if metric.name in ("GroupDesiredCapacity", "GroupInServiceInstances", "GroupInServiceCapacity"):
            return float(capacity)
        raise ValueError(f"Auto Scaling metric {metric.name} is not modelled")
    raise ValueError(f"namespace {metric.namespace} is not modelled")


def datapoint(model: Model, alarm: Alarm, sample: Sample, capacity: int) -> float | None:
    values = {mid: metric_value(model, m, sample, capacity) for mid, m in alarm.metrics.items()}
    return alarm.expression.evaluate(values)


def _state(alarm: Alarm, history: Sequence[float | None]) -> bool:
    window = list(history[-alarm.evaluation_periods:])
    window = [None] * (alarm.evaluation_periods - len(window)) + window
    breaching = 0
    for value in window:
        b = alarm.breaches(value)
        if b is None:
            b = alarm.treat_missing == "breaching"
        breaching += bool(b)
    return breaching >= alarm.datapoints_to_alarm


def simulate(model: Model, samples: Iterable[Sample], *, capacity: int = 0) -> list[Minute]:
    """Replay ``samples`` (one per minute) from ``capacity``; one ``Minute`` per sample."""
    history: dict[str, list] = {a: [] for a in model.alarms}
    cooldown_until: dict[str, int] = {}
    out = []
    for t, sample in enumerate(samples):
        if sample.capacity is not None:
            capacity = sample.capacity
        before = capacity
        points = {}
        in_alarm = []
        for name, alarm in model.alarms.items():
            value = datapoint(model, alarm, sample, capacity)
            points[name] = value
            history[name].append(value)
            if _state(alarm, history[name]):
                in_alarm.append(name)
        candidates = []
        notifications = []
        run = []
        for name in in_alarm:
            alarm = model.alarms[name]
            for action in alarm.actions:
                if action in model.topics:
                    notifications.append(name)
                    continue
                policy = model.policies.get(action)
                if policy is None:
                    raise ValueError(f"{name}: action {action!r} is neither a topic nor a policy")
                if policy.policy_type == "SimpleScaling" and cooldown_until.get(policy.name, -1) > t:
                    continue
                new = policy.new_capacity(capacity, None if points[name] is None else points[name] - alarm.threshold)
                if new is None:
                    continue
                run.append(policy.name)
                candidates.append((max(model.min_size, min(model.max_size, new)), policy.name))
        chosen = None
        if candidates:
            # Several policies at once: the one giving the largest capacity wins.
            new_capacity, chosen = max(candidates)
            if new_capacity != capacity:
                policy = model.policies[chosen]
                if policy.policy_type == "SimpleScaling":
                    cooldown_until[chosen] = t + math.ceil((policy.cooldown_s or 300) / 60)
                capacity = new_capacity
        out.append(Minute(minute=t, capacity_before=before, datapoints=points, in_alarm=tuple(in_alarm),
                          policies_run=tuple(run), chosen=chosen, capacity_after=capacity,
                          notifications=tuple(notifications)))
    return out
