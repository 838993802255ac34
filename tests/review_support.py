"""A review project with the banking77 taxonomy (77 labels), for the review-page tests and the
keystroke benchmark. The data is a small sample shipped under ``tests/data/banking77`` (CC BY
4.0, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from labelloop.auth import create_user
from labelloop.core.types import Suggestion
from labelloop.project import Project
from labelloop.store.labels import add_suggestions

BANKING77 = Path(__file__).parent / "data" / "banking77"
PASSWORD = "s3cret-pass"
# A few labels carry a description and guidelines, as a project file would give them.
DESCRIPTIONS = {
    "card_arrival": ("The customer's new card has not arrived yet.", "Not for a lost card."),
    "request_refund": ("The customer asks for their money back for a purchase.", ""),
    "terminate_account": ("The customer wants to close their account for good.", ""),
}


def banking77_labels() -> list[str]:
    return json.loads((BANKING77 / "categories.json").read_text())


def banking77_project(
    folder: Path, storage: str, *, n_items: int = 80, seed: int = 0, reviewer: str = "rita"
) -> tuple[Project, list[int]]:
    """A project with the 77 banking intents, ``n_items`` queued items (in id order) each with
    machine suggestions (an ensemble over all labels, a student, a zero-shot and an LLM), and
    ``reviewer`` as a reviewer with ``PASSWORD``."""
    names = banking77_labels()
    labels = [
        {"name": n, "description": DESCRIPTIONS.get(n, ("", ""))[0]}
        | ({"guidelines": DESCRIPTIONS[n][1]} if DESCRIPTIONS.get(n, ("", ""))[1] else {})
        for n in names
    ]
    p = Project.init(folder, name="banking77", labels=labels, storage=storage)
    sample = pd.read_csv(BANKING77 / "sample.csv")
    texts = [f"{sample['text'][i % len(sample)]} (#{i})" for i in range(n_items)]
    csv = folder / "queries.csv"
    pd.DataFrame({"text": texts}).to_csv(csv, index=False)
    p.ingest(csv)
    ids = sorted(int(i) for i in p.items()["id"])
    p.enqueue(ids, [float(n_items - k) for k in range(n_items)])
    rng = np.random.default_rng(seed)
    rows = []
    for item_id in ids:
        probs = rng.dirichlet(np.full(len(names), 0.3))
        ens = {n: float(v) for n, v in zip(names, probs, strict=True)}
        top = max(ens, key=ens.__getitem__)
        other = names[int(rng.integers(len(names)))]
        rows += [
            Suggestion(
                item_id,
                "h",
                "ensemble",
                "pool.v0(zeroshot=1.00@desc+proto/minilm/n0/t0.05)",
                ens,
                ens[top],
            ),
            Suggestion(
                item_id, "h", "student", "logreg.v1/minilm/n40", {top: 0.6, other: 0.4}, 0.6
            ),
            Suggestion(
                item_id, "h", "zeroshot", "desc+proto/minilm/n0/t0.05", {other: 0.5, top: 0.5}, 0.5
            ),
            Suggestion(
                item_id, "h", "llm:SmolLM2-135M-Instruct-Q8_0", "p1", {other: 0.9, top: 0.1}, 0.9
            ),
        ]
    with p.db.engine.begin() as conn:
        add_suggestions(conn, rows)
    create_user(p.db, reviewer, "reviewer", PASSWORD)
    return p, ids
