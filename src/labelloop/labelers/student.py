"""The student: a small scikit-learn classifier trained on human labels over item embeddings.

Incremental updates — why refit by default. ``partial_fit`` keeps every labeled vector it has
been given and refits a LogisticRegression from scratch. At human labeling rates (hundreds to a
few tens of thousands of labels, 384-d vectors) a refit takes milliseconds to a second, gives
the same model whatever order labels came in, and is far better calibrated on small data than
stochastic gradient descent, whose probabilities swing with the learning rate and the order of
updates — and the router's thresholds rely on those probabilities. ``incremental="sgd"`` switches
to ``SGDClassifier(loss="log_loss").partial_fit`` with every taxonomy label declared up front,
for streams too large to keep; it forgets nothing it was not shown but is noisier.

Probabilities always come back in the taxonomy's label order. A label no human has used yet gets
probability 0 (single-label rows still sum to 1); with no labels, or only one label seen, the
student answers with the smoothed label frequencies (uniform when nothing is known).

Threads: BLAS/OpenMP in ``fit`` are limited to ``threads`` (default 1) with threadpoolctl. On a
small machine shared by other processes, multi-threaded fitting spun instead of working: one
banking77 fit (770 labels, 77 classes) took 28 s with the default threads, 1.2 s with one.

Regularisation: ``C=100`` by default. Embeddings are unit vectors with small coordinates, so
scikit-learn's ``C=1`` shrinks the model to near the prior (sms_spam, 100 labels: accuracy 0.90
at C=1 vs 0.97 at C=100; banking77, 770 labels: 0.61 vs 0.81, ECE 0.46 vs 0.07).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import ThreadpoolController, threadpool_limits

from labelloop.core.config import TaskType
from labelloop.core.probs import (
    as_task,
    check_label_names,
    encode_labels,
    is_multi_label,
    normalize_rows,
    suggest_with_embedder,
)
from labelloop.core.types import Item, Suggestion
from labelloop.embed.base import Embedder
from labelloop.labelers.base import ProbaSuggestions
from labelloop.labelers.zeroshot import check_vectors


@contextmanager
def _quiet_fit(threads: int | None) -> Iterator[None]:
    """Few threads, and none of scikit-learn's warnings that do not apply here.

    ("The number of unique classes is greater than 50% of the number of samples" is normal when
    a 77-label taxonomy has 154 human labels.)
    """
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        # A chosen MLP stops at its iteration cap by design (scored by CV, not by convergence).
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The number of unique classes")
        warnings.filterwarnings("ignore", message="Label .* is present in all")
        warnings.filterwarnings("ignore", message="Label not .* present")
        yield


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The process's BLAS/OpenMP pools, found once: ``threadpool_limits`` scans the loaded
    libraries on every call (about 6 ms), most of a small stream batch's non-embedding time."""
    return ThreadpoolController()


def _sgd(random_state: int) -> SGDClassifier:
    return SGDClassifier(loss="log_loss", alpha=1e-4, random_state=random_state)


class _PerLabelSGD:
    """One binary SGD logistic model per label, updated incrementally (multi-label streams).

    scikit-learn's OneVsRestClassifier.partial_fit does not take multi-label targets.
    """

    def __init__(self, n_labels: int, random_state: int) -> None:
        self.models = [_sgd(random_state) for _ in range(n_labels)]

    def partial_fit(self, X: np.ndarray, Y: np.ndarray, classes: np.ndarray) -> None:
        for j, model in enumerate(self.models):
            model.partial_fit(X, Y[:, j], classes=np.array([0, 1]))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([m.predict_proba(X)[:, 1] for m in self.models])


class StudentLabeler(ProbaSuggestions):
    """Logistic regression (one-vs-rest for multi-label) on embeddings, retrained as labels arrive.

    >>> st = StudentLabeler(config.label_names, config.task, embedder=MiniLMEmbedder())
    >>> st.fit(X_labeled, y_labeled)     # or st.partial_fit(X_new, y_new) as labels arrive
    >>> st.predict_proba(X)              # (n, K), taxonomy order
    """

    labeler_id = "student"

    def __init__(
        self,
        label_names: Sequence[str],
        task: TaskType | str = TaskType.single_label,
        embedder: Embedder | None = None,
        C: float = 100.0,
        incremental: Literal["refit", "sgd"] = "refit",
        random_state: int = 0,
        threads: int | None = 1,
        algorithm: str = "logreg",
        estimator_factory: Callable[[], Any] | None = None,
    ) -> None:
        """``algorithm``/``estimator_factory``: another single-label classifier (for example
        the winner of ``labelloop.learn.select_student``); default logistic regression."""
        if incremental not in ("refit", "sgd"):
            raise ValueError(f"incremental must be 'refit' or 'sgd', got {incremental!r}")
        if C <= 0:
            raise ValueError(f"C must be positive, got {C}")
        self.label_names = check_label_names(label_names)
        self.task = as_task(task)
        self.embedder = embedder
        self.C = float(C)
        self.incremental = incremental
        self.random_state = random_state
        self.threads = threads
        self.algorithm = algorithm
        self.estimator_factory = estimator_factory
        self.n_fits = 0
        self.model: object | None = None
        self._seen: np.ndarray = np.zeros(0, dtype=np.int64)  # class indices the model knows
        self._prior = self._uniform_prior()
        self._X: np.ndarray | None = None
        self._Y: np.ndarray | None = None

    @property
    def n_labels(self) -> int:
        """How many labeled items the current model was trained on."""
        return 0 if self._Y is None else len(self._Y)

    @property
    def version(self) -> str:
        emb = self.embedder.model_id if self.embedder is not None else "vectors"
        return f"{self.incremental}-{self.algorithm}.v{self.n_fits}/{emb}/n{self.n_labels}"

    def _uniform_prior(self) -> np.ndarray:
        k = len(self.label_names)
        return np.full(k, 0.5 if is_multi_label(self.task) else 1.0 / k)

    def _check_xy(self, X: np.ndarray, y: Sequence) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (items x embedding dims), got shape {X.shape}")
        X = check_vectors(X, X.shape[1])
        Y = encode_labels(y, self.label_names, self.task)
        if len(Y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(Y)}")
        if self._X is not None and X.shape[1] != self._X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} columns, the student was fit on {self._X.shape[1]}"
            )
        return X, Y

    # --- training ---------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: Sequence) -> StudentLabeler:
        """Train from scratch on all of ``(X, y)``; label names per row (lists for multi-label)."""
        X, Y = self._check_xy(X, y)
        self._X, self._Y = X, Y
        self.model = None
        with _quiet_fit(self.threads):
            self._train(X, Y, first=True)
        return self

    def partial_fit(self, X: np.ndarray, y: Sequence) -> StudentLabeler:
        """Add newly labeled items and update the model (the module docstring explains how)."""
        X, Y = self._check_xy(X, y)
        if self._X is None or self._Y is None:
            return self.fit(X, Y)
        if self.incremental == "refit":
            return self.fit(np.vstack([self._X, X]), np.concatenate([self._Y, Y]))
        self._X, self._Y = np.vstack([self._X, X]), np.concatenate([self._Y, Y])
        with _quiet_fit(self.threads):
            self._train(X, Y, first=False)
        return self

    def _train(self, X: np.ndarray, Y: np.ndarray, first: bool) -> None:
        k = len(self.label_names)
        multi = Y.ndim == 2
        counts = Y.sum(axis=0) if multi else np.bincount(Y, minlength=k)
        total = self._Y.sum(axis=0) if multi else np.bincount(self._Y, minlength=k)
        n = len(self._Y)
        if multi:
            self._prior = (total + 0.5) / (n + 1.0)
        else:
            self._prior = (total + 1.0) / (n + k)
        self.n_fits += 1
        if self.incremental == "sgd":
            self._train_sgd(X, Y, first or self.model is None)
            return
        if multi:
            if not (counts > 0).any():
                self.model = None
                return
            self.model = OneVsRestClassifier(LogisticRegression(C=self.C, max_iter=1000))
            self.model.fit(X, Y)
            self._seen = np.arange(k)
            return
        seen = np.flatnonzero(counts)
        if len(seen) < 2:
            self.model = None  # nothing to discriminate yet: answer with the prior
            self._seen = seen
            return
        if self.estimator_factory is not None:
            self.model = self.estimator_factory()
        else:
            self.model = LogisticRegression(C=self.C, max_iter=1000, random_state=self.random_state)
        self.model.fit(X, Y)
        self._seen = self.model.classes_.astype(np.int64)

    def _train_sgd(self, X: np.ndarray, Y: np.ndarray, first: bool) -> None:
        k = len(self.label_names)
        if first:
            self.model = (
                _PerLabelSGD(k, self.random_state) if Y.ndim == 2 else _sgd(self.random_state)
            )
        self.model.partial_fit(X, Y, classes=np.arange(k))
        self._seen = np.arange(k)

    # --- prediction -------------------------------------------------------------------------

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, K) probabilities in taxonomy order; unseen labels get 0 once a model exists."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (items x embedding dims), got shape {X.shape}")
        if self._X is not None:
            X = check_vectors(X, self._X.shape[1])
        k = len(self.label_names)
        if self.model is None:
            return np.tile(self._prior, (len(X), 1))
        with _threadpools().limit(limits=self.threads):
            raw = self.model.predict_proba(X)
        if is_multi_label(self.task):
            return np.clip(raw, 0.0, 1.0)
        P = np.zeros((len(X), k))
        P[:, self._seen] = raw
        return normalize_rows(P)

    def out_of_fold_proba(
        self, X: np.ndarray, y: Sequence, n_splits: int = 5, keep: list | None = None
    ) -> np.ndarray:
        """Cross-validated probabilities for labeled items: what a fresh student would say.

        Use these (not ``predict_proba`` on the training items) to learn ensemble weights or to
        calibrate, or the student looks better than it is. Leaves this student untouched.
        ``keep``: a list the fold students are appended to (to score other items on the same
        scale as these probabilities).
        """
        X, Y = self._check_xy(X, y)
        n_splits = max(2, min(n_splits, len(X)))
        counts = np.bincount(Y) if Y.ndim == 1 else np.zeros(0)
        if Y.ndim == 1 and counts[counts > 0].min() >= n_splits:
            folds = StratifiedKFold(n_splits, shuffle=True, random_state=self.random_state)
        else:
            folds = KFold(n_splits, shuffle=True, random_state=self.random_state)
        out = np.zeros((len(X), len(self.label_names)))
        for train, test in folds.split(X, Y if Y.ndim == 1 else None):
            fold = StudentLabeler(
                self.label_names,
                self.task,
                None,
                self.C,
                "refit",
                self.random_state,
                self.threads,
                algorithm=self.algorithm,
                estimator_factory=self.estimator_factory,
            )
            out[test] = fold.fit(X[train], Y[train]).predict_proba(X[test])
            if keep is not None:
                fold._X = None  # it only scores: its training vectors would be stored with it
                keep.append(fold)
        return out

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        if self.embedder is None:
            raise ValueError(
                "StudentLabeler.suggest needs an embedder; pass embedder=... or use predict_proba"
            )
        return suggest_with_embedder(self, items)
