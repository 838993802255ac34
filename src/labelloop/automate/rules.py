"""The pure part of automation: which alerts open or resolve, and which policies are due.

Functions over plain values (metrics by name, counters, times), no store and no I/O, so
they are tested and reasoned about alone; ``automate.runner`` feeds them and acts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from labelloop.core.config import ACTION_ORDER, AlertRuleSpec, PolicySpec


@dataclass(frozen=True)
class AlertChange:
    """``kind``: ``open`` (the rule just fired), ``still`` (open and still breaching),
    ``resolve`` (open and no longer breaching), or ``pending`` (breaching, not yet for
    ``for_checks`` checks in a row)."""

    rule: AlertRuleSpec
    kind: str
    value: float | None
    streak: int

    @property
    def bound(self) -> float:
        return float(self.rule.above if self.rule.above is not None else self.rule.below)  # type: ignore[arg-type]

    @property
    def message(self) -> str:
        side = "above" if self.rule.above is not None else "below"
        shown = "n/a" if self.value is None else f"{self.value:.4g}"
        if self.kind == "resolve":
            return f"{self.rule.name} recovered: {self.rule.metric} {shown} (bound: {side} {self.bound:g})"
        return f"{self.rule.name}: {self.rule.metric} {shown} is {side} {self.bound:g}"


def breaches(rule: AlertRuleSpec, value: float | None) -> bool:
    """A missing value (nothing to measure yet) never breaches."""
    if value is None:
        return False
    if rule.above is not None:
        return value > rule.above
    return rule.below is not None and value < rule.below


def evaluate_alerts(
    rules: Sequence[AlertRuleSpec],
    values: Mapping[str, float | None],
    open_rules: set[str],
    streaks: Mapping[str, int],
) -> tuple[list[AlertChange], dict[str, int]]:
    """Each rule's change this check and the new breach streaks (kept by the caller between
    checks). An alert opens once its rule breached ``for_checks`` checks in a row, stays one
    alert while it breaches (deduplicated), and resolves on the first check it does not."""
    changes, new_streaks = [], {}
    for rule in rules:
        value = values.get(rule.metric)
        hit = breaches(rule, value)
        streak = streaks.get(rule.name, 0) + 1 if hit else 0
        new_streaks[rule.name] = streak
        if rule.name in open_rules:
            changes.append(AlertChange(rule, "still" if hit else "resolve", value, streak))
        elif hit:
            kind = "open" if streak >= rule.for_checks else "pending"
            changes.append(AlertChange(rule, kind, value, streak))
    return changes, new_streaks


@dataclass
class PolicyState:
    """What a policy needs to know about its last run (none: it never ran)."""

    last_run_at: datetime | None = None
    labels_at_last_run: int | None = None


@dataclass
class Signals:
    """One check's view of the project."""

    now: datetime
    human_labels: int
    values: Mapping[str, float | None] = field(default_factory=dict)
    # Alerts opened by this check (an alert trigger fires once per opening, not while open).
    opened_alerts: set[str] = field(default_factory=set)


def policy_due(policy: PolicySpec, signals: Signals, state: PolicyState) -> str | None:
    """Why ``policy`` fires now, or None."""
    if policy.trigger == "schedule":
        every = timedelta(minutes=float(policy.every_minutes or 0))
        if state.last_run_at is None or signals.now - state.last_run_at >= every:
            return f"schedule: every {policy.every_minutes:g} min"
        return None
    if policy.trigger == "labels":
        since = signals.human_labels - (state.labels_at_last_run or 0)
        if since >= int(policy.labels or 0):
            return f"labels: {since} new human labels (every {policy.labels})"
        return None
    if policy.trigger == "alert":
        fired = (
            signals.opened_alerts
            if policy.alert is None
            else signals.opened_alerts & {policy.alert}
        )
        return f"alert: {', '.join(sorted(fired))}" if fired else None
    # A quality drop fires again only on new evidence (human labels since its last run), so a
    # low value that nothing has changed does not retrain on every check.
    value = signals.values.get("audited_precision")
    fresh = state.labels_at_last_run is None or signals.human_labels > state.labels_at_last_run
    if value is not None and policy.quality_below is not None and value < policy.quality_below:
        if fresh:
            return f"quality_drop: audited precision {value:.3f} < {policy.quality_below:g}"
    return None


def plan(
    policies: Sequence[PolicySpec], signals: Signals, states: Mapping[str, PolicyState]
) -> tuple[list[str], list[str], list[str]]:
    """(policies that fire, why each, the actions to run once each in ``ACTION_ORDER``):
    two policies firing together run a shared action once."""
    fired, reasons, wanted = [], [], set()
    for policy in policies:
        why = policy_due(policy, signals, states.get(policy.name, PolicyState()))
        if why is None:
            continue
        fired.append(policy.name)
        reasons.append(f"{policy.name} ({why})")
        wanted.update(policy.actions)
    return fired, reasons, [a for a in ACTION_ORDER if a in wanted]


def run_summary(outcome: Mapping[str, Any]) -> str:
    """One line per run for logs and the CLI."""
    return "; ".join(
        f"{k}: {v.get('summary', v) if isinstance(v, dict) else v}" for k, v in outcome.items()
    )
