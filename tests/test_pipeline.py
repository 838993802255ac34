"""Suggest and route on a small slice of the bundled SMS data, with the real embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path
from labelloop.project import Project


@pytest.fixture(scope="module")
def sms_slice(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    df = pd.concat([df[df.label == "spam"].head(60), df[df.label == "ham"].head(240)])
    path = tmp_path_factory.mktemp("data") / "sms300.csv"
    df.sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path, dict(zip(df.text, df.label, strict=True))


@pytest.fixture(scope="module")
def sms_slice_400(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A larger slice for tests that need machines to label: the calibrated rule's bound is a
    fixed 95% quantile (no Monte Carlo luck) read on the fold models' scale, and 120 labels
    of 300 items reach 0.917, not 0.95."""
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    df = pd.concat([df[df.label == "spam"].head(80), df[df.label == "ham"].head(320)])
    path = tmp_path_factory.mktemp("data") / "sms400.csv"
    df.sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path, dict(zip(df.text, df.label, strict=True))


def new_project(tmp_path: Path, data: Path) -> Project:
    p = Project.init(
        tmp_path / "p",
        name="sms",
        labels=[{"name": k, "description": v} for k, v in SMS_SPAM_LABELS.items()],
        label_field="label",
    )
    p.ingest(data)
    return p


def label_from_queue(p: Project, gold: dict[str, str], n: int) -> int:
    done = 0
    for _ in range(n):
        item = p.next_item("sim")
        if item is None:
            break
        p.submit(item["id"], [gold[item["content"]]], annotator="sim")
        done += 1
    return done


def test_cold_start_suggests_but_auto_accepts_nothing(tmp_path: Path, sms_slice) -> None:
    data, _ = sms_slice
    p = new_project(tmp_path, data)
    s = p.suggest()
    assert s.items == 300 and s.labelers == ["zeroshot", "ensemble"]
    r = p.route()
    assert r.auto == 0  # no human labels: no precision estimate, no auto-accept
    assert r.queued + r.grouped == 300
    assert p.status()["states"]["queued"] == r.queued
    item = p.next_item("ana")
    assert {x["labeler"] for x in item["suggestions"]} == {"zeroshot", "ensemble"}


def test_human_labels_train_the_student_and_unlock_auto_labels(
    tmp_path: Path, sms_slice_400
) -> None:
    data, gold = sms_slice_400
    p = new_project(tmp_path, data)
    p.suggest()
    p.route()
    assert label_from_queue(p, gold, 160) == 160
    r = p.route()
    assert r.human_labels == 160
    assert r.auto > 0, r.thresholds
    assert r.queued + r.grouped + r.auto - r.audit == r.pending
    fl = p.final_labels()
    machine = fl[fl.source_kind == "machine"]
    precision = np.mean(
        [labels[0] == gold[c] for c, labels in zip(machine.content, machine.labels, strict=True)]
    )
    assert precision >= 0.9
    assert set(machine.source_name) == {"ensemble"}
    assert all(0 < c <= 1 for c in machine.confidence)
    # every threshold that auto-accepts meets the target with its lower bound
    for t in r.thresholds:
        assert (
            t["threshold"] == float("inf") or t["lower_bound"] >= p.config.metrics.precision_target
        )


def test_near_duplicates_are_reviewed_once_and_the_label_spreads(tmp_path: Path) -> None:
    rows = [
        ("WINNER!! You have won a 1000 pound prize. Call 09061701461 now to claim", "spam"),
        ("WINNER!! You have won a 1000 pound prize. Call 09061701461 now to claim!", "spam"),
        ("WINNER!!  You have won a 1000 pound prize. Call 09061701461 now to claim.", "spam"),
        ("See you at the station at six, don't be late", "ham"),
    ]
    data = tmp_path / "dups.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(data, index=False)
    p = new_project(tmp_path, data)
    p.suggest()
    r = p.route()
    assert r.grouped == 2 and r.queued == 2
    first = p.next_item("ana")
    second = p.next_item("ben")
    assert {first["content"][:7], second["content"][:7]} == {"WINNER!", "See you"}
    spam = first if first["content"].startswith("WINNER") else second
    p.submit(spam["id"], ["spam"], annotator="ana" if spam is first else "ben")
    fl = p.final_labels()
    assert sorted(fl["source_kind"]) == ["human", "propagated", "propagated"]
    assert all(labels == ["spam"] for labels in fl["labels"])


def test_audits_below_target_raise_the_threshold(tmp_path: Path, sms_slice_400) -> None:
    data, gold = sms_slice_400
    p = new_project(tmp_path, data)
    p.config.metrics.audit_rate = 0.2  # many audits, to see them quickly
    p.suggest()
    p.route()
    label_from_queue(p, gold, 160)
    first = p.route()
    assert first.audit > 0
    audited = p.queue.stats()
    assert audited["queued"] > 0
    # people contradict every audited machine label
    wrong = 0
    while True:
        item = p.next_item("auditor")
        if item is None or item["queue_reason"] != "audit":
            break
        with p.db.engine.connect() as conn:
            payload = conn.exec_driver_sql(
                "SELECT payload FROM events WHERE kind = 'audit' AND item_id = ?", (item["id"],)
            ).scalar_one_or_none()
        if payload is None:  # a calibration-sample item: queued as "audit" too, answered right
            p.submit(item["id"], [gold[item["content"]]], annotator="auditor")
            continue
        machine = json.loads(payload)["machine_label"]
        p.submit(item["id"], ["ham" if machine == "spam" else "spam"], annotator="auditor")
        wrong += 1
    assert wrong == first.audit
    results = p.audit_results()
    assert len(results) == wrong and not results["correct"].any()
    second = p.route()
    before = {t["label"]: t["threshold"] for t in first.thresholds}
    after = {t["label"]: t["threshold"] for t in second.thresholds}
    assert all(after[k] >= before[k] for k in before)
    assert any(after[k] > before[k] for k in before)
    assert second.auto < first.auto


def test_overlap_and_gold_items_score_reviewers(tmp_path: Path, sms_slice) -> None:
    data, gold = sms_slice
    p = new_project(tmp_path, data)
    p.config.review.overlap_share = 0.5
    p.config.review.gold_share = 0.1
    p.config.review.gold_from_label_field = True
    p.config.metrics.calibration_share = 0.0  # no random sample ahead of the gold items
    p.suggest()
    r = p.route()
    # overlap and gold mix into the plain review queue; the random calibration sample is apart
    plain = r.queued - r.calibration_queued
    assert 0 < r.overlap < plain and r.gold == round(0.1 * plain)
    seen_gold = 0
    for who, right in (("good", True), ("sloppy", False)):
        for _ in range(60):
            item = p.next_item(who)
            if item is None:
                break
            truth = gold[item["content"]]
            answer = (
                truth
                if right or item["queue_reason"] != "gold"
                else ("ham" if truth == "spam" else "spam")
            )
            seen_gold += item["queue_reason"] == "gold"
            p.submit(item["id"], [answer], annotator=who)
    scores = p.gold_scores().set_index("annotator")
    assert seen_gold > 0
    assert scores.loc["good", "accuracy"] == 1.0
    assert scores.loc["sloppy", "accuracy"] == 0.0
    # people's accuracy for rechecks: the gold answers pooled, shrunk toward the 0.95 prior
    from labelloop.annotate.reviewers import reviewer_accuracy, reviewer_accuracy_high

    accuracy, n = reviewer_accuracy(p.ctx)
    right = int(scores["n_correct"].sum())
    assert n == int(scores["n_gold"].sum()) > 0
    assert accuracy == pytest.approx((0.95 * 20 + right) / (20 + n))
    assert accuracy < 0.95  # the sloppy reviewer's wrong gold answers pull it down
    assert right / n < reviewer_accuracy_high(p.ctx) < 1.0  # an upper bound, from gold alone
    # an overlap item answered once is still queued for a second person
    with p.db.engine.connect() as conn:
        waiting = conn.exec_driver_sql(
            "SELECT count(*) FROM items WHERE queue_reason = 'overlap' AND state = 'queued'"
        ).scalar_one()
    assert waiting > 0


def test_bias_check_flags_a_labeler_that_over_predicts(tmp_path: Path, sms_slice) -> None:
    from labelloop.core.types import Suggestion
    from labelloop.store.labels import add_suggestions

    data, gold = sms_slice
    p = new_project(tmp_path, data)
    p.suggest()
    p.route()
    label_from_queue(p, gold, 40)
    ids = list(p.items()["id"])
    with p.db.engine.begin() as conn:  # a labeler that says spam to everything
        add_suggestions(
            conn,
            [
                Suggestion(i, "h", "always-spam", "1", {"ham": 0.1, "spam": 0.9}, 0.9, "test")
                for i in ids
            ],
        )
    bias = p.labeler_bias().set_index("labeler")
    assert bias.loc["always-spam", "flagged"]
    assert bias.loc["always-spam", "over_predicted"] == "spam"
    assert bias.loc["always-spam", "mode_share"] == 1.0


def test_semi_supervised_labeler_has_its_own_provenance_when_switched_on(
    tmp_path: Path, sms_slice
) -> None:
    data, gold = sms_slice
    p = new_project(tmp_path, data)
    p.config.labelers.semi_supervised = True
    p.suggest()
    p.route()
    label_from_queue(p, gold, 40)
    assert p.final_labels()["source_kind"].eq("human").all()
    before = p.count()
    r = p.route()
    assert r.pending > 0
    from labelloop.embed.factory import project_embedder
    from labelloop.labelers.factory import build_labelers

    labelers = build_labelers(p, project_embedder(p))
    assert [m.labeler_id for m in labelers.members] == ["zeroshot", "student", "self_training"]
    assert labelers.held_out_stack.shape[0] == 3
    # The held-out probabilities' fold models are kept, score new items on that scale, and
    # survive storage (their embedder stripped and given back).
    from labelloop.labelers.factory import dump_labelers, load_labelers

    assert len(labelers.fold_members) == 5
    assert all(len(f) == 3 for f in labelers.fold_members)
    vectors = labelers.humans.vectors[:7]
    scale = labelers.held_out_scale_probs(vectors)
    assert scale.shape == (7, 2) and np.allclose(scale.sum(axis=1), 1.0)
    assert not np.allclose(scale, labelers.probs(vectors)[1])
    back = load_labelers(dump_labelers(labelers), project_embedder(p))
    assert np.allclose(back.held_out_scale_probs(vectors), scale)
    # pseudo-labels never become human labels
    fl = p.final_labels()
    assert (fl["source_kind"] == "human").sum() == 40 and p.count() == before


def test_an_image_project_runs_the_loop_on_image_features(tmp_path: Path) -> None:
    from PIL import Image

    from labelloop.annotate.feedback import FeedbackLoop

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    truth = {}
    for i in range(40):
        label = "red" if i % 2 else "blue"
        base = np.array([200, 30, 30] if label == "red" else [30, 30, 200], dtype=np.int16)
        pixels = np.clip(base + rng.integers(-25, 25, size=(16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        truth[f"{i:02d}.png"] = label
    p = Project.init(tmp_path / "p", name="colours", modality="image", labels=["blue", "red"])
    assert p.ingest(folder).items_added == 40
    loop = FeedbackLoop(p, retrain_every=12, select_every=0)
    first = loop.step()
    assert first.route.auto == 0  # no zero-shot for images: everything goes to people first
    item = p.next_item("ana")
    assert {s["labeler"] for s in item["suggestions"]} == {"prior", "ensemble"}
    for _ in range(12):
        item = p.next_item("ana")
        p.submit(item["id"], [truth[item["content"]]], annotator="ana")
    loop.step()
    assert [m.labeler_id for m in loop.labelers.members] == ["student"]
    assert loop.labelers.humans.vectors.shape[1] == 896  # the default built-in image featurizer
    probs = loop.labelers.ensemble.predict_proba(loop.labelers.humans.vectors)
    predicted = [loop.labelers.label_names[j] for j in probs.argmax(axis=1)]
    assert predicted == list(loop.labelers.humans.labels)
