"""Aggregate several annotators' answers into one label per item.

Two methods: majority vote (ties broken deterministically and flagged) and Dawid-Skene (1979),
which estimates each annotator's confusion matrix by EM and weighs their votes accordingly, so
a careful annotator outvotes two careless ones. Dawid-Skene is written here in numpy (about
fifty lines); crowd-kit (Apache-2.0) has one too but pulls transformers and nltk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from labelloop.quality.annotations import EncodedAnnotations, encode_annotations

TieBreak = Literal["prevalence", "first"]


def majority_vote_counts(
    counts: np.ndarray, tie_break: TieBreak = "prevalence"
) -> tuple[np.ndarray, np.ndarray]:
    """Winning label index per row of an items x labels count matrix, and a tie flag.

    Ties go to the label with the most votes over the whole table (``"prevalence"``), then to
    the earlier label; ``"first"`` goes straight to the earlier label. Rows without votes get
    label -1 and no tie flag.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(f"majority_vote_counts: expected a 2-D count matrix, got {counts.shape}")
    if tie_break == "prevalence":
        # Rank labels by overall frequency; a stable sort keeps the earlier label first on ties.
        rank = np.empty(counts.shape[1], dtype=np.int64)
        rank[np.argsort(-counts.sum(axis=0), kind="stable")] = np.arange(counts.shape[1])
    elif tie_break == "first":
        rank = np.arange(counts.shape[1])
    else:
        raise ValueError(
            f"majority_vote_counts: tie_break must be 'prevalence' or 'first', got {tie_break!r}"
        )
    top = counts.max(axis=1, keepdims=True)
    is_top = (counts == top) & (top > 0)
    tied = is_top.sum(axis=1) > 1
    # Among the top labels, pick the best-ranked one.
    ranked = np.where(is_top, rank[None, :], counts.shape[1])
    winner = ranked.argmin(axis=1)
    winner[top[:, 0] == 0] = -1
    return winner, tied


def majority_vote(
    df: pd.DataFrame,
    item_col: str = "item_id",
    annotator_col: str = "annotator_id",
    label_col: str = "label",
    labels: Sequence[Any] | None = None,
    tie_break: TieBreak = "prevalence",
) -> pd.DataFrame:
    """Majority label per item from a long table (item, annotator, label).

    Returns a table indexed by item with ``label``, ``n_votes``, ``support`` (share of votes
    for the winner) and ``tied`` (the winner came from the tie-break rule).
    """
    enc = encode_annotations(df, item_col, annotator_col, label_col, labels)
    counts = enc.count_matrix()
    winner, tied = majority_vote_counts(counts, tie_break)
    n_votes = counts.sum(axis=1)
    return pd.DataFrame(
        {
            "label": enc.labels[winner],
            "n_votes": n_votes,
            "support": counts[np.arange(len(counts)), winner] / n_votes,
            "tied": tied,
        },
        index=pd.Index(enc.items, name=item_col),
    )


@dataclass(frozen=True, slots=True)
class DawidSkeneResult:
    """Arrays from :func:`dawid_skene`.

    ``posteriors[i, k]``: probability that item i's true class is k. ``confusion[a, k, l]``:
    probability that annotator a answers l when the true class is k. ``accuracy[a]``: expected
    share of annotator a's answers that match the true class, over the items they labelled.
    """

    posteriors: np.ndarray
    priors: np.ndarray
    confusion: np.ndarray
    accuracy: np.ndarray
    n_annotations: np.ndarray
    log_likelihood: float
    n_iter: int
    converged: bool


def dawid_skene(
    item_idx: np.ndarray,
    annotator_idx: np.ndarray,
    label_idx: np.ndarray,
    n_items: int | None = None,
    n_annotators: int | None = None,
    n_classes: int | None = None,
    smoothing: float = 0.1,
    tol: float = 1e-5,
    max_iter: int = 500,
) -> DawidSkeneResult:
    """Dawid-Skene EM over parallel arrays of integer codes (one entry per annotation).

    Starts from the vote shares (soft majority vote), then alternates the M-step (class priors
    and per-annotator confusion matrices, each cell with ``smoothing`` pseudo-counts so an
    annotator who never saw a class gets a flat row instead of a zero) and the E-step (item
    posteriors). Stops when no posterior moves by more than ``tol`` or after ``max_iter``.
    """
    item_idx = np.asarray(item_idx, dtype=np.int64)
    annotator_idx = np.asarray(annotator_idx, dtype=np.int64)
    label_idx = np.asarray(label_idx, dtype=np.int64)
    if not (item_idx.shape == annotator_idx.shape == label_idx.shape) or item_idx.ndim != 1:
        raise ValueError(
            "dawid_skene: item_idx, annotator_idx and label_idx must be 1-D and the same length, "
            f"got {item_idx.shape}, {annotator_idx.shape}, {label_idx.shape}"
        )
    if len(item_idx) == 0:
        raise ValueError("dawid_skene: no annotations")
    for name, arr in (
        ("item_idx", item_idx),
        ("annotator_idx", annotator_idx),
        ("label_idx", label_idx),
    ):
        if arr.min() < 0:
            raise ValueError(f"dawid_skene: {name} has negative codes")
    if smoothing < 0:
        raise ValueError(f"dawid_skene: smoothing must be >= 0, got {smoothing}")
    n_i = int(n_items if n_items is not None else item_idx.max() + 1)
    n_a = int(n_annotators if n_annotators is not None else annotator_idx.max() + 1)
    k = int(n_classes if n_classes is not None else label_idx.max() + 1)
    if item_idx.max() >= n_i or annotator_idx.max() >= n_a or label_idx.max() >= k:
        raise ValueError("dawid_skene: a code is out of range of n_items/n_annotators/n_classes")

    counts = np.zeros((n_i, k))
    np.add.at(counts, (item_idx, label_idx), 1.0)
    n_votes = counts.sum(axis=1, keepdims=True)
    if np.any(n_votes == 0):
        raise ValueError("dawid_skene: some items have no annotations")
    post = counts / n_votes
    cell = annotator_idx * k + label_idx  # (annotator, given label) cell of each annotation

    log_likelihood = -np.inf
    converged = False
    n_iter = 0
    for iteration in range(1, max_iter + 1):
        n_iter = iteration
        # M-step.
        priors = (post.sum(axis=0) + smoothing) / (n_i + k * smoothing)
        weights = post[item_idx]  # (n_obs, k): responsibility of each true class
        conf = (
            np.stack(
                [np.bincount(cell, weights=weights[:, t], minlength=n_a * k) for t in range(k)]
            )
            .reshape(k, n_a, k)
            .transpose(1, 0, 2)
            + smoothing
        )  # [annotator, true, given]
        conf /= conf.sum(axis=2, keepdims=True)
        # E-step.
        log_conf = np.log(np.maximum(conf, 1e-300))
        obs_terms = log_conf[annotator_idx, :, label_idx]  # (n_obs, k)
        log_post = np.log(priors)[None, :] + np.stack(
            [np.bincount(item_idx, weights=obs_terms[:, t], minlength=n_i) for t in range(k)],
            axis=1,
        )
        top = log_post.max(axis=1, keepdims=True)
        norm = top + np.log(np.exp(log_post - top).sum(axis=1, keepdims=True))
        new_post = np.exp(log_post - norm)
        log_likelihood = float(norm.sum())
        delta = float(np.abs(new_post - post).max())
        post = new_post
        if delta < tol:
            converged = True
            break

    n_annotations = np.bincount(annotator_idx, minlength=n_a)
    hit = np.bincount(annotator_idx, weights=post[item_idx, label_idx], minlength=n_a)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n_annotations > 0, hit / np.maximum(n_annotations, 1), np.nan)
    return DawidSkeneResult(
        posteriors=post,
        priors=priors,
        confusion=conf,
        accuracy=accuracy,
        n_annotations=n_annotations,
        log_likelihood=log_likelihood,
        n_iter=n_iter,
        converged=converged,
    )


@dataclass(frozen=True, slots=True)
class Aggregation:
    """Tables from :func:`aggregate_dawid_skene`.

    ``items``: indexed by item, with ``label``, ``confidence`` (posterior of that label),
    ``n_votes`` and one ``p_<label>`` column per label. ``annotators``: indexed by annotator,
    with ``n_annotations``, ``accuracy`` and ``recall_<label>`` (the confusion diagonal).
    """

    items: pd.DataFrame
    annotators: pd.DataFrame
    result: DawidSkeneResult
    encoded: EncodedAnnotations


def aggregate_dawid_skene(
    df: pd.DataFrame,
    item_col: str = "item_id",
    annotator_col: str = "annotator_id",
    label_col: str = "label",
    labels: Sequence[Any] | None = None,
    smoothing: float = 0.1,
    tol: float = 1e-5,
    max_iter: int = 500,
) -> Aggregation:
    """Dawid-Skene labels and annotator quality from a long table (item, annotator, label)."""
    enc = encode_annotations(df, item_col, annotator_col, label_col, labels)
    res = dawid_skene(
        enc.item_idx,
        enc.annotator_idx,
        enc.label_idx,
        enc.n_items,
        enc.n_annotators,
        enc.n_labels,
        smoothing=smoothing,
        tol=tol,
        max_iter=max_iter,
    )
    best = res.posteriors.argmax(axis=1)
    items = pd.DataFrame(
        {
            "label": enc.labels[best],
            "confidence": res.posteriors[np.arange(enc.n_items), best],
            "n_votes": np.bincount(enc.item_idx, minlength=enc.n_items),
        },
        index=pd.Index(enc.items, name=item_col),
    )
    for j, name in enumerate(enc.labels):
        items[f"p_{name}"] = res.posteriors[:, j]
    annotators = pd.DataFrame(
        {"n_annotations": res.n_annotations, "accuracy": res.accuracy},
        index=pd.Index(enc.annotators, name=annotator_col),
    )
    for j, name in enumerate(enc.labels):
        annotators[f"recall_{name}"] = res.confusion[:, j, j]
    return Aggregation(items=items, annotators=annotators, result=res, encoded=enc)
