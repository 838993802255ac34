"""Choose the student model by cross-validation on human labels, and decide champion vs challenger.

Scores. Every candidate is scored on the same stratified folds of the human-labeled items only
(machine suggestions never enter a score). The out-of-fold predictions of all folds are pooled
and scored once: macro-F1 first, log-loss (lower is better) to break ties. Pooling rather than
averaging per-fold F1 matters with many labels and few items: a 77-label fold of 200 items has
most labels two or three times, and its own macro-F1 is mostly noise.

Small labels. Stratified k-fold needs each label at least twice to both train and test on it:

- a label with one human-labeled item is *train-only*: it joins every training split and is
  never scored (a model cannot be judged on a label it had no example of);
- the number of folds is ``min(cv, largest label count)`` (at least 2); a label with fewer items
  than folds is spread over as many folds as it has items (scikit-learn's StratifiedKFold does
  this; its warning is silenced);
- candidates adapt to tiny training splits (the SVM calibrates on fewer inner folds, the MLP
  drops early stopping when a validation split cannot hold every label), so every candidate
  sees exactly the same folds.

Champion vs challenger. :func:`should_replace` compares two :class:`HeldOutScores` measured on
the *same* held-out items — the same CV folds (same items, same seed) or the same held-out split
(e.g. the newest human labels, which neither model was trained on). Scores carry a fingerprint
of the items and folds they came from, and comparing scores from different splits is an error.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

EPS = 1e-12

EstimatorFactory = Callable[[], BaseEstimator]


@contextmanager
def quiet_fit(threads: int | None = 1) -> Iterator[None]:
    """One BLAS/OpenMP thread (multi-threaded fits thrash on a small shared machine) and none of
    the warnings that are normal with few labels per class."""
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The number of unique classes")
        warnings.filterwarnings("ignore", message="The least populated class")
        warnings.filterwarnings("ignore", message=".*n_splits=.* is greater than")
        yield


# --- candidates -------------------------------------------------------------------------------


class CalibratedLinearSVM(ClassifierMixin, BaseEstimator):
    """LinearSVC with sigmoid-calibrated probabilities (CalibratedClassifierCV).

    The inner calibration folds shrink to the smallest label count of the training data (at
    least 2); labels with a single item are calibrated with the others (inner folds are then
    not stratified), so a tiny CV training split does not make the candidate fail.
    """

    def __init__(self, C: float = 1.0, inner_cv: int = 3, random_state: int = 0) -> None:
        self.C = C
        self.inner_cv = inner_cv
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> CalibratedLinearSVM:
        self.classes_, counts = np.unique(y, return_counts=True)
        svc = LinearSVC(C=self.C, random_state=self.random_state)
        folds = int(min(self.inner_cv, counts.min()))
        if folds >= 2:
            cv: object = folds
        else:
            from sklearn.model_selection import KFold

            cv = list(KFold(self.inner_cv, shuffle=True, random_state=0).split(X))
        self.model_ = CalibratedClassifierCV(svc, method="sigmoid", cv=cv).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        P = np.zeros((len(X), len(self.classes_)))
        pos = np.searchsorted(self.classes_, self.model_.classes_)
        P[:, pos] = self.model_.predict_proba(X)
        return P / np.maximum(P.sum(axis=1, keepdims=True), EPS)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class SmallMLP(ClassifierMixin, BaseEstimator):
    """One hidden layer (ReLU, Adam, L2 ``alpha``).

    ``early_stopping=True`` holds out 10% of the training data (stratified) and stops when its
    score stops improving; when that split is impossible (a label with one item, or fewer
    held-out items than labels) it falls back to stopping on the training loss.
    :func:`select_student` decides early stopping once from the *whole* labeled set (see
    :func:`mlp_early_stopping`) so that the model it cross-validates is the model it refits:
    deciding per split made the 800-label banking77 refit stop on a noisy 80-item validation
    split that the CV folds had never used (test macro-F1 0.69 against the CV-scored 0.85).
    """

    def __init__(
        self,
        hidden: int = 256,
        alpha: float = 1e-3,
        early_stopping: bool = False,
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> SmallMLP:
        self.classes_, counts = np.unique(y, return_counts=True)
        feasible = counts.min() >= 2 and int(0.1 * len(y)) >= len(self.classes_)
        self.model_ = MLPClassifier(
            hidden_layer_sizes=(self.hidden,),
            alpha=self.alpha,
            early_stopping=bool(self.early_stopping and feasible),
            validation_fraction=0.1,
            n_iter_no_change=10,
            max_iter=200,
            random_state=self.random_state,
        ).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)


def mlp_early_stopping(n_items: int, n_classes: int) -> bool:
    """Early stopping only when a 10% validation split holds ~3 items per label on average; on
    less it stops on noise (banking77, 77 labels: from about 2,300 labels up)."""
    return 0.1 * n_items >= 3 * n_classes


def default_candidates(
    seed: int = 0, n_items: int | None = None, n_classes: int | None = None
) -> dict[str, EstimatorFactory]:
    """The student zoo: name -> factory of an unfitted estimator. ``logreg`` is the default student
    (same settings as StudentLabeler: C=100 on L2-normalised embeddings). ``n_items`` and
    ``n_classes`` (of the whole labeled set) switch the MLP's early stopping on when it helps."""
    early = n_items is not None and n_classes is not None and mlp_early_stopping(n_items, n_classes)
    return {
        "logreg": lambda: LogisticRegression(C=100.0, max_iter=1000, random_state=seed),
        "linear_svm": lambda: CalibratedLinearSVM(C=1.0, random_state=seed),
        "random_forest": lambda: RandomForestClassifier(
            n_estimators=200, n_jobs=1, random_state=seed
        ),
        "mlp": lambda: SmallMLP(early_stopping=early, random_state=seed),
    }


# --- held-out scores --------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutScores:
    """A model's scores on held-out human labels, tied to the exact split they came from."""

    macro_f1: float
    log_loss: float
    n_scored: int
    split_id: str  # fingerprint of the scored items, their labels and the folds
    fold_macro_f1: tuple[float, ...] = field(default=())
    fold_log_loss: tuple[float, ...] = field(default=())

    @property
    def macro_f1_std(self) -> float:
        return float(np.std(self.fold_macro_f1)) if len(self.fold_macro_f1) > 1 else 0.0


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def check_single_label(X: np.ndarray, y: object) -> tuple[np.ndarray, np.ndarray]:
    """X as a float 2-D array and y as a 1-D array of labels; a clear error for multi-label y."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (items x embedding dims), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    if (
        isinstance(y, np.ndarray)
        and y.ndim == 2
        or (
            not isinstance(y, np.ndarray)
            and any(isinstance(v, (list, tuple, set, frozenset)) for v in y)  # type: ignore[union-attr]
        )
    ):
        raise ValueError(
            "multi-label targets are not supported by student selection (single-label only): "
            "y must hold one label per item"
        )
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (one label per item), got shape {y.shape}")
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if len(np.unique(y)) < 2:
        raise ValueError("need human labels of at least two different classes to compare models")
    return X, y


@dataclass(frozen=True)
class Folds:
    """The CV plan shared by every candidate: which items train and test in each fold."""

    splits: tuple[tuple[np.ndarray, np.ndarray], ...]
    scored: np.ndarray  # indices of items that are ever tested
    train_only_labels: tuple
    split_id: str

    @property
    def n_folds(self) -> int:
        return len(self.splits)


def make_folds(y: np.ndarray, cv: int = 5, seed: int = 0) -> Folds:
    """Stratified folds over the items; labels with one item are train-only (module docstring)."""
    if cv < 2:
        raise ValueError(f"cv must be at least 2, got {cv}")
    y = np.asarray(y)
    labels, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    single = counts[inverse] < 2
    scored = np.flatnonzero(~single)
    train_only = np.flatnonzero(single)
    if len(np.unique(y[scored])) < 2:
        raise ValueError(
            "need at least two labels with two or more human-labeled items each to cross-validate"
        )
    n_folds = int(max(2, min(cv, counts[counts >= 2].max())))
    skf = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    with quiet_fit(None):
        parts = list(skf.split(np.zeros(len(scored)), y[scored]))
    splits = tuple(
        (np.sort(np.concatenate([scored[tr], train_only])), scored[te]) for tr, te in parts
    )
    fold_of = np.full(len(y), -1)
    for f, (_, te) in enumerate(splits):
        fold_of[te] = f
    codes = inverse.astype(np.int64)
    return Folds(splits, scored, tuple(labels[counts < 2].tolist()), _fingerprint(codes, fold_of))


def _proba_in(model: BaseEstimator, X: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """predict_proba with one column per entry of ``classes`` (0 for labels the model lacks)."""
    raw = model.predict_proba(X)
    P = np.zeros((len(X), len(classes)))
    P[:, np.searchsorted(classes, model.classes_)] = raw
    return P


def _log_loss(P: np.ndarray, codes: np.ndarray) -> float:
    p = np.clip(P[np.arange(len(codes)), codes], EPS, 1.0)
    return float(-np.mean(np.log(p)))


def score_predictions(
    P: np.ndarray, y_true: np.ndarray, classes: np.ndarray, split_id: str, folds=None
) -> HeldOutScores:
    """Macro-F1 (over the labels present in ``y_true``) and log-loss of probabilities ``P``."""
    codes = np.searchsorted(classes, y_true)
    pred = P.argmax(axis=1)
    present = np.unique(codes)
    f1 = f1_score(codes, pred, labels=present, average="macro", zero_division=0)
    per_fold: tuple[float, ...] = ()
    per_fold_loss: tuple[float, ...] = ()
    if folds is not None:
        per_fold = tuple(
            float(
                f1_score(
                    codes[m], pred[m], labels=np.unique(codes[m]), average="macro", zero_division=0
                )
            )
            for m in folds
        )
        per_fold_loss = tuple(_log_loss(P[m], codes[m]) if np.any(m) else 0.0 for m in folds)
    return HeldOutScores(
        float(f1), _log_loss(P, codes), len(codes), split_id, per_fold, per_fold_loss
    )


def cross_val_scores(
    make: EstimatorFactory,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    threads: int | None = 1,
    score_mask: np.ndarray | None = None,
) -> HeldOutScores:
    """Pooled out-of-fold scores of one candidate on a shared fold plan (:func:`make_folds`).

    ``score_mask`` (one bool per item): score only those items' out-of-fold predictions, e.g.
    the human labels of a random sample of the pool; every item still trains."""
    X, y = check_single_label(X, y)
    if max(int(te.max()) for _, te in folds.splits) >= len(y):
        raise ValueError(f"folds were made for more items than the {len(y)} given")
    classes = np.unique(y)
    oof = np.zeros((len(y), len(classes)))
    with quiet_fit(threads):
        for train, test in folds.splits:
            model = make().fit(X[train], y[train])
            oof[test] = _proba_in(model, X[test], classes)
    s = folds.scored
    if score_mask is not None:
        s = s[_check_mask(score_mask, len(y))[s]]
    pos = np.full(len(y), -1)
    pos[s] = np.arange(len(s))
    fold_masks = [pos[test] for _, test in folds.splits]
    masks = [np.isin(np.arange(len(s)), m) for m in fold_masks]
    split_id = _fingerprint(
        np.frombuffer(folds.split_id.encode(), np.uint8), X.astype(np.float32), s
    )
    return score_predictions(oof[s], y[s], classes, split_id, masks)


def _usable_mask(
    score_mask: np.ndarray | None, y: np.ndarray, folds: Folds, min_scored: int
) -> np.ndarray | None:
    """``score_mask`` checked, or None when it marks fewer than ``min_scored`` scorable items
    of two labels (too few sampled labels to score on: all labels are scored instead)."""
    if score_mask is None:
        return None
    mask = _check_mask(score_mask, len(y))
    sampled = folds.scored[mask[folds.scored]]
    if len(sampled) < min_scored or len(np.unique(y[sampled])) < 2:
        return None
    return mask


def _check_mask(mask: np.ndarray, n: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(f"score_mask must be {n} booleans (one per item), got {mask.shape}")
    return mask


def paired_log_loss_gain(a: HeldOutScores, b: HeldOutScores) -> tuple[float, float]:
    """How much lower ``b``'s log-loss is than ``a``'s on the same folds, and its standard
    error from the paired fold differences (0 when there are no per-fold scores)."""
    if a.split_id != b.split_id:
        raise ValueError("the two scores come from different splits; compare like with like")
    return _log_loss_gain(a, b)


def _log_loss_gain(a: HeldOutScores, b: HeldOutScores) -> tuple[float, float]:
    """``paired_log_loss_gain`` for scores known to share their folds (two views of the same
    items on the same folds differ in ``split_id``, which fingerprints the features too)."""
    gain = float(a.log_loss - b.log_loss)
    diffs = np.subtract(a.fold_log_loss, b.fold_log_loss)
    if len(diffs) < 2:
        return gain, 0.0
    return gain, float(np.std(diffs, ddof=1) / np.sqrt(len(diffs)))


def holdout_scores(
    model: BaseEstimator, X_holdout: np.ndarray, y_holdout: np.ndarray
) -> HeldOutScores:
    """Scores of an already-trained model on held-out human labels it was not trained on.

    Typical use: hold out the newest human labels; score the current model (trained before they
    arrived) and a challenger trained on everything else on them; then :func:`should_replace`.
    """
    X_holdout, y_holdout = check_single_label(X_holdout, y_holdout)
    classes = np.unique(np.concatenate([np.asarray(model.classes_), y_holdout]))
    with quiet_fit(1):
        P = _proba_in(model, X_holdout, classes)
    split_id = _fingerprint(X_holdout.astype(np.float32), np.searchsorted(classes, y_holdout))
    return score_predictions(P, y_holdout, classes, split_id)


def should_replace(
    current: HeldOutScores, challenger: HeldOutScores, min_gain: float = 0.0
) -> bool:
    """True only if the challenger beats the current model on the same held-out human labels.

    The challenger wins if its macro-F1 exceeds the current one by more than ``min_gain``; when
    the two macro-F1 are equal (within 1e-9) and ``min_gain`` is 0, a lower log-loss wins. Set
    ``min_gain`` to about the fold-to-fold spread (``macro_f1_std / sqrt(n_folds)``) to avoid
    swapping models on noise. Scores from different splits raise ValueError.

    Two fair ways to get the scores:

    - same CV folds (compares model kinds/settings, both retrained per fold)::

        folds = make_folds(y_human, cv=5, seed=0)
        cur = cross_val_scores(make_current, X_human, y_human, folds)
        new = cross_val_scores(make_challenger, X_human, y_human, folds)

    - newest labels held out (compares the trained models themselves): the current model was
      trained before those labels arrived; train the challenger on the older labels only, score
      both with :func:`holdout_scores` on the newest ones, and refit the winner on everything.
    """
    if min_gain < 0:
        raise ValueError(f"min_gain must be >= 0, got {min_gain}")
    if current.split_id != challenger.split_id:
        raise ValueError(
            "current and challenger were scored on different held-out items "
            f"({current.split_id} vs {challenger.split_id}); score both on the same split"
        )
    gain = challenger.macro_f1 - current.macro_f1
    if abs(gain) <= 1e-9:
        return min_gain == 0 and challenger.log_loss < current.log_loss - 1e-9
    return gain > min_gain


# --- the features a student reads ----------------------------------------------------------


@dataclass(frozen=True)
class ViewChoice:
    """Which of two feature views of the same items the student does better on."""

    chosen: str
    scores: dict[str, HeldOutScores]
    gain: float  # log-loss of the current view minus the best other's (< 0: the other is worse)
    gain_needed: float  # min_gain_se standard errors of the paired fold differences
    scored_on: str

    def as_dict(self) -> dict[str, object]:
        return {
            "chosen": self.chosen,
            "log_loss": {k: v.log_loss for k, v in self.scores.items()},
            "macro_f1": {k: v.macro_f1 for k, v in self.scores.items()},
            "n_scored": next(iter(self.scores.values())).n_scored,
            "gain": self.gain,
            "gain_needed": self.gain_needed,
            "scored_on": self.scored_on,
        }


def compare_views(
    views: Mapping[str, np.ndarray],
    y: object,
    current: str,
    make: EstimatorFactory | None = None,
    cv: int = 5,
    seed: int = 0,
    score_mask: np.ndarray | None = None,
    min_scored: int = 30,
    min_gain_se: float = 1.0,
) -> ViewChoice:
    """The same student on two (or more) views of the same human-labeled items, on shared CV
    folds; the current view stays unless another's held-out log-loss is lower by more than
    ``min_gain_se`` standard errors of the paired fold differences.

    Log-loss, not macro-F1, because the router's thresholds read the student's probabilities.
    ``score_mask`` as in :func:`select_student` (the calibration sample's labels, when it
    holds ``min_scored`` scorable items). Used by ``embedding.char_ngrams: auto`` to decide
    whether hashed character n-grams join the sentence vectors
    (``bench/bench_char_ngrams.py --choose``)."""
    if current not in views:
        raise ValueError(f"current view {current!r} is not among {sorted(views)}")
    y = np.asarray(y)
    X0, y = check_single_label(views[current], y)
    make = make or default_candidates(seed)["logreg"]
    folds = make_folds(y, cv, seed)
    mask = _usable_mask(score_mask, y, folds, min_scored)
    scores = {
        name: cross_val_scores(make, X0 if name == current else X, y, folds, score_mask=mask)
        for name, X in views.items()
    }
    other = min((n for n in scores if n != current), key=lambda n: scores[n].log_loss)
    gain, se = _log_loss_gain(scores[current], scores[other])  # shared folds: paired
    needed = min_gain_se * se
    scored_on = "random sample" if mask is not None else "all human labels"
    return ViewChoice(other if gain > needed else current, scores, gain, needed, scored_on)


# --- selection --------------------------------------------------------------------------------


@dataclass
class Selection:
    """The chosen student (refit on all human labels) and how every candidate scored."""

    name: str
    estimator: BaseEstimator
    table: pd.DataFrame  # one row per candidate, best first
    scores: dict[str, HeldOutScores]
    seconds: dict[str, float]  # CV + (for the winner) refit time per candidate
    folds: Folds


def select_student(
    X: np.ndarray,
    y: object,
    candidates: Mapping[str, EstimatorFactory | BaseEstimator] | None = None,
    cv: int = 5,
    seed: int = 0,
    threads: int | None = 1,
    score_mask: np.ndarray | None = None,
    default: str | None = "logreg",
    min_scored: int = 30,
) -> Selection:
    """Compare candidate students by stratified CV on human labels; refit the best on all of them.

    ``candidates`` maps a name to a factory (or an unfitted estimator, cloned per fold); default
    :func:`default_candidates`. Ranking: log-loss (lower), then macro-F1 (higher). Log-loss,
    because the router's thresholds and the ensemble read the student's probabilities. Ranked
    by macro-F1, a switch to an MLP left the machines 0.73 of youtube_spam's pool (0.91 without
    it), and in the demo one to a linear SVM (macro-F1 0.952 against 0.895, log-loss 0.080
    against 0.054) took back 2,989 machine labels (docs/benchmarks.md, issue 10).

    Actively chosen labels are the hardest items, not a sample of the pool, so a score over
    them can favour a model that is worse on the pool (issue 10: an MLP won on them at 150
    classes and active learning fell to random). ``score_mask`` marks the human labels of a
    random sample of the pool: when it holds ``min_scored`` or more scorable items, every
    candidate is scored on those alone (still trained on all). And ``default`` (the champion)
    stays unless the best's log-loss is lower by more than one standard error of the paired
    fold differences: a switch needs evidence, not noise.

    >>> sel = select_student(X_human, y_human)
    >>> sel.table                      # candidate, macro_f1, log_loss, seconds, ...
    >>> sel.estimator.predict_proba(X_pool)
    """
    X, y = check_single_label(X, y)
    if candidates is None:
        candidates = default_candidates(seed, len(y), len(np.unique(y)))
    cands = dict(candidates)
    if not cands:
        raise ValueError("candidates is empty: give at least one model to compare")
    makers: dict[str, EstimatorFactory] = {
        name: (lambda c=c: clone(c)) if isinstance(c, BaseEstimator) else c
        for name, c in cands.items()
    }
    folds = make_folds(y, cv, seed)
    mask = _usable_mask(score_mask, y, folds, min_scored)
    scores: dict[str, HeldOutScores] = {}
    seconds: dict[str, float] = {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        scores[name] = cross_val_scores(make, X, y, folds, threads, score_mask=mask)
        seconds[name] = time.perf_counter() - t0
    order = sorted(makers, key=lambda n: (scores[n].log_loss, -scores[n].macro_f1))
    best = order[0]
    margin = {n: 0.0 for n in order}
    if default in scores and best != default:
        for n in order:
            margin[n] = paired_log_loss_gain(scores[default], scores[n])[1]
        if paired_log_loss_gain(scores[default], scores[best])[0] <= margin[best]:
            best = default  # not clearly better than the champion
    order = [best] + [n for n in order if n != best]
    t0 = time.perf_counter()
    with quiet_fit(threads):
        estimator = makers[best]().fit(X, y)
    refit = time.perf_counter() - t0
    seconds[best] += refit
    table = pd.DataFrame(
        [
            {
                "candidate": n,
                "macro_f1": scores[n].macro_f1,
                "macro_f1_fold_std": scores[n].macro_f1_std,
                "log_loss": scores[n].log_loss,
                "seconds": seconds[n],
                "n_folds": folds.n_folds,
                "n_scored": scores[n].n_scored,
                "scored_on": "random sample" if mask is not None else "all human labels",
                "gain_needed": margin[n],
                "chosen": n == best,
            }
            for n in order
        ]
    )
    return Selection(best, estimator, table, scores, seconds, folds)
