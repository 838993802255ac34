"""Representativeness and diversity over L2-normalised embeddings.

- ``density``: mean cosine to the k nearest neighbours (high = a typical item of a dense region).
- ``k_center_greedy``: a batch that covers the pool (each pick is the item farthest from
  everything picked or labeled so far), optionally restricted to the top-m uncertain items.
- ``typiclust_cold_start``: TypiClust (Hacohen et al., 2022) for the first labels: cluster
  the pool into (labeled + batch) clusters and label the most typical item of each of the
  largest clusters that hold no label yet. FIELD-NOTES: it beat random and margin below ~200
  labels; plain k-means with k = batch size kept returning to the same dense regions.

Cosines are computed in blocks so memory stays O(block * n).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans


def check_embeddings(embeddings: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Return a float32 (n, d) array with unit rows (renormalised), or raise ValueError."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (items, dim) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{name}: non-finite value in row {bad}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name}: row {int(np.argmax(norms.ravel() == 0))} is all zeros")
    return x / norms


def _blocks(n: int, block: int) -> Iterator[slice]:
    for start in range(0, n, block):
        yield slice(start, min(start + block, n))


def _index_array(idx: Sequence[int] | np.ndarray | None, n: int, name: str) -> np.ndarray:
    if idx is None:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(idx, dtype=np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"{name}: indices must lie in [0, {n})")
    return arr


def density(embeddings: np.ndarray, k: int = 10, block: int = 1024) -> np.ndarray:
    """Mean cosine similarity of each item to its k nearest neighbours (itself excluded)."""
    x = check_embeddings(embeddings)
    n = len(x)
    if n < 2:
        return np.zeros(n)
    k = max(1, min(k, n - 1))
    out = np.empty(n)
    for rows in _blocks(n, block):
        sims = x[rows] @ x.T
        sims[np.arange(sims.shape[0]), np.arange(rows.start, rows.stop)] = -np.inf
        top = np.partition(sims, -k, axis=1)[:, -k:]
        out[rows] = top.mean(axis=1)
    return out


def k_center_greedy(
    embeddings: np.ndarray,
    batch_size: int,
    labeled: Sequence[int] | np.ndarray | None = None,
    candidates: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Pick ``batch_size`` candidate indices, each the farthest (cosine distance) from every
    labeled or already-picked item. With nothing labeled, the first pick is random (seeded)."""
    x = check_embeddings(embeddings)
    n = len(x)
    cand = np.arange(n) if candidates is None else _index_array(candidates, n, "candidates")
    lab = _index_array(labeled, n, "labeled")
    cand = np.setdiff1d(cand, lab)
    if batch_size < 0:
        raise ValueError(f"batch_size={batch_size}: expected >= 0")
    batch_size = min(batch_size, len(cand))
    if batch_size == 0:
        return np.zeros(0, dtype=np.int64)
    xc = x[cand]
    min_dist = np.full(len(cand), np.inf)
    for rows in _blocks(len(lab), 1024):
        sims = xc @ x[lab[rows]].T
        min_dist = np.minimum(min_dist, 1.0 - sims.max(axis=1))
    picked: list[int] = []
    if len(lab) == 0:
        first = int(np.random.default_rng(seed).integers(len(cand)))
    else:
        first = int(np.argmax(min_dist))
    nxt = first
    for _ in range(batch_size):
        picked.append(nxt)
        min_dist = np.minimum(min_dist, 1.0 - xc @ xc[nxt])
        min_dist[picked] = -np.inf
        nxt = int(np.argmax(min_dist))
    return cand[np.asarray(picked, dtype=np.int64)]


def uncertain_k_center(
    embeddings: np.ndarray,
    uncertainty: np.ndarray,
    batch_size: int,
    top_m: int,
    labeled: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """k-center greedy over the ``top_m`` most uncertain unlabeled items."""
    x = check_embeddings(embeddings)
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.shape != (len(x),):
        raise ValueError(f"uncertainty: expected {len(x)} scores, got shape {u.shape}")
    lab = _index_array(labeled, len(x), "labeled")
    pool = np.setdiff1d(np.arange(len(x)), lab)
    top = pool[np.argsort(-u[pool], kind="stable")[: max(top_m, batch_size)]]
    return k_center_greedy(x, batch_size, labeled=lab, candidates=top, seed=seed)


def _typicality(x: np.ndarray, k: int) -> np.ndarray:
    """1 / mean cosine distance to the k nearest neighbours within ``x``."""
    n = len(x)
    if n == 1:
        return np.ones(1)
    k = min(k, n - 1)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    top = np.partition(sims, -k, axis=1)[:, -k:]
    return 1.0 / (np.mean(1.0 - top, axis=1) + 1e-8)


def typiclust_cold_start(
    embeddings: np.ndarray,
    batch_size: int,
    labeled: Sequence[int] | np.ndarray | None = None,
    max_clusters: int = 500,
    k_typical: int = 20,
    max_cluster_sample: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """TypiClust: pick the most typical item of the largest clusters that hold no label.

    The pool is clustered into min(labeled + batch_size, max_clusters) clusters (k-means;
    mini-batch k-means above 20,000 items). Typicality is computed within each cluster on at
    most ``max_cluster_sample`` of its items. When fewer clusters are free than the batch needs,
    the remaining picks come from the largest clusters again, most typical unpicked item first.
    """
    x = check_embeddings(embeddings)
    n = len(x)
    lab = _index_array(labeled, n, "labeled")
    if batch_size < 0:
        raise ValueError(f"batch_size={batch_size}: expected >= 0")
    available = n - len(np.unique(lab))
    batch_size = min(batch_size, available)
    if batch_size == 0:
        return np.zeros(0, dtype=np.int64)
    n_clusters = int(min(len(lab) + batch_size, max_clusters, n))
    if n > 20_000:
        km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=n_clusters, random_state=seed, n_init=1)
    assign = km.fit_predict(x)
    sizes = np.bincount(assign, minlength=n_clusters)
    has_label = np.zeros(n_clusters, dtype=bool)
    has_label[assign[lab]] = True
    taken = np.zeros(n, dtype=bool)
    taken[lab] = True
    rng = np.random.default_rng(seed)
    # Free clusters first (largest first), then labeled ones (largest first).
    order = sorted(range(n_clusters), key=lambda c: (has_label[c], -sizes[c]))
    picks: list[int] = []
    while len(picks) < batch_size:
        progressed = False
        for c in order:
            if len(picks) == batch_size:
                break
            members = np.flatnonzero((assign == c) & ~taken)
            if len(members) == 0:
                continue
            sample = members
            if len(members) > max_cluster_sample:
                sample = rng.choice(members, max_cluster_sample, replace=False)
            best = int(sample[np.argmax(_typicality(x[sample], k_typical))])
            picks.append(best)
            taken[best] = True
            progressed = True
        if not progressed:
            break
    return np.asarray(picks, dtype=np.int64)
