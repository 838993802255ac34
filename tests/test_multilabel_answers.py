"""Multi-label answers done right: "none of these" ([]) is an answer, the person's order is kept.

The empty set is stored, decided by majority like any other set, exported and served by the
REST API as ``[]``; a single-label project still refuses it. The review page's side (the
machine's whole set pre-selected, Enter, the 0 key) is in ``test_review_page.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labelloop.api import create_app
from labelloop.auth import create_token, create_user
from labelloop.core.errors import LabelError
from labelloop.core.probs import encode_labels
from labelloop.labelers.student import StudentLabeler
from labelloop.project import Project
from labelloop.review.queue import ReviewQueue
from labelloop.store.models import HumanLabelRow

# More labels than a set's arbitrary order could get right by chance: the old code kept
# answers in a set's iteration order, which differs between runs (hash randomization).
NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _multi(make_project, tmp_path: Path, n: int = 4) -> tuple[Project, list[int]]:
    p = make_project(labels=NAMES, task="multi_label")
    path = tmp_path / f"{p.config.name}.csv"
    pd.DataFrame({"text": [f"note {i}" for i in range(n)]}).to_csv(path, index=False)
    p.ingest(path)
    ids = [int(i) for i in p.items()["id"]]
    p.enqueue(ids, [float(n - k) for k in range(n)])  # first item first
    return p, ids


def _finals(p: Project) -> dict[int, list[str]]:
    fl = p.final_labels()
    return {int(i): list(v) for i, v in zip(fl["item_id"], fl["labels"], strict=True)}


def _stored_answers(p: Project, item_id: int) -> list[list[str]]:
    h = HumanLabelRow.__table__
    with p.db.engine.connect() as conn:
        rows = conn.execute(select(h.c.labels).where(h.c.item_id == item_id).order_by(h.c.id))
        return [list(r[0]) for r in rows]


# -- the Python API ----------------------------------------------------------------------------


def test_none_of_these_round_trips_through_store_and_exports(make_project, tmp_path) -> None:
    p, ids = _multi(make_project, tmp_path)
    first = p.next_item("ana")
    out = p.submit(first["id"], [], annotator="ana", time_spent_ms=700)
    assert out == {"item_id": ids[0], "final": [], "answers": 1}
    second = p.next_item("ana")
    p.submit(second["id"], ["delta"], annotator="ana")
    assert _stored_answers(p, ids[0]) == [[]]
    assert _finals(p) == {ids[0]: [], ids[1]: ["delta"]}
    row = p.final_labels().set_index("item_id").loc[ids[0]]
    assert row["source_kind"] == "human" and row["source_name"] == "ana"
    # Decided: the item left the queue, and nobody gets it again.
    assert p.items().set_index("id").loc[ids[0], "state"] == "labeled"
    assert p.next_item("ben")["id"] == ids[2]

    jsonl = tmp_path / "out.jsonl"
    p.export(jsonl)
    rows = {r["item_id"]: r["labels"] for r in map(json.loads, jsonl.read_text().splitlines())}
    assert rows == {ids[0]: [], ids[1]: ["delta"]}
    parquet = tmp_path / "out.parquet"
    p.export(parquet)
    table = pq.read_table(parquet).to_pydict()
    assert dict(zip(table["item_id"], table["labels"], strict=True)) == rows
    csv = tmp_path / "out.csv"
    p.export(csv)
    got = pd.read_csv(csv, keep_default_na=False).set_index("item_id")["labels"].to_dict()
    assert got == {ids[0]: "", ids[1]: "delta"}  # the empty set joins to an empty field


def test_single_label_refuses_an_empty_answer(make_project, tmp_path) -> None:
    p = make_project()  # ham / spam, single-label
    path = tmp_path / "s.csv"
    pd.DataFrame({"text": ["one", "two"]}).to_csv(path, index=False)
    p.ingest(path)
    p.enqueue([int(i) for i in p.items()["id"]])
    item = p.next_item("ana")
    with pytest.raises(LabelError, match="single-label.*got no label.*only for multi-label"):
        p.submit(item["id"], [], annotator="ana")
    with pytest.raises(LabelError, match="single-label.*got 2 labels"):
        p.submit(item["id"], ["ham", "spam"], annotator="ana")
    assert p.final_labels().empty and _stored_answers(p, item["id"]) == []
    # A label given twice counts once, on single-label too.
    assert p.submit(item["id"], ["spam", "spam"], annotator="ana")["final"] == ["spam"]


def test_the_persons_order_is_kept_and_repeats_collapse(make_project, tmp_path) -> None:
    p, ids = _multi(make_project, tmp_path)
    given = ["foxtrot", "alpha", "echo", "charlie", "alpha", "foxtrot"]
    kept = ["foxtrot", "alpha", "echo", "charlie"]  # first place of each, in the person's order
    item = p.next_item("ana")
    assert p.submit(item["id"], given, annotator="ana")["final"] == kept
    assert _stored_answers(p, ids[0]) == [kept]
    assert _finals(p)[ids[0]] == kept
    jsonl = tmp_path / "order.jsonl"
    p.export(jsonl)
    assert json.loads(jsonl.read_text().splitlines()[0])["labels"] == kept


# -- majority over answers with the empty set among them ----------------------------------------


@pytest.mark.parametrize(
    ("answers", "decided", "share"),
    [
        ([[]], [], 1.0),
        ([[], []], [], 1.0),
        ([[], [], ["alpha"]], [], 2 / 3),
        ([["alpha"], [], ["alpha"]], ["alpha"], 2 / 3),
        ([["alpha"], []], [], 1 / 2),  # a tie, like ["alpha"] against ["bravo"]: ask one more
        ([["alpha"], ["bravo"]], [], 1 / 2),
        ([["echo", "bravo"], ["echo", "bravo"], []], ["echo", "bravo"], 2 / 3),
        ([["delta", "alpha"], ["alpha", "delta"], ["alpha"]], ["delta", "alpha"], 2 / 3),
        ([["alpha", "bravo"], ["alpha"]], ["alpha"], 1 / 2),  # bravo is a tie: one more
    ],
)
def test_multi_label_majority_treats_the_empty_set_as_a_set(answers, decided, share) -> None:
    got, agreement = ReviewQueue(None, 1, "multi_label")._decide(answers)  # type: ignore[arg-type]
    assert got == decided
    assert agreement == pytest.approx(share)


def test_overlap_decides_none_of_these_by_majority(make_project, tmp_path) -> None:
    p, ids = _multi(make_project, tmp_path)
    p.enqueue([ids[0]], [9.0], reviews_needed=2)
    # Two people disagree (one label against none): a tie, so a third person is asked.
    for who, labels in (("ana", ["bravo"]), ("ben", [])):
        item = p.next_item(who)
        assert item["id"] == ids[0]
        out = p.submit(item["id"], labels, annotator=who)
    assert out["final"] is None and out["answers"] == 2
    assert ids[0] not in _finals(p)
    item = p.next_item("cy")
    assert item["id"] == ids[0]
    out = p.submit(item["id"], [], annotator="cy")
    assert out == {"item_id": ids[0], "final": [], "answers": 3}
    row = p.final_labels().set_index("item_id").loc[ids[0]]
    assert list(row["labels"]) == [] and row["source_name"] == "majority"
    assert row["confidence"] == pytest.approx(2 / 3)


# -- the REST API ------------------------------------------------------------------------------


def _client(p: Project) -> tuple[TestClient, dict[str, str], dict[str, str]]:
    create_user(p.db, "rita", "reviewer", "pw")
    create_user(p.db, "boss", "admin", "pw")
    reviewer = {"Authorization": f"Bearer {create_token(p.db, 'rita')}"}
    admin = {"Authorization": f"Bearer {create_token(p.db, 'boss')}"}
    return TestClient(create_app(p)), reviewer, admin


def test_rest_none_and_order_round_trip(tmp_path: Path) -> None:
    p = Project.init(
        tmp_path / "multi",
        name="multi",
        labels=NAMES,
        task="multi_label",
        storage=f"sqlite:///{tmp_path / 'multi.db'}",
    )
    path = tmp_path / "m.csv"
    pd.DataFrame({"text": ["first note", "second note"]}).to_csv(path, index=False)
    p.ingest(path)
    ids = [int(i) for i in p.items()["id"]]
    p.enqueue(ids, [2.0, 1.0])
    client, h, admin = _client(p)
    try:
        item = client.post("/api/queue/next", headers=h).json()["item"]
        r = client.post(f"/api/items/{item['id']}/label", json={"labels": []}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json() == {"item_id": ids[0], "final": [], "answers": 1}
        item = client.post("/api/queue/next", headers=h).json()["item"]
        given = ["echo", "bravo", "echo", "alpha"]
        r = client.post(f"/api/items/{item['id']}/label", json={"labels": given}, headers=h)
        assert r.json()["final"] == ["echo", "bravo", "alpha"]
        labels = {r["item_id"]: r["labels"] for r in client.get("/api/labels", headers=h).json()}
        assert labels == {ids[0]: [], ids[1]: ["echo", "bravo", "alpha"]}
        r = client.get("/api/export", params={"format": "jsonl"}, headers=admin)
        assert r.status_code == 200
        rows = {row["item_id"]: row["labels"] for row in map(json.loads, r.text.splitlines())}
        assert rows == labels
    finally:
        client.close()
        p.close()


def test_rest_single_label_refuses_an_empty_answer_by_name(tmp_path: Path) -> None:
    p = Project.init(
        tmp_path / "single",
        name="single",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 'single.db'}",
    )
    path = tmp_path / "s.csv"
    pd.DataFrame({"text": ["a message"]}).to_csv(path, index=False)
    p.ingest(path)
    p.enqueue([int(i) for i in p.items()["id"]])
    client, h, _ = _client(p)
    try:
        item = client.post("/api/queue/next", headers=h).json()["item"]
        r = client.post(f"/api/items/{item['id']}/label", json={"labels": []}, headers=h)
        assert r.status_code == 422
        assert "single-label" in r.json()["detail"] and "multi-label" in r.json()["detail"]
        assert p.final_labels().empty
    finally:
        client.close()
        p.close()


# -- training on "none of these" -----------------------------------------------------------------


def test_an_empty_set_is_an_all_zero_training_row() -> None:
    Y = encode_labels([["charlie", "alpha"], [], ["bravo"]], NAMES, "multi_label")
    assert Y.tolist() == [[1, 0, 1, 0, 0, 0], [0] * 6, [0, 1, 0, 0, 0, 0]]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 8))
    y = [[], ["alpha"], ["bravo", "alpha"], [], ["charlie"], []] * 2
    for incremental in ("refit", "sgd"):
        student = StudentLabeler(NAMES, "multi_label", incremental=incremental).fit(X, y)
        student.partial_fit(X[:2], [[], []])
        P = student.predict_proba(X)
        assert P.shape == (12, 6) and np.isfinite(P).all()
    # Only empty answers so far: nothing to learn from; the prior answers, all below one half.
    only_none = StudentLabeler(NAMES, "multi_label").fit(X[:4], [[]] * 4)
    assert (only_none.predict_proba(X[:1]) < 0.5).all()
