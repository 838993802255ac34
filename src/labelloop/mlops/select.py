"""Model selection: candidates, K-fold cross-validation, Optuna tuning, the winner.

Every candidate is the preparation pipeline followed by one estimator, scored by stratified
K-fold cross-validation (plain K-fold for regression) on the primary metric. With a trial budget,
Optuna (TPE) then tunes the best candidates until ``budget_seconds`` (counted from the start,
defaults included) or the trials are spent; the winner is the
highest cross-validated score of all, default or tuned. Arrays and frames in, estimators out:
no store, no files.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from threadpoolctl import threadpool_limits

from labelloop.core.progress import Progress

# Metric name (config) -> scikit-learn scorer; regression scorers are negated (higher is better).
SCORERS = {
    "macro_f1": "f1_macro",
    "accuracy": "accuracy",
    "precision": "precision_macro",
    "recall": "recall_macro",
    "roc_auc": "roc_auc_ovr",
    "mae": "neg_mean_absolute_error",
    "rmse": "neg_root_mean_squared_error",
    "r2": "r2",
}
CLASSIFIERS = ("logistic", "tree", "forest", "svm", "mlp", "boosting")
REGRESSORS = ("linear", "tree", "forest", "svm", "mlp", "boosting")
SVM_MAX_ROWS = 20_000  # kernel SVMs grow with rows squared; above this they are left out


def make_estimator(name: str, task: str, params: Mapping[str, Any] | None = None, seed: int = 0):
    """One candidate estimator with its defaults, overridden by ``params``."""
    p = dict(params or {})
    if task == "classification":
        makers: dict[str, Callable[[], Any]] = {
            "logistic": lambda: LogisticRegression(max_iter=2000, **p),
            "tree": lambda: DecisionTreeClassifier(random_state=seed, **p),
            "forest": lambda: RandomForestClassifier(
                n_estimators=p.pop("n_estimators", 200), random_state=seed, n_jobs=1, **p
            ),
            "svm": lambda: SVC(random_state=seed, **p),
            "mlp": lambda: MLPClassifier(
                hidden_layer_sizes=(p.pop("width", 64),),
                max_iter=300,
                early_stopping=True,
                random_state=seed,
                **p,
            ),
            "boosting": lambda: HistGradientBoostingClassifier(random_state=seed, **p),
        }
    else:
        makers = {
            "linear": lambda: Ridge(**p) if p else LinearRegression(),
            "tree": lambda: DecisionTreeRegressor(random_state=seed, **p),
            "forest": lambda: RandomForestRegressor(
                n_estimators=p.pop("n_estimators", 200), random_state=seed, n_jobs=1, **p
            ),
            "svm": lambda: SVR(**p),
            "mlp": lambda: MLPRegressor(
                hidden_layer_sizes=(p.pop("width", 64),),
                max_iter=300,
                early_stopping=True,
                random_state=seed,
                **p,
            ),
            "boosting": lambda: HistGradientBoostingRegressor(random_state=seed, **p),
        }
    if name not in makers:
        raise ValueError(f"unknown {task} candidate {name!r} (one of {', '.join(makers)})")
    return makers[name]()


def search_space(trial: Any, name: str, task: str) -> dict[str, Any]:
    """An Optuna trial's parameters for a candidate (named ``<candidate>.<param>`` in the
    study, so candidates sharing a parameter name keep their own ranges)."""
    if name in ("logistic", "linear"):
        strength = trial.suggest_float(f"{name}.C", 1e-3, 1e2, log=True)
        return {"C": strength} if task == "classification" else {"alpha": 1.0 / strength}
    if name == "tree":
        return {
            "max_depth": trial.suggest_int(f"{name}.max_depth", 2, 20),
            "min_samples_leaf": trial.suggest_int(f"{name}.min_samples_leaf", 1, 20),
        }
    if name == "forest":
        return {
            "n_estimators": trial.suggest_int(f"{name}.n_estimators", 50, 300, step=50),
            "max_depth": trial.suggest_int(f"{name}.max_depth", 3, 30),
            "max_features": trial.suggest_float(f"{name}.max_features", 0.1, 1.0),
        }
    if name == "svm":
        return {
            "C": trial.suggest_float(f"{name}.C", 1e-2, 1e2, log=True),
            "gamma": trial.suggest_float(f"{name}.gamma", 1e-4, 1.0, log=True),
        }
    if name == "mlp":
        return {
            "width": trial.suggest_int(f"{name}.width", 16, 256, log=True),
            "alpha": trial.suggest_float(f"{name}.alpha", 1e-6, 1e-1, log=True),
            "learning_rate_init": trial.suggest_float(
                f"{name}.learning_rate_init", 1e-4, 1e-2, log=True
            ),
        }
    if name == "boosting":
        return {
            "learning_rate": trial.suggest_float(f"{name}.learning_rate", 0.01, 0.3, log=True),
            "max_leaf_nodes": trial.suggest_int(f"{name}.max_leaf_nodes", 8, 64, log=True),
            "l2_regularization": trial.suggest_float(
                f"{name}.l2_regularization", 1e-6, 10.0, log=True
            ),
        }
    raise ValueError(f"no search space for {name!r}")


@dataclass
class Trial:
    candidate: str
    params: dict[str, Any]
    score: float  # mean cross-validated primary metric (higher is better)
    std: float
    seconds: float


@dataclass
class Selection:
    """Every scored trial, the winner's candidate and parameters, and its score."""

    metric: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        return max(self.trials, key=lambda t: t.score)

    def by_candidate(self) -> dict[str, float]:
        """Each candidate's best cross-validated score."""
        out: dict[str, float] = {}
        for t in self.trials:
            out[t.candidate] = max(out.get(t.candidate, -np.inf), t.score)
        return out


def cv_score(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    metric: str,
    task: str,
    folds: int,
    seed: int,
) -> tuple[float, float]:
    """Mean and spread of the primary metric over K folds."""
    if task == "classification":
        smallest = int(pd.Series(y).value_counts().min())
        k = max(2, min(folds, smallest))
        splitter: Any = StratifiedKFold(k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(
            pipeline, X, y, cv=splitter, scoring=SCORERS[metric], error_score="raise"
        )
    return float(np.mean(scores)), float(np.std(scores))


def select_model(
    prepare: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    task: str = "classification",
    metric: str = "macro_f1",
    candidates: Sequence[str] | None = None,
    folds: int = 5,
    trials: int = 0,
    budget_seconds: float = 60.0,
    tune_top: int = 2,
    seed: int = 0,
    threads: int | None = 1,
    progress: Progress | None = None,
) -> Selection:
    """Cross-validate every candidate with its defaults, then (``trials`` > 0) tune the
    ``tune_top`` best with Optuna until ``trials`` trials or ``budget_seconds`` are spent.

    ``threads`` caps BLAS and OpenMP threads (None: the libraries' defaults). One by default:
    measured on a shared 2-core machine, gradient boosting on 8,000 rows fitted in 1.1 s with
    one thread and 2.7 s with the default two (oversubscribed).
    """
    with threadpool_limits(threads):
        return _select(
            prepare,
            X,
            y,
            task,
            metric,
            candidates,
            folds,
            trials,
            budget_seconds,
            tune_top,
            seed,
            progress,
        )


def _select(
    prepare: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    task: str,
    metric: str,
    candidates: Sequence[str] | None,
    folds: int,
    trials: int,
    budget_seconds: float,
    tune_top: int,
    seed: int,
    progress: Progress | None,
) -> Selection:
    if metric not in SCORERS:
        raise ValueError(f"unknown metric {metric!r} (one of {', '.join(SCORERS)})")
    names = list(candidates or (CLASSIFIERS if task == "classification" else REGRESSORS))
    if len(X) > SVM_MAX_ROWS and "svm" in names and candidates is None:
        names.remove("svm")
    selection = Selection(metric)
    total = len(names) + trials
    deadline = time.perf_counter() + budget_seconds  # defaults always run; tuning gets the rest
    for i, name in enumerate(names):
        start = time.perf_counter()
        pipe = Pipeline(
            [("prepare", clone(prepare)), ("model", make_estimator(name, task, seed=seed))]
        )
        mean, std = cv_score(pipe, X, y, metric=metric, task=task, folds=folds, seed=seed)
        selection.trials.append(Trial(name, {}, mean, std, time.perf_counter() - start))
        if progress:
            progress(i + 1, total)
    if trials > 0:
        _tune(
            selection,
            prepare,
            X,
            y,
            task,
            metric,
            folds,
            trials,
            deadline,
            tune_top,
            seed,
            progress,
            len(names),
            total,
        )
    return selection


def _tune(
    selection: Selection,
    prepare: Pipeline,
    X: pd.DataFrame,
    y: np.ndarray,
    task: str,
    metric: str,
    folds: int,
    trials: int,
    deadline: float,
    tune_top: int,
    seed: int,
    progress: Progress | None,
    done: int,
    total: int,
) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ranked = sorted(selection.by_candidate().items(), key=lambda kv: -kv[1])
    top = [name for name, _ in ranked[:tune_top]]
    # The preparation is refitted inside every fold of every trial, so nothing of a held-out
    # fold (its medians, fences, scales) leaks into what it is scored on.
    count = [done]

    def objective(trial: Any) -> float:
        name = trial.suggest_categorical("candidate", top)
        params = search_space(trial, name, task)
        start = time.perf_counter()
        pipe = Pipeline(
            [("prepare", clone(prepare)), ("model", make_estimator(name, task, params, seed))]
        )
        mean, std = cv_score(pipe, X, y, metric=metric, task=task, folds=folds, seed=seed)
        selection.trials.append(Trial(name, params, mean, std, time.perf_counter() - start))
        count[0] += 1
        if progress:
            progress(count[0], total)
        return mean

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        study.optimize(objective, n_trials=trials, timeout=remaining)
