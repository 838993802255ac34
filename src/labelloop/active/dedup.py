"""Near-duplicate groups: label one item, spread the label to its copies.

Items whose embeddings have cosine >= threshold are linked; groups are the connected components
(single linkage, so a chain of near copies forms one group). Similarities are computed tile by
tile; each tile's links are reduced to a spanning forest before they are kept, so memory stays
bounded by the tile size plus O(n) links even when many items are copies of one another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from labelloop.active.diversity import check_embeddings

UNLABELED = -1


def _spanning_forest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fewer edges with the same connected components: each node links to its component's root."""
    if len(a) == 0:
        return a, b
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    m = len(nodes)
    ia, ib = inverse[: len(a)], inverse[len(a) :]
    graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    root = np.full(comp.max() + 1, -1)
    # The first node of each component (in sorted order) is its root.
    first = np.unique(comp, return_index=True)[1]
    root[comp[first]] = first
    keep = np.arange(m) != root[comp]
    return nodes[keep], nodes[root[comp[keep]]]


def near_duplicate_groups(
    embeddings: np.ndarray,
    threshold: float = 0.95,
    block: int = 2048,
    max_edges: int = 2_000_000,
) -> np.ndarray:
    """Group id per item (0..g-1, numbered by first appearance); singletons get their own id."""
    x = check_embeddings(embeddings)
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: expected a cosine in [-1, 1]")
    if block < 1:
        raise ValueError(f"block={block}: expected >= 1")
    n = len(x)
    cut = threshold - 1e-6  # identical unit vectors can score 0.9999999 in float32
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    kept = 0
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        for c0 in range(r0, n, block):
            c1 = min(c0 + block, n)
            sims = x[r0:r1] @ x[c0:c1].T
            i, j = np.nonzero(sims >= cut)
            i, j = i + r0, j + c0
            upper = i < j
            a, b = _spanning_forest(i[upper], j[upper])
            src.append(a)
            dst.append(b)
            kept += len(a)
            if kept > max_edges:
                a, b = _spanning_forest(np.concatenate(src), np.concatenate(dst))
                src, dst, kept = [a], [b], len(a)
    a = np.concatenate(src) if src else np.zeros(0, dtype=np.int64)
    b = np.concatenate(dst) if dst else np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # Renumber by first appearance so group ids are stable and readable.
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first)
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return renumber[comp]


def representatives(groups: np.ndarray, priority: np.ndarray | None = None) -> np.ndarray:
    """One item index per group (indexed by group id): the member with the highest
    ``priority`` (e.g. density or an acquisition score), or the first member."""
    g = np.asarray(groups, dtype=np.int64)
    if g.ndim != 1:
        raise ValueError(f"groups: expected a 1-D array, got shape {g.shape}")
    n = len(g)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if priority is None:
        key = -np.arange(n, dtype=np.float64)
    else:
        key = np.asarray(priority, dtype=np.float64)
        if key.shape != (n,):
            raise ValueError(f"priority: expected {n} values, got shape {key.shape}")
    # Sort by (group, -key, index) and take the first row of each group.
    order = np.lexsort((np.arange(n), -key, g))
    firsts = np.r_[True, g[order][1:] != g[order][:-1]]
    reps = np.full(g.max() + 1, -1, dtype=np.int64)
    reps[g[order][firsts]] = order[firsts]
    return reps


def spread_labels(
    groups: np.ndarray,
    labeled_idx: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Give every member of a group the label its labeled members agree on.

    Returns (labels per item, with -1 where none is known; ids of groups left unlabeled because
    their labeled members disagree). Items labeled directly keep their own label.
    """
    g = np.asarray(groups, dtype=np.int64)
    idx = np.asarray(labeled_idx, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    if idx.shape != lab.shape or idx.ndim != 1:
        raise ValueError(f"labeled_idx, labels: shapes {idx.shape} and {lab.shape} differ")
    n = len(g)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"labeled_idx: indices must lie in [0, {n})")
    if lab.size and lab.min() < 0:
        raise ValueError("labels: expected label indices >= 0")
    n_groups = g.max() + 1 if n else 0
    group_label = np.full(n_groups, UNLABELED, dtype=np.int64)
    conflict = np.zeros(n_groups, dtype=bool)
    for i, y in zip(idx, lab, strict=True):
        gid = g[i]
        if group_label[gid] == UNLABELED:
            group_label[gid] = y
        elif group_label[gid] != y:
            conflict[gid] = True
    group_label[conflict] = UNLABELED
    out = group_label[g] if n else np.zeros(0, dtype=np.int64)
    out[idx] = lab
    return out, np.flatnonzero(conflict)
