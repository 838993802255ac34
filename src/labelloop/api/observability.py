"""The project gauges the review app's ``/metrics`` refreshes on each scrape (issue 15, item
3); request counts, latency and ids are ``serve.http_metrics``, shared with the prediction
app."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

from labelloop.serve.http_metrics import instrument
from labelloop.workers.metrics import observe_items

__all__ = ["instrument", "refresh_project_gauges"]

CHAMPION = Gauge(
    "labelloop_model_version",
    "The registered version an alias points at.",
    ["project", "model", "alias"],
)


def refresh_project_gauges(project: Any) -> None:
    """Items per state, and the versions the registry's aliases point at (only when the
    project has a registry already: a scrape never creates one)."""
    observe_items(project.db, project.id, project.config.name)
    if project._registry is None and not (project.folder / "mlflow.db").exists():
        return
    reg = project.registry
    for name in (reg.name, reg.student_name):
        for alias in ("champion", "challenger"):
            mv = reg.by_alias(alias, name)
            if mv is not None:
                CHAMPION.labels(project.config.name, name, alias).set(mv.version)
