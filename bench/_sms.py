"""The SMS project the bulk and stream benchmarks label with (bench_bulk.py, bench_stream.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path
from labelloop.project import Project


def sms_project(folder: Path, **fields: Any) -> tuple[Project, pd.DataFrame]:
    """An SMS spam project with 120 human labels (zero-shot + student ensemble, calibrator,
    thresholds: the default labelers route) from 300 messages, and the messages it was not
    given. ``fields`` go to ``Project.init`` (``storage=...``)."""
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    spam, ham = df[df.label == "spam"], df[df.label == "ham"]
    train = pd.concat([spam.head(60), ham.head(240)]).sample(frac=1.0, random_state=0)
    rest = df[~df.text.isin(set(train.text))]
    train.to_csv(folder / "train.csv", index=False)
    p = Project.init(
        folder / "p",
        name="sms",
        labels=[{"name": k, "description": v} for k, v in SMS_SPAM_LABELS.items()],
        label_field="label",
        **fields,
    )
    p.ingest(folder / "train.csv")
    p.suggest()
    p.route()
    gold = dict(zip(train.text, train.label, strict=True))
    for _ in range(120):
        item = p.next_item("sim")
        p.submit(item["id"], [gold[item["content"]]], annotator="sim")
    return p, rest
