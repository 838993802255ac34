"""The project gauges the review app's ``/metrics`` refreshes on each scrape (issue 15, item
3); request counts, latency and ids are ``serve.http_metrics``, shared with the prediction
app."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

from labelloop.serve.http_metrics import instrument

__all__ = ["instrument", "refresh_project_gauges"]

ITEMS = Gauge("labelloop_items", "Items per state.", ["project", "state"])
CHAMPION = Gauge(
    "labelloop_model_version",
    "The registered version an alias points at.",
    ["project", "model", "alias"],
)


def refresh_project_gauges(project: Any) -> None:
    """Items per state, and the versions the registry's aliases point at (only when the
    project has a registry already: a scrape never creates one)."""
    from labelloop.store.items import counts_by_state

    with project.db.engine.connect() as conn:
        states = counts_by_state(conn, project.id)
    for state, n in states.items():
        ITEMS.labels(project.config.name, state).set(n)
    if project._registry is None and not (project.folder / "mlflow.db").exists():
        return
    reg = project.registry
    for name in (reg.name, reg.student_name):
        for alias in ("champion", "challenger"):
            mv = reg.by_alias(alias, name)
            if mv is not None:
                CHAMPION.labels(project.config.name, name, alias).set(mv.version)
