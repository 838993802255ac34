"""Prometheus metrics of the monitor and the automation (the default registry, what the web
app's ``/metrics`` and ``labelloop automate --metrics-port`` serve)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

MONITORED = Gauge(
    "labelloop_monitor_value", "The latest value of each monitored metric.", ["project", "metric"]
)
ALERTS_OPEN = Gauge("labelloop_alerts_open", "Open alerts.", ["project"])
ALERT_CHANGES = Counter(
    "labelloop_alert_changes", "Alerts opened and resolved.", ["project", "change"]
)
RUNS = Counter("labelloop_automation_runs", "Automation runs by status.", ["project", "status"])


def observe_check(
    project: str,
    values: Mapping[str, float | None],
    opened: int,
    resolved: int,
    open_now: int,
    status: str | None,
) -> None:
    for name, value in values.items():
        if value is not None:
            MONITORED.labels(project=project, metric=name).set(value)
    ALERTS_OPEN.labels(project=project).set(open_now)
    if opened:
        ALERT_CHANGES.labels(project=project, change="opened").inc(opened)
    if resolved:
        ALERT_CHANGES.labels(project=project, change="resolved").inc(resolved)
    if status is not None:
        RUNS.labels(project=project, status=status).inc()
