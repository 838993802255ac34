"""The models the prediction app serves: the registry's champion and challenger, loaded once
and swapped in when an alias moves.

Reload: a thread asks the registry every ``poll_seconds`` (default 5) which versions the
aliases point at and loads a changed one beside the old, then swaps the reference, so requests
never wait on a load and never see half a model. ``refresh()`` does the same at once (the
app's ``POST /reload``). A registry that does not answer keeps the loaded models serving; the
error shows in ``GET /models`` and, until a champion was ever loaded, in ``GET /ready``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from labelloop.mlops.predictor import Predictor
from labelloop.store.models import utcnow

if TYPE_CHECKING:
    from labelloop.store.context import ProjectContext

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
POLL_SECONDS = 5.0


class VersionLike(Protocol):
    """What the app needs of a registry's ``ModelVersion``."""

    name: str
    version: int
    path: Path


Resolve = Callable[[str], VersionLike | None]


@dataclass(frozen=True)
class Loaded:
    """One alias's model, ready to answer."""

    alias: str
    name: str
    version: int
    path: Path
    predictor: Predictor
    loaded_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "name": self.name,
            "version": self.version,
            "task": self.predictor.task,
            "classes": self.predictor.classes,
            "columns": self.predictor.columns if self.predictor.featurizer == "table" else [],
            "featurizer": self.predictor.featurizer,
            "loaded_at": self.loaded_at.isoformat(),
        }


def model_name_of(ctx: ProjectContext) -> str:
    """The registered model's name (``model.registry_name``, else the project's name)."""
    from labelloop.registry.mlflow_registry import model_name

    return model_name(ctx.config.name, ctx.config.model.registry_name)


def registry_resolver(ctx: ProjectContext) -> Resolve:
    """``alias -> ModelVersion | None`` from the project's registry (opened on first use, so
    the app starts, unready, while the registry cannot be reached)."""
    registry: Any = None

    def resolve(alias: str) -> VersionLike | None:
        nonlocal registry
        if registry is None:
            from labelloop.registry import open_registry

            registry = open_registry(ctx)
        return registry.by_alias(alias)

    return resolve


def registry_version(
    ctx: ProjectContext, *, alias: str | None = None, version: int | None = None
) -> VersionLike:
    """The registered version ``version``, or the one ``alias`` points at (default champion)."""
    from labelloop.registry import open_registry

    return open_registry(ctx).resolve(version=version, alias=alias)


class ModelService:
    """The champion and challenger (``None`` while no version holds the alias)."""

    def __init__(self, resolve: Resolve, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.resolve = resolve
        self.poll_seconds = poll_seconds
        self.models: dict[str, Loaded | None] = {CHAMPION: None, CHALLENGER: None}
        self.last_error: str | None = None
        self.last_refresh: datetime | None = None
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._start_lock = threading.Lock()

    @property
    def champion(self) -> Loaded | None:
        return self.models[CHAMPION]

    @property
    def challenger(self) -> Loaded | None:
        return self.models[CHALLENGER]

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """Load what the aliases point at now, then poll in a thread."""
        with self._start_lock:
            if self._started:
                return
            self.refresh()
            if self.poll_seconds > 0:
                self._thread = threading.Thread(target=self._poll, name="model-reload", daemon=True)
                self._thread.start()
            self._started = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def refresh(self) -> list[str]:
        """Re-resolve both aliases; load what changed. Returns what changed, as
        ``"champion: 3 -> 4"`` lines."""
        changes: list[str] = []
        with self._lock:
            try:
                for alias in (CHAMPION, CHALLENGER):
                    found = self.resolve(alias)
                    now = self.models[alias]
                    if found is None:
                        if now is not None:
                            changes.append(f"{alias}: {now.version} -> none")
                            self.models[alias] = None
                        continue
                    if now is not None and (now.name, now.version, now.path) == (
                        found.name,
                        int(found.version),
                        Path(found.path),
                    ):
                        continue
                    loaded = Loaded(
                        alias,
                        found.name,
                        int(found.version),
                        Path(found.path),
                        Predictor.load(found.path),
                        utcnow(),
                    )
                    self.models[alias] = loaded  # one reference swap: requests see old or new
                    changes.append(f"{alias}: {now.version if now else 'none'} -> {loaded.version}")
                self.last_error = None
            except Exception as exc:  # keep serving what is loaded
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model reload failed: %s", self.last_error)
            self.last_refresh = utcnow()
        for line in changes:
            log.info("serving %s", line)
        return changes

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()


def records(frame: pd.DataFrame, classes: list[str]) -> list[dict[str, Any]]:
    """``predict_frame``'s output as one JSON object per row: ``label``, ``confidence`` and
    ``probabilities`` (class -> p), or ``value`` for regression. Plain floats, no numpy."""
    if "value" in frame.columns:
        return [{"value": v} for v in frame["value"].tolist()]
    # Column by column: selecting the p_ columns as a frame costs more than the rest of the
    # request's own work (profiled).
    probs = [frame[f"p_{c}"].tolist() for c in classes]
    return [
        {"label": label, "confidence": conf, "probabilities": dict(zip(classes, p, strict=True))}
        for label, conf, *p in zip(
            frame["label"].tolist(), frame["confidence"].tolist(), *probs, strict=True
        )
    ]


def timed_predict(loaded: Loaded, rows: Any) -> tuple[pd.DataFrame, float]:
    """``predict_frame(rows)`` and the milliseconds it took."""
    start = time.perf_counter()
    frame = loaded.predictor.predict_frame(rows)
    return frame, (time.perf_counter() - start) * 1000
