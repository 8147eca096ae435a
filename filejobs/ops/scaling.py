"""The template's scaling rules, read from ``filejobs/infra/stack.yaml`` and applied minute by minute.

Pure (no boto3; PyYAML only when a template is loaded). ``load_model`` reads the alarms, policies,
group and worker settings the template deploys; ``Rules`` evaluates the alarms on one minute's
datapoints and applies the policies (``filejobs.ops.replay`` drives it).

What is modelled, as AWS documents it:

* an alarm's datapoint is its metric or its ``ReturnData`` metric-math expression for that minute;
  it is in ALARM when at least ``DatapointsToAlarm`` of the last ``EvaluationPeriods`` datapoints
  breach; a missing datapoint counts as ``TreatMissingData`` says (``breaching`` breaches, the
  others do not); ``FILL(m, REPEAT)`` repeats the last value of ``m`` seen in the last
  ``repeat_lookback`` minutes (AWS does not publish the exact evaluation range);
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
* Auto Scaling alarm actions are invoked every minute while the alarm stays in ALARM;
* step policies pick the step whose bounds (relative to the threshold; lower bound inclusive,
  upper exclusive above the threshold, the reverse below) hold the breach; ``ChangeInCapacity``,
  ``ExactCapacity``; the result is clamped to the group's min/max;
* warm-up: while scaling out, a step policy does not count instances still warming up as current
  capacity, so it sets desired = (desired - warming) + adjustment, and does nothing when that is not
  above the desired capacity;
  https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-simple-step.html#as-step-scaling-warmup
* simple policies wait for their cooldown; of several policies run in one minute, the one giving
  the largest capacity wins.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .metricmath import Expression
from .template import Resolver, load_template, resources_of_type

# --------------------------------------------------------------------------- the model


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
    expression: Expression
    period: int = 60
    #: Expressions that return no data, by id, in the order the alarm lists them.
    intermediates: dict[str, Expression] = field(default_factory=dict)

    def value(self, values: Mapping[str, float | None], last_known: Mapping[str, float | None]) -> float | None:
        """The alarm's datapoint from its metrics' ``values`` (by id)."""
        values = dict(values)
        for ident, expression in self.intermediates.items():
            values[ident] = expression.evaluate(values, last_known)
        return self.expression.evaluate(values, last_known)

    def breaches(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return {
            "GreaterThanOrEqualToThreshold": value >= self.threshold,
            "GreaterThanThreshold": value > self.threshold,
            "LessThanThreshold": value < self.threshold,
            "LessThanOrEqualToThreshold": value <= self.threshold,
        }[self.comparison]

    def in_alarm(self, history: Sequence[float | None]) -> bool:
        window = list(history[-self.evaluation_periods:])
        window = [None] * (self.evaluation_periods - len(window)) + window
        breaching = 0
        for value in window:
            b = self.breaches(value)
            breaching += bool(self.treat_missing == "breaching" if b is None else b)
        return breaching >= self.datapoints_to_alarm


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
    warmup_s: int | None = None  # EstimatedInstanceWarmup; None: the group's default

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
        raise ValueError(f"AdjustmentType {self.adjustment_type} is not modelled")


@dataclass
class Group:
    name: str
    min_size: int
    max_size: int
    default_warmup_s: int | None = None
    default_cooldown_s: int = 300
    #: Heartbeat of the termination lifecycle hook (None: no hook, instances go at once).
    drain_timeout_s: int | None = None
    on_demand_base: int = 0
    on_demand_percent: int = 100
    capacity_rebalance: bool = False


@dataclass
class WorkerSettings:
    """What user data gives each worker (read from the template's rendered user data)."""

    slots: int
    grace_s: float
    job_timeout_s: float | None
    visibility_timeout_s: int


@dataclass
class Model:
    group: Group
    alarms: dict[str, Alarm]
    policies: dict[str, ScalingPolicy]
    queue_name: str
    dlq_name: str | None
    topics: set[str] = field(default_factory=set)
    worker: WorkerSettings | None = None

    min_size = property(lambda self: self.group.min_size)
    max_size = property(lambda self: self.group.max_size)
    group_name = property(lambda self: self.group.name)

    def warmup_s(self, policy: ScalingPolicy) -> int:
        if policy.warmup_s is not None:
            return policy.warmup_s
        if self.group.default_warmup_s is not None:
            return self.group.default_warmup_s
        return self.group.default_cooldown_s  # AWS's fallback without a default instance warm-up


# --------------------------------------------------------------------------- reading the template


def _int(value) -> int | None:
    return None if value is None else int(value)


def _metric_ref(spec: Mapping, stat: str) -> MetricRef:
    dims = tuple((d["Name"], str(d["Value"])) for d in spec.get("Dimensions", []))
    return MetricRef(spec["Namespace"], spec["MetricName"], dims, stat)


def _policy(pid: str, p: Mapping) -> ScalingPolicy:
    policy_type = p.get("PolicyType", "SimpleScaling")
    if policy_type not in ("StepScaling", "SimpleScaling"):
        raise ValueError(f"{pid}: {policy_type} is not modelled")
    steps = [StepAdjustment(None if s.get("MetricIntervalLowerBound") is None else float(s["MetricIntervalLowerBound"]),
                            None if s.get("MetricIntervalUpperBound") is None else float(s["MetricIntervalUpperBound"]),
                            int(s["ScalingAdjustment"])) for s in p.get("StepAdjustments", [])]
    return ScalingPolicy(name=pid, policy_type=policy_type, adjustment_type=p["AdjustmentType"], steps=steps,
                         scaling_adjustment=_int(p.get("ScalingAdjustment")), cooldown_s=_int(p.get("Cooldown")),
                         warmup_s=_int(p.get("EstimatedInstanceWarmup")))


def _alarm(aid: str, a: Mapping) -> Alarm:
    metrics, intermediates = {}, {}
    if "Metrics" in a:
        returned = [m for m in a["Metrics"] if m.get("ReturnData", True)]
        if len(returned) != 1:
            raise ValueError(f"{aid}: exactly one metric-math entry must return data")
        for m in a["Metrics"]:
            if "MetricStat" in m:
                metrics[m["Id"]] = _metric_ref(m["MetricStat"]["Metric"], m["MetricStat"]["Stat"])
            elif m is not returned[0]:
                intermediates[m["Id"]] = Expression(m["Expression"])
        ret = returned[0]
        expression = Expression(ret.get("Expression", ret["Id"]))
        periods = {int(m["MetricStat"]["Period"]) for m in a["Metrics"] if "MetricStat" in m}
        if len(periods) != 1:
            raise ValueError(f"{aid}: metrics must share one period")
        period = periods.pop()
    else:
        metrics["m"] = _metric_ref(a, a.get("Statistic", "Average"))
        expression, period = Expression("m"), int(a["Period"])
    evaluation_periods = int(a["EvaluationPeriods"])
    return Alarm(name=aid, comparison=a["ComparisonOperator"], threshold=float(a["Threshold"]),
                 evaluation_periods=evaluation_periods,
                 datapoints_to_alarm=int(a.get("DatapointsToAlarm", evaluation_periods)),
                 treat_missing=a.get("TreatMissingData", "missing"), actions=list(a.get("AlarmActions", [])),
                 metrics=metrics, expression=expression, period=period, intermediates=intermediates)


def _group(r: Resolver, group_id: str, props: Mapping) -> Group:
    hooks = [h for h in props.get("LifecycleHookSpecificationList", [])
             if h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"]
    dist = props.get("MixedInstancesPolicy", {}).get("InstancesDistribution", {})
    return Group(name=r.ref(group_id), min_size=int(props["MinSize"]), max_size=int(props["MaxSize"]),
                 default_warmup_s=_int(props.get("DefaultInstanceWarmup")),
                 default_cooldown_s=int(props.get("Cooldown", 300)),
                 drain_timeout_s=int(hooks[0].get("HeartbeatTimeout", 3600)) if hooks else None,
                 on_demand_base=int(dist.get("OnDemandBaseCapacity", 0)),
                 on_demand_percent=int(dist.get("OnDemandPercentageAboveBaseCapacity", 100)),
                 capacity_rebalance=bool(props.get("CapacityRebalance", False)))


_CONFIG_RE = re.compile(r'^([A-Z_]+)="([^"]*)"$', re.M)


def _worker(r: Resolver, template: dict, queue_props: Mapping) -> WorkerSettings | None:
    """The worker's settings from the launch template's rendered user data (what instances get)."""
    for spec in resources_of_type(template, "AWS::EC2::LaunchTemplate").values():
        user_data = spec["Properties"]["LaunchTemplateData"].get("UserData")
        if user_data is None:
            continue
        config = dict(_CONFIG_RE.findall(r.resolve(user_data)))
        timeout = float(config.get("JOB_TIMEOUT", "0"))
        return WorkerSettings(slots=int(config["SLOTS"]), grace_s=float(config["GRACE_SECONDS"]),
                              job_timeout_s=timeout or None,
                              visibility_timeout_s=int(queue_props.get("VisibilityTimeout", 30)))
    return None


def load_model(template: dict | str | None = None, parameters: Mapping | None = None) -> Model:
    """The scaling model of a template (a path, text, a loaded dict, or None: the shipped one) with
    ``parameters`` applied over the template's defaults."""
    if not isinstance(template, dict):
        template = load_template(template)
    groups = resources_of_type(template, "AWS::AutoScaling::AutoScalingGroup")
    if len(groups) != 1:
        raise ValueError("expected exactly one Auto Scaling group")
    (group_id, group_spec), = groups.items()
    values = dict(parameters or {})
    if group_id not in values and "AutoScalingGroupName" in group_spec["Properties"]:
        # Ref of the group is its name; the template fixes it, so every reference agrees.
        values[group_id] = Resolver(template, values).resolve(group_spec["Properties"]["AutoScalingGroupName"])
    r = Resolver(template, values)
    group = _group(r, group_id, r.resolve(group_spec["Properties"]))
    queues = resources_of_type(template, "AWS::SQS::Queue")
    main = [q for q, spec in queues.items() if "RedrivePolicy" in spec.get("Properties", {})]
    if len(main) != 1:
        raise ValueError("expected exactly one queue with a RedrivePolicy")
    dlq_target = queues[main[0]]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
    dlq_id = dlq_target["Fn::GetAtt"][0] if isinstance(dlq_target, dict) and "Fn::GetAtt" in dlq_target else None
    policies = {}
    for pid, spec in resources_of_type(template, "AWS::AutoScaling::ScalingPolicy").items():
        p = r.resolve(spec["Properties"])
        if p.get("AutoScalingGroupName") == group.name:
            policies[pid] = _policy(pid, p)
    alarms = {aid: _alarm(aid, r.resolve(spec["Properties"]))
              for aid, spec in resources_of_type(template, "AWS::CloudWatch::Alarm").items()}
    return Model(group=group, alarms=alarms, policies=policies, queue_name=r.get_att(main[0], "QueueName"),
                 dlq_name=r.get_att(dlq_id, "QueueName") if dlq_id else None,
                 topics={r.ref(t) for t in resources_of_type(template, "AWS::SNS::Topic")},
                 worker=_worker(r, template, r.resolve(queues[main[0]]["Properties"])))


# --------------------------------------------------------------------------- the rules, one minute at a time

#: The datapoints a minute can carry, by the metric each alarm names.
_SQS = {"ApproximateNumberOfMessagesVisible": "visible", "ApproximateNumberOfMessagesNotVisible": "in_flight",
        "ApproximateAgeOfOldestMessage": "oldest_age_s"}
_GROUP = {"GroupDesiredCapacity": "desired", "GroupInServiceInstances": "in_service"}


def metric_key(model: Model, metric: MetricRef) -> str:
    dims = dict(metric.dimensions)
    if metric.namespace == "AWS/SQS" and metric.name in _SQS:
        if dims.get("QueueName") == model.queue_name:
            return _SQS[metric.name]
        if dims.get("QueueName") == model.dlq_name and metric.name == "ApproximateNumberOfMessagesVisible":
            return "dead_letters"
    if metric.namespace == "AWS/AutoScaling" and metric.name in _GROUP:
        if dims.get("AutoScalingGroupName") == model.group_name:
            return _GROUP[metric.name]
    if (metric.namespace, metric.name) == ("filejobs", "BootFailures"):
        return "boot_failures"
    raise ValueError(f"metric not modelled: {metric.namespace} {metric.name} {dims}")


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


class Rules:
    """The template's alarms and policies, fed one minute of datapoints at a time."""

    def __init__(self, model: Model, *, repeat_lookback: int = 10):
        self.model = model
        self.repeat_lookback = repeat_lookback
        self.keys = {a: {mid: metric_key(model, m) for mid, m in alarm.metrics.items()}
                     for a, alarm in model.alarms.items()}
        self.history: dict[str, list] = {a: [] for a in model.alarms}
        self.raw: list[Mapping[str, float | None]] = []
        self.cooldown_until: dict[str, int] = {}

    def _last_known(self, key: str) -> float | None:
        for values in reversed(self.raw[-self.repeat_lookback:]):
            if values.get(key) is not None:
                return values[key]
        return None

    def step(self, minute: int, values: Mapping[str, float | None], *, desired: int, warming: int = 0) -> Minute:
        """Evaluate every alarm on this minute's ``values`` (by metric key), run the policies of the
        alarms in ALARM and say what desired capacity results."""
        points, in_alarm, notifications, candidates = {}, [], [], []
        for name, alarm in self.model.alarms.items():
            keys = self.keys[name]
            last = {mid: self._last_known(key) for mid, key in keys.items()}
            value = alarm.value({mid: values.get(key) for mid, key in keys.items()}, last)
            points[name] = value
            self.history[name].append(value)
            if alarm.in_alarm(self.history[name]):
                in_alarm.append(name)
        self.raw.append(dict(values))
        for name in in_alarm:
            alarm = self.model.alarms[name]
            for action in alarm.actions:
                if action in self.model.topics:
                    notifications.append(name)
                    continue
                policy = self.model.policies.get(action)
                if policy is None:
                    raise ValueError(f"{name}: action {action!r} is neither a topic nor a policy")
                new = self._apply(policy, minute, desired, warming, points[name], alarm.threshold)
                if new is not None:
                    candidates.append((new, policy.name))
        chosen, capacity = None, desired
        if candidates:
            capacity, chosen = max(candidates)  # several policies at once: the largest capacity wins
            policy = self.model.policies[chosen]
            if policy.policy_type == "SimpleScaling" and capacity != desired:
                self.cooldown_until[chosen] = minute + math.ceil(
                    (policy.cooldown_s or self.model.group.default_cooldown_s) / 60)
        return Minute(minute=minute, capacity_before=desired, datapoints=points, in_alarm=tuple(in_alarm),
                      policies_run=tuple(p for _, p in candidates), chosen=chosen, capacity_after=capacity,
                      notifications=tuple(notifications))

    def _apply(self, policy: ScalingPolicy, minute: int, desired: int, warming: int, value, threshold) -> int | None:
        if policy.policy_type == "SimpleScaling" and self.cooldown_until.get(policy.name, -1) > minute:
            return None
        breach = None if value is None else value - threshold
        new = policy.new_capacity(desired, breach)
        if new is None:
            return None
        if policy.policy_type == "StepScaling" and new > desired and warming:
            new = policy.new_capacity(desired - warming, breach)  # warming instances are not capacity yet
            if new <= desired:
                return None
        return max(self.model.min_size, min(self.model.max_size, new))

    def warmup_s(self) -> int:
        """The warm-up of the scale-out policies (the longest, if several)."""
        out = [self.model.warmup_s(p) for p in self.model.policies.values() if p.policy_type == "StepScaling"]
        return max(out, default=0)
