"""The review page's server side: label codes, digits, and the progress numbers (store, cache,
API). The page itself is driven in a browser in test_review_page.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from labelloop.api import create_app
from labelloop.api.label_keys import digit_scheme, label_codes
from labelloop.auth import create_token, create_user
from labelloop.review.progress import TIME_CAP_MS, ProgressCache, read_progress

BANKING77 = Path(__file__).parent / "data" / "banking77" / "categories.json"


# -- label codes -----------------------------------------------------------------------------
def test_codes_of_banking77_are_unique_short_and_from_the_name() -> None:
    names = json.loads(BANKING77.read_text())
    codes = label_codes(names)
    assert len(set(codes)) == 77
    assert all(re.fullmatch(r"[a-z]{2}", c) for c in codes)  # code + Enter: 3 keystrokes
    by_name = dict(zip(names, codes, strict=True))
    assert by_name["cancel_transfer"] == "ct"  # the initials of its words
    assert by_name["card_arrival"] == "ca"
    # Every code starts with the name's first letter.
    assert all(c[0] == n[0].lower() for n, c in zip(names, codes, strict=True))


def test_codes_of_a_small_taxonomy_are_single_letters_where_they_can_be() -> None:
    assert label_codes(["ham", "spam"]) == ["h", "s"]
    codes = label_codes(["sports", "science", "Politics", "42"])
    assert codes[:3] == ["s", "sc", "p"] and re.fullmatch(r"[a-z]{2}", codes[3])
    assert len(set(codes)) == 4


def test_codes_stay_unique_past_what_names_give() -> None:
    names = [f"x{i}" for i in range(800)]  # one letter each: the spare pairs, then triples
    codes = label_codes(names)
    assert len(set(codes)) == 800 and max(len(c) for c in codes) == 3


def test_digits_pick_labels_in_a_small_taxonomy_and_candidates_in_a_large_one() -> None:
    assert digit_scheme(2) == digit_scheme(9) == "positions"
    assert digit_scheme(10) == digit_scheme(77) == "candidates"


# -- progress ----------------------------------------------------------------------------------
def _queued(make_project, tmp_path: Path, n: int = 5):  # noqa: ANN001, ANN202
    p = make_project()
    csv = tmp_path / f"{p.config.name}.csv"
    pd.DataFrame({"text": [f"text {i}" for i in range(n)]}).to_csv(csv, index=False)
    p.ingest(csv)
    ids = sorted(int(i) for i in p.items()["id"])
    p.enqueue(ids)
    return p, ids


def test_progress_counts_come_from_the_store(make_project, tmp_path: Path) -> None:
    p, ids = _queued(make_project, tmp_path)
    for ms in (1000, 3000, 2 * TIME_CAP_MS):  # the last is cut at the cap (a tab left open)
        item = p.next_item("rita")
        p.submit(item["id"], ["spam"], annotator="rita", time_spent_ms=ms)
    other = p.next_item("bob")
    p.submit(other["id"], ["ham"], annotator="bob")  # no time: not in the rate
    item = p.next_item("rita")
    p.skip(item["id"], annotator="rita")  # a skip is not an answer
    got = read_progress(p.db, p.id, "rita")
    assert (got.left, got.done, got.mine) == (len(ids) - 4, 4, 3)
    assert (got.timed, got.timed_ms) == (3, 1000 + 3000 + TIME_CAP_MS)
    assert got.per_hour == pytest.approx(3 * 3_600_000 / (4000 + TIME_CAP_MS))
    p.undo(annotator="rita")  # takes back the skip: the answers stay
    p.undo(annotator="rita")  # takes back the last answer
    again = read_progress(p.db, p.id, "rita")
    assert (again.mine, again.done, again.left) == (2, 3, len(ids) - 3)
    assert read_progress(p.db, p.id, "nobody").per_hour is None


def test_cache_reads_the_store_once_per_ttl_and_counts_own_answers(
    make_project, tmp_path: Path
) -> None:
    p, ids = _queued(make_project, tmp_path)
    now = [100.0]
    cache = ProgressCache(ttl_seconds=5.0, clock=lambda: now[0], spawn=lambda work: work())
    first = cache.get(p.db, p.id, "rita")
    assert (first.mine, first.left) == (0, len(ids))
    item = p.next_item("bob")
    p.submit(item["id"], ["ham"], annotator="bob")  # someone else's work: seen at refresh
    cache.note_answer(p.db, p.id, "rita", decided=True, time_spent_ms=2000)
    cached = cache.get(p.db, p.id, "rita")
    assert (cached.mine, cached.done, cached.left, cached.timed_ms) == (1, 1, len(ids) - 1, 2000)
    now[0] += 5.0
    fresh = cache.get(p.db, p.id, "rita")
    assert (fresh.mine, fresh.done, fresh.left) == (0, 1, len(ids) - 1)  # the store's truth
    cache.note_answer(p.db, p.id, "rita", decided=False, time_spent_ms=None)
    assert cache.get(p.db, p.id, "rita").mine == 1
    cache.forget(p.db, p.id, "rita")
    assert cache.get(p.db, p.id, "rita").mine == 0


def test_queue_next_and_undo_send_progress(tmp_path: Path) -> None:
    from labelloop.project import Project

    p = Project.init(
        tmp_path / "proj", name="pr", labels=["ham", "spam"], storage=f"sqlite:///{tmp_path}/s.db"
    )
    csv = tmp_path / "t.csv"
    pd.DataFrame({"text": ["a", "b", "c"]}).to_csv(csv, index=False)
    p.ingest(csv)
    p.enqueue([int(i) for i in p.items()["id"]])
    create_user(p.db, "rita", "reviewer", "pw-rita-123")
    headers = {"Authorization": f"Bearer {create_token(p.db, 'rita')}"}
    with TestClient(create_app(p)) as client:
        got = client.post("/api/queue/next", headers=headers).json()
        assert got["progress"]["left"] == 3 and got["progress"]["mine"] == 0
        item_id = got["item"]["id"]
        r = client.post(
            f"/api/items/{item_id}/label",
            json={"labels": ["spam"], "time_spent_ms": 1800},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        after = client.post("/api/queue/next", headers=headers).json()["progress"]
        assert (after["mine"], after["left"], after["done"]) == (1, 2, 1)
        assert after["per_hour"] == pytest.approx(2000.0)  # one item in 1.8 s
        undone = client.post("/api/undo", headers=headers).json()
        assert undone["item"]["id"] == item_id
        assert (undone["progress"]["mine"], undone["progress"]["left"]) == (0, 3)
    p.close()


def test_a_stale_value_is_served_while_one_refresh_runs_aside(make_project, tmp_path: Path) -> None:
    p, ids = _queued(make_project, tmp_path)
    now = [0.0]
    pending: list = []
    cache = ProgressCache(ttl_seconds=5.0, clock=lambda: now[0], spawn=pending.append)
    assert cache.get(p.db, p.id, "rita").left == len(ids)  # the first read waits for the store
    item = p.next_item("bob")
    p.submit(item["id"], ["ham"], annotator="bob")
    now[0] = 6.0
    assert cache.get(p.db, p.id, "rita").left == len(ids)  # stale, at once
    assert cache.get(p.db, p.id, "rita").left == len(ids)
    assert len(pending) == 2  # one refresh per part (project, reviewer), not one per call
    for work in pending:
        work()
    assert cache.get(p.db, p.id, "rita").left == len(ids) - 1
    assert len(pending) == 2  # fresh again: nothing more to read
