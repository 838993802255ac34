"""One automation check for a project, and the loop that repeats it (``labelloop automate``).

A check: measure (``signals.collect``), open, keep or resolve alerts (``rules.evaluate_alerts``,
delivered by ``notify``), then run the policies that are due (``rules.plan``): their actions
once each, in a fixed order, as one recorded run. Runs never overlap for a project: the check
takes the ``automation`` job lease (the store decides, so two processes never both act) and
one that finds it held does nothing. A failing action fails the run and skips the actions
after it; the champion changes only inside ``promote`` and ``rollback``, as their last step,
so a run that fails midway leaves it as it was.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from labelloop.automate import signals as signal_source
from labelloop.automate.actions import ACTIONS, Action
from labelloop.automate.metrics import observe_check
from labelloop.automate.notify import deliver
from labelloop.automate.rules import PolicyState, Signals, evaluate_alerts, plan
from labelloop.registry import ProjectRegistry, open_registry
from labelloop.store.context import ProjectContext
from labelloop.store.loop_state import acquire_lease, release_lease
from labelloop.store.models import utcnow
from labelloop.store.monitoring import (
    finish_run,
    last_runs_by_policy,
    open_alert,
    open_alerts,
    record_deliveries,
    record_values,
    resolve_alert,
    start_run,
    touch_alert,
)

log = logging.getLogger("labelloop.automate")
LEASE = "automation"


@dataclass
class CheckReport:
    """What one check saw and did."""

    values: dict[str, float | None] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    run_id: int | None = None
    status: str | None = None  # the run's: succeeded, failed; None when nothing was due
    outcome: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None  # why the check did nothing (the lease is held elsewhere)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Automation:
    """Checks for one project. Keeps the alert rules' breach streaks between checks."""

    def __init__(
        self,
        ctx: ProjectContext,
        *,
        registry: ProjectRegistry | None = None,
        holder: str | None = None,
        actions: Mapping[str, Action] | None = None,
        deliver_event: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.ctx = ctx
        self._registry = registry
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:automation"
        self.actions = dict(ACTIONS if actions is None else actions)
        self._deliver = deliver_event or (
            lambda event: deliver(event, ctx.config.monitoring.webhooks)
        )
        self.streaks: dict[str, int] = {}
        self.open_now = 0  # open alerts after the last check (for the metrics)

    @property
    def registry(self) -> ProjectRegistry:
        if self._registry is None:
            self._registry = open_registry(self.ctx)
        return self._registry

    def check(self, now: datetime | None = None) -> CheckReport:
        ctx = self.ctx
        report = CheckReport()
        token = acquire_lease(
            ctx.db, ctx.id, LEASE, self.holder, ctx.config.automation.run_timeout_seconds
        )
        if token is None:
            report.skipped = "another automation run holds the project's lease"
            return report
        try:
            self._check(report, now or utcnow())
        finally:
            release_lease(ctx.db, ctx.id, LEASE, self.holder, token)
        observe_check(
            ctx.config.name,
            report.values,
            len(report.opened),
            len(report.resolved),
            self.open_now,
            report.status,
        )
        return report

    def _check(self, report: CheckReport, now: datetime) -> None:
        ctx = self.ctx
        names = signal_source.needed_metrics(ctx)
        report.values = signal_source.collect(
            ctx, names, self.registry if "champion_accuracy" in names else None
        )
        record_values(ctx.db, ctx.id, report.values)
        self._alerts(report)
        states = {
            name: PolicyState(run["started_at"], run["human_labels"])
            for name, run in last_runs_by_policy(ctx.db, ctx.id).items()
        }
        labels = int(report.values.get("human_labels") or 0)
        signals = Signals(now, labels, report.values, set(report.opened))
        fired, reasons, actions = plan(ctx.config.automation.policies, signals, states)
        if not fired:
            return
        report.fired, report.actions = fired, actions
        self._run(report, fired, "; ".join(reasons), actions, labels)

    def _alerts(self, report: CheckReport) -> None:
        ctx = self.ctx
        current = open_alerts(ctx.db, ctx.id)
        self.open_now = len(current)
        changes, self.streaks = evaluate_alerts(
            ctx.config.monitoring.alerts, report.values, set(current), self.streaks
        )
        for change in changes:
            rule = change.rule
            if change.kind == "still":
                touch_alert(ctx.db, current[rule.name]["id"], change.value)
                continue
            if change.kind == "pending":
                continue
            if change.kind == "open":
                alert_id = open_alert(
                    ctx.db,
                    ctx.id,
                    rule=rule.name,
                    metric=rule.metric,
                    severity=rule.severity,
                    value=change.value,
                    bound=change.bound,
                    message=change.message,
                )
                report.opened.append(rule.name)
                self.open_now += 1
                event = "alert.opened"
            else:
                alert_id = current[rule.name]["id"]
                resolve_alert(ctx.db, alert_id, change.value)
                report.resolved.append(rule.name)
                self.open_now -= 1
                event = "alert.resolved"
            payload = {
                "event": event,
                "project": ctx.config.name,
                "rule": rule.name,
                "metric": rule.metric,
                "value": change.value,
                "bound": change.bound,
                "severity": rule.severity,
                "message": change.message,
                "at": utcnow().isoformat(),
            }
            try:
                record_deliveries(ctx.db, alert_id, self._deliver(payload))
            except Exception as exc:  # noqa: BLE001 - a delivery never stops the check
                log.warning("alert %s: delivery failed: %s", rule.name, exc)

    def _run(
        self, report: CheckReport, fired: list[str], trigger: str, actions: list[str], labels: int
    ) -> None:
        ctx = self.ctx
        started = utcnow()
        run_id = start_run(
            ctx.db,
            ctx.id,
            policies=fired,
            trigger=trigger,
            actions=actions,
            human_labels=labels,
            holder=self.holder,
        )
        report.run_id = run_id
        outcome: dict[str, Any] = {}
        error = None
        for name in actions:
            t0 = time.perf_counter()
            try:
                result = self.actions[name](ctx, self.registry)
            except Exception as exc:  # noqa: BLE001 - recorded with the run, which fails
                error = f"{name}: {type(exc).__name__}: {exc}"
                outcome[name] = {"summary": f"failed: {exc}", "seconds": time.perf_counter() - t0}
                log.error("automation run %s: %s\n%s", run_id, error, traceback.format_exc())
                break
            outcome[name] = {**_jsonable(result), "seconds": time.perf_counter() - t0}
        report.status = "failed" if error else "succeeded"
        report.outcome, report.error = outcome, error
        finish_run(
            ctx.db, run_id, status=report.status, outcome=outcome, error=error, started_at=started
        )

    def run_forever(
        self, *, interval: float | None = None, stop: Callable[[], bool] = lambda: False
    ) -> None:
        every = interval or self.ctx.config.automation.check_seconds
        while not stop():
            report = self.check()
            if report.fired or report.opened or report.resolved:
                log.info("automation check: %s", report.as_dict())
            deadline = time.monotonic() + every
            while time.monotonic() < deadline and not stop():
                time.sleep(min(1.0, every))


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
