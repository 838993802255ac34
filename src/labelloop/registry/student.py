"""The annotation loop's student in the same registry as the deployed model.

Each retrain that trained new labelers stores them in the project's store (``model_versions``,
what the loop serves from); ``register_student`` also logs that version to MLflow as a run
(held-out scores, algorithm, labels) and registers it under ``<model name>-student`` with the
alias ``champion``: the loop serves the newest set, so the newest is the champion. The
history records each one. ``student_hook`` is what ``FeedbackLoop(on_retrain=...)`` takes, so
the annotate stage does not import the registry.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelloop.registry.base import CHAMPION, ModelVersion
from labelloop.registry.lifecycle import ProjectRegistry, open_registry
from labelloop.store.context import ProjectContext
from labelloop.store.loop_state import model_version_by_id
from labelloop.store.model_history import append_history

log = logging.getLogger(__name__)
STUDENT_FILE = "labelers.joblib"


def register_student(reg: ProjectRegistry, report: Any) -> ModelVersion | None:
    """Register the labelers a retrain stored (``report``: its RetrainReport); None when the
    retrain reused a stored set (nothing new to register)."""
    if not getattr(report, "trained", False) or report.model_version_id is None:
        return None
    stored = model_version_by_id(reg.ctx.db, report.model_version_id, with_model=True)
    if stored is None or stored.model is None:
        return None
    metrics = {
        k: float(v)
        for k, v in stored.metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    metrics["n_labels"] = float(stored.n_labels)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / STUDENT_FILE).write_bytes(stored.model)
        (folder / "metrics.json").write_text(json.dumps(stored.metrics, default=str, indent=2))
        mv = reg.registry.register(
            reg.student_name,
            folder,
            params={"algorithm": stored.algorithm, "n_labels": stored.n_labels},
            metrics=metrics,
            tags={"loop_version": stored.version, "model_versions_id": str(stored.id)},
            pyfunc=False,
        )
    previous = reg.registry.by_alias(reg.student_name, CHAMPION)
    reg.registry.set_alias(reg.student_name, CHAMPION, mv.version)
    append_history(
        reg.ctx.db,
        reg.ctx.id,
        reg.student_name,
        "register",
        alias=CHAMPION,
        version=mv.version,
        previous_version=previous.version if previous else None,
        reason=f"loop retrain on {stored.n_labels} human labels ({stored.algorithm}); "
        "the loop serves the newest student",
        details={"loop_version": stored.version, "metrics": metrics},
    )
    return mv


def student_hook(reg: ProjectRegistry) -> Callable[[Any], None]:
    """A retrain callback registering each new student; a registry failure is logged, never
    raised: the loop goes on with the student it stored."""

    def hook(report: Any) -> None:
        try:
            register_student(reg, report)
        except Exception as exc:  # noqa: BLE001 - the loop must not stop for the registry
            log.warning("could not register the student in the model registry: %s", exc)

    return hook


def student_registration(ctx: ProjectContext) -> Callable[[Any], None] | None:
    """The retrain hook for ``ctx`` (None when ``model.register_student`` is off), the
    registry opened on the first retrain that trained something."""
    if not ctx.config.model.register_student:
        return None
    opened: list[Callable[[Any], None]] = []

    def on_retrain(report: Any) -> None:
        if not getattr(report, "trained", False):
            return
        if not opened:
            try:
                opened.append(student_hook(open_registry(ctx)))
            except Exception as exc:  # noqa: BLE001 - the loop must not stop for the registry
                log.warning("could not open the model registry: %s", exc)
                return
        opened[0](report)

    return on_retrain
