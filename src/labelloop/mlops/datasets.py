"""Versioned snapshots of the final labels with stable train / validation / test splits.

- The version is content-addressed: a hash of the sorted (content hash, labels) pairs, so the
  same labels give the same version whatever their order or item ids.
- An item's split comes from a keyed hash of its content hash alone, so it never changes as
  labels are added. The hash is uniform and independent of the label, so every label gets the
  same shares in expectation (stratified approximately: a label with n items puts about
  n * test_share of them in test).
- The test split holds human (and imported) labels only: a machine or propagated label whose
  hash falls in validation or test goes to train, so the score on test is against people.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from labelloop.core.errors import LabelloopError
from labelloop.store.context import ProjectContext
from labelloop.store.reads import final_labels_frame

HUMAN_KINDS = ("human", "import")
SPLIT_KEY = "labelloop-split-v1"  # changing it reshuffles every split: never, once shipped
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Dataset:
    """One snapshot: a row per labeled item (item_id, content_hash, content, label,
    source_kind, split), its version and where it is saved (None until saved)."""

    frame: pd.DataFrame
    version: str
    path: Path | None = None

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} (one of {', '.join(SPLITS)})")
        return self.frame[self.frame["split"] == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Items per split and label."""
        return {
            s: {
                str(k): int(v)
                for k, v in self.split(s)["label"].value_counts().sort_index().items()
            }
            for s in SPLITS
        }


def dataset_version(content_hashes: Sequence[str], labels: Sequence[str]) -> str:
    """Content-addressed version: sha256 of the sorted (content hash, label) pairs, 12 hex."""
    pairs = sorted(zip(content_hashes, labels, strict=True))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:12]


def _unit(content_hash: str, key: str = SPLIT_KEY) -> float:
    digest = hashlib.blake2b(content_hash.encode(), key=key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(
    content_hash: str,
    source_kind: str,
    *,
    test_share: float = 0.2,
    validation_share: float = 0.1,
) -> str:
    """train, validation or test for one item: a function of its content hash (and whether a
    person labeled it) only, so it never moves as other labels arrive."""
    u = _unit(content_hash)
    if source_kind not in HUMAN_KINDS:
        return "train"
    if u < test_share:
        return "test"
    if u < test_share + validation_share:
        return "validation"
    return "train"


def labels_frame(
    final_labels: pd.DataFrame, *, test_share: float = 0.2, validation_share: float = 0.1
) -> pd.DataFrame:
    """A snapshot's rows from ``final_labels`` (Project.final_labels()'s columns): single-label
    items only, one ``label`` each, with their split; ordered by content hash."""
    df = final_labels[["item_id", "content_hash", "content", "labels", "source_kind"]].copy()
    n_labels = df["labels"].map(len)
    if (n_labels > 1).any():
        raise LabelloopError(
            f"{int((n_labels > 1).sum())} final labels hold more than one label: training a "
            "deployed model supports single-label projects only"
        )
    df = df[n_labels == 1]
    df["label"] = df["labels"].map(lambda ls: str(ls[0]))
    df["split"] = [
        assign_split(h, k, test_share=test_share, validation_share=validation_share)
        for h, k in zip(df["content_hash"], df["source_kind"], strict=True)
    ]
    df = df.drop(columns="labels").sort_values("content_hash", kind="stable")
    return df.reset_index(drop=True)


def snapshot(ctx: ProjectContext, *, save: bool = True) -> Dataset:
    """The project's final labels as a versioned dataset, saved as Parquet under
    ``datasets/<version>/labels.parquet`` in the project folder (unless ``save=False``)."""
    cfg = ctx.config.model
    df = labels_frame(
        final_labels_frame(ctx.db, ctx.id),
        test_share=cfg.test_share,
        validation_share=cfg.validation_share,
    )
    if df.empty:
        raise LabelloopError(f"project {ctx.config.name!r} has no final labels to train on")
    version = dataset_version(df["content_hash"].tolist(), df["label"].tolist())
    if not save:
        return Dataset(df, version)
    folder = Path(ctx.folder) / "datasets" / version
    path = folder / "labels.parquet"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "labels.parquet.tmp"
        df.to_parquet(tmp, index=False)
        tmp.replace(path)
    return Dataset(df, version, path)


def load(folder: str | Path, version: str) -> Dataset:
    """A saved snapshot, by version, from a project folder."""
    path = Path(folder) / "datasets" / version / "labels.parquet"
    if not path.exists():
        raise LabelloopError(f"no dataset {version!r} at {path}")
    return Dataset(pd.read_parquet(path), version, path)
