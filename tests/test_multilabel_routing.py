"""Auto-accept in multi-label projects: one threshold on whole label sets, keyed audits, and
audits that count as right only when the person's whole set is the machine's."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from labelloop.core.probs import confidence_of
from labelloop.embed.factory import project_embedder
from labelloop.labelers.factory import build_labelers
from labelloop.project import Project
from labelloop.routing import (
    SetThreshold,
    adjust_set_threshold,
    fit_set_threshold,
    precision_lower_bound,
    predicted_sets,
    route_sets,
)

# --- predicted sets ----------------------------------------------------------------------------


def test_predicted_sets_threshold_at_half_and_fall_back_to_the_top_label() -> None:
    P = np.array(
        [
            [0.9, 0.2, 0.7],  # two labels
            [0.3, 0.4, 0.1],  # none reaches 0.5: the most probable one
            [0.5, 0.49, 0.01],  # 0.5 is in
        ]
    )
    sets, conf = predicted_sets(P)
    assert sets.tolist() == [[True, False, True], [False, True, False], [True, False, False]]
    assert conf[0] == pytest.approx(0.9 * 0.8 * 0.7)
    assert conf[1] == pytest.approx(0.7 * 0.4 * 0.9)  # the set {label 1}, not the empty set
    assert conf[2] == pytest.approx(0.5 * 0.51 * 0.99)
    # where the 0.5 rule gives a set, confidence is the one suggestions already carry
    np.testing.assert_allclose(conf[[0, 2]], confidence_of(P[[0, 2]], "multi_label"))
    assert conf[1] < confidence_of(P[[1]], "multi_label")[0]
    with pytest.raises(ValueError, match="above 1"):
        predicted_sets(np.array([[1.2, 0.1]]))


# --- fitting the set threshold -------------------------------------------------------------------


def calibrated_multilabel(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-label probabilities and label sets drawn from them: each label applies with its
    probability, independently (rows with no label are redrawn, as people give one at least)."""
    rng = np.random.default_rng(seed)
    P = rng.beta(0.3, 0.3, size=(n, k)).clip(0.001, 0.999)
    Y = rng.random((n, k)) < P
    while not Y.any(axis=1).all():
        empty = ~Y.any(axis=1)
        Y[empty] = rng.random((int(empty.sum()), k)) < P[empty]
    return P, Y.astype(int)


def test_set_threshold_is_the_lowest_that_meets_the_wilson_bound_on_whole_sets() -> None:
    P, Y = calibrated_multilabel(1500, 4)
    t = fit_set_threshold(P, Y, target=0.9, alpha=0.05, method="wilson", min_support=30)
    assert t.auto_accepts and t.reason == ""
    sets, conf = predicted_sets(P)
    right = (sets == Y.astype(bool)).all(axis=1)
    above = conf >= t.threshold
    assert t.support == int(above.sum()) >= 30
    assert t.precision == pytest.approx(right[above].mean())
    low = precision_lower_bound(int(right[above].sum()), int(above.sum()), 0.05, "wilson")
    assert t.lower_bound == pytest.approx(low) and low >= 0.9
    # every lower threshold fails the bound (so this is the lowest that passes)
    for c in np.unique(conf[conf < t.threshold]):
        m = conf >= c
        assert precision_lower_bound(int(right[m].sum()), int(m.sum())) < 0.9
    # and it leaves something out: not every item is that sure
    assert 0 < above.mean() < 1


def test_set_threshold_by_hand_wilson_numbers() -> None:
    # 40 items, all right at confidence 0.99: the one-sided 95% Wilson lower bound of 40/40
    # is 40 / (40 + z^2) = 0.9366 (z = 1.645)
    P = np.tile([0.995, 0.005], (40, 1))
    Y = np.tile([1, 0], (40, 1))
    ok = fit_set_threshold(P, Y, target=0.93, min_support=30)
    assert ok.threshold == pytest.approx(0.995 * 0.995)
    assert ok.lower_bound == pytest.approx(40 / (40 + 1.6448536**2), abs=1e-4)
    strict = fit_set_threshold(P, Y, target=0.95, min_support=30)
    assert strict.threshold == math.inf and "lower bound" in strict.reason


def test_too_few_labeled_items_auto_accept_nothing() -> None:
    P = np.tile([0.999, 0.001, 0.999], (29, 1))
    Y = np.tile([1, 0, 1], (29, 1))
    t = fit_set_threshold(P, Y, target=0.5, min_support=30)
    assert t.threshold == math.inf and not t.auto_accepts
    assert "only 29 labeled items" in t.reason and t.support == 29
    assert not route_sets(P, t, audit_rate=1.0).auto.any()


def test_an_item_with_one_label_right_and_one_wrong_is_wrong() -> None:
    # the machine says {a, b} where people say {a}: the first label matches, the set does not
    P = np.tile([0.99, 0.99, 0.01], (100, 1))
    Y = np.tile([1, 0, 0], (100, 1))
    t = fit_set_threshold(P, Y, target=0.5, min_support=30)
    assert t.threshold == math.inf and t.precision == 0.0
    assert fit_set_threshold(P, np.tile([1, 1, 0], (100, 1)), 0.5).auto_accepts


def test_fit_set_threshold_checks_its_inputs() -> None:
    P = np.full((5, 3), 0.5)
    with pytest.raises(ValueError, match=r"\(5, 3\) 0/1 matrix"):
        fit_set_threshold(P, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="only 0 and 1"):
        fit_set_threshold(P, np.full((5, 3), 2))
    with pytest.raises(ValueError, match="target"):
        fit_set_threshold(P, np.zeros((5, 3), dtype=int), target=0.0)


# --- routing sets --------------------------------------------------------------------------------


def test_route_sets_accepts_whole_sets_above_the_threshold() -> None:
    P = np.array([[0.99, 0.98, 0.01], [0.99, 0.6, 0.01], [0.2, 0.1, 0.3], [0.01, 0.01, 0.995]])
    d = route_sets(P, 0.9, audit_rate=0.0)
    assert d.labels.tolist() == [
        [True, True, False],
        [True, True, False],
        [False, False, True],
        [False, False, True],
    ]
    assert d.auto.tolist() == [True, False, False, True]
    assert d.needs_review.tolist() == [False, True, True, False]
    assert d.route.tolist() == ["auto", "review", "review", "auto"]
    assert d.auto_share == 0.5
    assert not route_sets(P, math.inf).auto.any()
    with pytest.raises(ValueError, match="NaN"):
        route_sets(P, math.nan)
    with pytest.raises(ValueError, match="audit_rate"):
        route_sets(P, 0.9, audit_rate=1.5)
    with pytest.raises(ValueError, match="keys"):
        route_sets(P, 0.9, keys=[1, 2])
    rule = SetThreshold(0.9, 50, 1.0, 0.95, 0.95, 0.05, "wilson", 30)
    assert route_sets(P, rule, audit_rate=0.0).auto.tolist() == d.auto.tolist()


def test_route_sets_audits_are_keyed_per_item() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    P = np.where(rng.random((n, 3)) < 0.5, 0.999, 0.001)
    P[(P < 0.5).all(axis=1), 0] = 0.999  # a sure set everywhere (an empty one is unsure)
    keys = list(range(n))
    d = route_sets(P, 0.9, audit_rate=0.02, keys=keys)
    assert d.auto.all()
    assert 0.015 < d.audit.mean() < 0.025
    assert not (d.audit & ~d.auto).any() and d.needs_review[d.audit].all()
    # the same item gets the same decision whichever batch (and position) it arrives in
    order = rng.permutation(n)[:500]
    again = route_sets(P[order], 0.9, audit_rate=0.02, keys=[keys[i] for i in order])
    np.testing.assert_array_equal(again.audit, d.audit[order])
    other_seed = route_sets(P, 0.9, audit_rate=0.02, seed=7, keys=keys)
    assert (other_seed.audit != d.audit).any()
    # audits never touch items that go to people anyway
    unsure = route_sets(np.full((100, 3), 0.6), 0.9, audit_rate=1.0, keys=list(range(100)))
    assert not unsure.audit.any()


# --- audits move the set threshold ---------------------------------------------------------------


def test_adjust_set_threshold_raises_on_a_clear_shortfall_only() -> None:
    rule = SetThreshold(0.8, 200, 0.98, 0.96, 0.95, 0.05, "wilson", 30)
    conf = np.linspace(0.81, 0.99, 40)
    # all right: unchanged
    assert adjust_set_threshold(rule, conf, np.ones(40, bool)) == rule
    # one wrong of 40 may be chance: unchanged
    one_wrong = np.ones(40, bool)
    one_wrong[0] = False
    assert adjust_set_threshold(rule, conf, one_wrong).threshold == 0.8
    # wrong below 0.9, right above: rises to the lowest audited confidence at which the
    # audited sets (10 at least) reach the target by point estimate
    split = conf >= 0.9
    raised = adjust_set_threshold(rule, conf, split)
    assert 0.8 < raised.threshold <= conf[split].min()
    above = conf >= raised.threshold
    assert above.sum() >= 10 and split[above].mean() >= 0.95
    lower = conf[conf < raised.threshold].max()
    assert split[conf >= lower].mean() < 0.95
    assert raised.reason.startswith("audit:")
    # all wrong: nothing is auto-accepted until a refit
    assert adjust_set_threshold(rule, conf, np.zeros(40, bool)).threshold == math.inf
    # no audits, or a rule that accepts nothing: unchanged
    assert adjust_set_threshold(rule, np.zeros(0), np.zeros(0, bool)) == rule
    closed = SetThreshold(math.inf, 10, 0.5, 0.2, 0.95, 0.05, "wilson", 30)
    assert adjust_set_threshold(closed, conf, np.zeros(40, bool)) == closed
    with pytest.raises(ValueError, match="one length"):
        adjust_set_threshold(rule, conf, np.ones(3, bool))


# --- end to end in a project ---------------------------------------------------------------------

TOPICS = {
    "sport": [
        "The striker scored twice in the derby",
        "Our team won the basketball final",
        "The tennis champion lost in the semifinal",
        "The marathon runner broke the course record",
        "The coach benched the goalkeeper after the loss",
        "Fans cheered as the batsman hit a century",
        "The cyclist took the yellow jersey on the mountain stage",
        "The rugby match went to extra time",
        "The boxer knocked out his rival in round three",
        "The swimmer won gold in the relay",
        "The league suspended the defender for three games",
        "The golfer sank a long putt to win the open",
    ],
    "weather": [
        "Heavy rain flooded the streets overnight",
        "A snowstorm closed the mountain roads",
        "Forecasters expect a heatwave this weekend",
        "Strong winds knocked down power lines",
        "Thick fog delayed morning flights",
        "A thunderstorm with hail hit the valley",
        "Temperatures will drop below freezing tonight",
        "The hurricane is moving toward the coast",
        "Drought has dried up the reservoirs",
        "Sunny skies and mild temperatures are forecast",
        "A tornado warning was issued for the county",
        "Icy sleet made the pavements slippery",
    ],
    "finance": [
        "The central bank raised interest rates again",
        "Shares of the tech company fell sharply",
        "Inflation rose to its highest level in a decade",
        "The company reported record quarterly profits",
        "Investors moved their money into government bonds",
        "The stock market closed at a new high",
        "The currency weakened against the dollar",
        "The firm announced layoffs to cut costs",
        "Mortgage rates climbed for the fifth week",
        "The startup raised fifty million in venture funding",
        "Oil prices surged after the supply cut",
        "The bank reported losses on bad loans",
    ],
}
NAMES = list(TOPICS)
# Items about none of the topics: no label reaches 0.5, so no set is sure enough.
OFF_TOPIC = [
    "Please call me back when you get this message.",
    "I left my keys on the kitchen table.",
    "Can you send me the recipe for that soup?",
    "The museum opens a new exhibition of old maps.",
    "My cat sleeps on the windowsill all afternoon.",
    "Remember to water the plants before you leave.",
    "The library extended its opening hours.",
    "We painted the living room a pale green.",
]


def news_items(seed: int = 0) -> list[tuple[str, list[str]]]:
    """Texts about one topic or two (joined), with their label sets in taxonomy order."""
    rng = random.Random(seed)
    rows: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    tails = ["", " today", " yesterday", " this week", " again", " on Sunday", " last night"]
    while len(rows) < 90:
        topic = rng.choice(NAMES)
        text = rng.choice(TOPICS[topic]) + rng.choice(tails) + "."
        if text not in seen:
            seen.add(text)
            rows.append((text, [topic]))
    while len(rows) < 200:
        a, b = rng.sample(NAMES, 2)
        text = rng.choice(TOPICS[a]) + ", and " + rng.choice(TOPICS[b]).lower() + "."
        if text not in seen:
            seen.add(text)
            rows.append((text, sorted([a, b], key=NAMES.index)))
    rng.shuffle(rows)
    return rows


def audit_payload(p: Project, item_id: int) -> dict:
    with p.db.engine.connect() as conn:
        raw = conn.exec_driver_sql(
            "SELECT payload FROM events WHERE kind = 'audit' AND item_id = ?", (item_id,)
        ).scalar_one()
    return json.loads(raw) if isinstance(raw, str) else raw


def test_multi_label_project_auto_accepts_whole_sets_and_audits_them(tmp_path: Path) -> None:
    rows = news_items()
    gold = dict(rows)
    data = tmp_path / "news.jsonl"
    with data.open("w") as f:
        for text in [t for t, _ in rows] + OFF_TOPIC:
            f.write(json.dumps({"text": text}) + "\n")
    p = Project.init(tmp_path / "p", name="news", labels=NAMES, task="multi_label")
    p.config.metrics.audit_rate = 0.3  # many audits, to check them here
    p.config.active.cold_start_labels = 0  # audits lead the queue
    p.ingest(data)
    p.suggest()
    items = p.items()
    labeled = [(int(i), c) for i, c in zip(items["id"], items["content"], strict=True)][:100]
    assert all(c in gold for _, c in labeled)
    for item_id, content in labeled:
        p.label(item_id, gold[content], annotator="ann")

    r = p.route()
    target = p.config.metrics.precision_target
    assert r.human_labels == 100 and r.pending == 108
    assert r.calibration == "IdentityCalibrator"
    [rule] = r.thresholds
    assert rule["scope"] == "label_set" and rule["label"] == "whole label set"
    assert math.isfinite(rule["threshold"]) and rule["lower_bound"] >= target
    assert rule["support"] >= 30
    assert r.auto > 0 and r.audit > 0 and r.queued > 0
    assert r.queued + r.grouped + r.auto - r.audit == r.pending

    fl = p.final_labels()
    machine = fl[fl.source_kind == "machine"]
    assert len(machine) == r.auto and set(machine.source_name) == {"ensemble"}
    # the whole set is the final label: two-topic items got both labels, and sets are right
    assert sum(len(labels) == 2 for labels in machine.labels) >= 10
    topical = machine[machine.content.isin(gold)]
    right = [
        sorted(ls) == sorted(gold[c]) for c, ls in zip(topical.content, topical.labels, strict=True)
    ]
    assert len(topical) >= 50 and np.mean(right) >= 0.9

    # sure sets were accepted whole, unsure ones went to people: the same labelers again
    labelers = build_labelers(p, project_embedder(p))
    after = p.items()
    pending = after[~after.id.isin([i for i, _ in labeled])]
    _, probs, _ = labelers.probs(project_embedder(p).embed(list(pending.content)))
    sets, conf = predicted_sets(probs)
    by_item = dict(zip(machine.item_id, machine.labels, strict=True))
    t = rule["threshold"]
    for item_id, state, row, c in zip(pending.id, pending.state, sets, conf, strict=True):
        if abs(c - t) < 1e-9:
            continue
        if c > t:
            assert sorted(by_item[item_id]) == sorted(
                n for n, on in zip(NAMES, row, strict=True) if on
            )
        else:
            assert item_id not in by_item and state in ("queued", "grouped")
    assert (conf < t).sum() >= r.queued - r.audit > 0
    # off-topic items where no label reaches 0.5 are the least sure of all: never accepted
    off = pending.content.isin(OFF_TOPIC).to_numpy()
    assert (off & ~(probs >= 0.5).any(axis=1)).any()
    assert not set(pending.id[off & ~(probs >= 0.5).any(axis=1)]) & set(by_item)

    # audits: correct only when the person's whole set is the machine's
    expected: dict[int, bool] = {}
    while True:
        item = p.next_item("auditor")
        if item is None or item["queue_reason"] != "audit":
            break
        payload = audit_payload(p, item["id"])
        machine_set = payload["machine_labels"]
        assert payload["machine_label"] == ", ".join(machine_set)
        k = len(expected)
        if k == 0:  # the same set, in another order
            answer, ok = list(reversed(machine_set)), True
        else:  # the machine's labels first, plus one it left out: the first label matches
            missing = next(n for n in NAMES if n not in machine_set)
            answer, ok = [*machine_set, missing], False
        p.submit(item["id"], answer, annotator="auditor")
        expected[item["id"]] = ok
    assert len(expected) == r.audit >= 2
    results = p.audit_results()
    assert dict(zip(results.item_id, results.correct, strict=True)) == expected
    first = results[results.item_id == next(iter(expected))].iloc[0]
    assert sorted(first.human_labels) == sorted(first.machine_labels)

    # audited set precision far below target: nothing more is auto-accepted
    second = p.route()
    assert second.thresholds[0]["threshold"] == math.inf
    assert second.auto == 0 and second.pending > 0
