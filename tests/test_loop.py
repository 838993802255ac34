"""The feedback loop on a small dataset: retrain, thresholds and queue move, a wrong label is
caught, and a reviewer keeps labeling while a retrain runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

import labelloop.annotate.feedback as loop_module
from labelloop.annotate.feedback import FeedbackLoop
from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path
from labelloop.project import Project


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    df = pd.concat([df[df.label == "spam"].head(80), df[df.label == "ham"].head(220)])
    path = tmp_path_factory.mktemp("loop") / "sms.csv"
    df.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    return path, dict(zip(df.text, df.label, strict=True))


def make(tmp_path: Path, path: Path) -> Project:
    p = Project.init(
        tmp_path / "p",
        name="loop",
        label_field="label",
        labels=[{"name": k, "description": v} for k, v in SMS_SPAM_LABELS.items()],
    )
    p.ingest(path)
    return p


def review(
    p: Project, gold: dict[str, str], n: int, who: str = "sim", wrong: int | None = None
) -> list[int]:
    done = []
    for _ in range(n):
        item = p.next_item(who)
        if item is None:
            break
        label = gold[item["content"]]
        if wrong is not None and len(done) == wrong:
            label = "ham" if label == "spam" else "spam"
        p.submit(item["id"], [label], annotator=who)
        done.append(item["id"])
    return done


def test_labels_arrive_retrain_moves_thresholds_and_queue_and_catches_a_wrong_label(
    tmp_path, data
) -> None:
    path, gold = data
    p = make(tmp_path, path)
    loop = FeedbackLoop(p, retrain_every=40)
    first = loop.step()
    assert first is not None and first.route.auto == 0 and first.student_version is None
    assert loop.step() is None  # nothing new: no retrain
    order_before = list(p.next_for_review(20)["id"])

    # a clearly wrong human label: a spam message labeled ham
    items = p.items()
    spam_item = int(
        items[
            items["content"].str.contains("prize", case=False)
            & items["content"].map(gold).eq("spam")
        ]["id"].iloc[0]
    )
    p.enqueue([int(spam_item)], [1e6])
    wrong_item = p.next_item("sim")
    assert wrong_item["id"] == spam_item
    p.submit(spam_item, ["ham"], annotator="sim")
    # 200 labels: the cold start's 100 typical items, then the 100-item random calibration
    # sample (issue 10) whose labels the thresholds are fit on.
    review(p, gold, 199)

    second = loop.step()
    assert second is not None and second.n_labels == 200
    assert second.student_version is not None and second.held_out_macro_f1 > 0.8
    assert second.route.auto > 0  # thresholds now exist
    assert any(t["threshold"] != float("inf") for t in second.route.thresholds)
    assert list(p.next_for_review(20)["id"]) != order_before  # priorities were re-scored
    flagged = {i["item_id"]: i["reason"] for i in second.label_issues}
    assert int(spam_item) in flagged and "given ham" in flagged[int(spam_item)]
    # the flagged item goes to a second reviewer, not back to the first
    assert all(x["id"] != spam_item for x in [p.next_item("sim") or {"id": None}])
    second_look = p.next_item("other")
    assert second_look["id"] == spam_item
    from labelloop.store.reads import recheck_outcomes

    sent = len(second.label_issues)
    assert recheck_outcomes(p.db, p.id) == {"sent": sent, "answered": 0, "changed": 0}
    p.submit(spam_item, ["spam"], annotator="other")  # the second person corrects it
    assert recheck_outcomes(p.db, p.id) == {"sent": sent, "answered": 1, "changed": 1}
    with p.db.engine.connect() as conn:
        versions = conn.exec_driver_sql("SELECT n_labels, metrics FROM model_versions").all()
    assert [v[0] for v in versions] == [200]


def test_reviewer_keeps_labeling_while_a_retrain_runs(tmp_path, data, monkeypatch) -> None:
    path, gold = data
    p = make(tmp_path, path)
    loop = FeedbackLoop(p, retrain_every=10)
    loop.step()
    review(p, gold, 20)

    in_retrain = threading.Event()
    reviewer_done = threading.Event()
    real_route = loop_module.route

    def slow_route(*args, **kwargs):
        in_retrain.set()
        assert reviewer_done.wait(timeout=60), "the reviewer was blocked by the retrain"
        return real_route(*args, **kwargs)

    monkeypatch.setattr(loop_module, "route", slow_route)
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.setdefault("r", loop.retrain()))
    t.start()
    assert in_retrain.wait(timeout=120)
    labeled = review(p, gold, 3, who="ana")  # while the retrain is in the middle of its work
    reviewer_done.set()
    t.join(timeout=120)
    assert len(labeled) == 3 and "r" in result


def test_model_selection_keeps_the_champion_unless_a_challenger_wins(tmp_path, data) -> None:
    path, gold = data
    p = make(tmp_path, path)
    loop = FeedbackLoop(p, retrain_every=10, select_every=1, flag_label_issues=False)
    loop.step()
    review(p, gold, 60)
    report = loop.retrain()
    sel = loop.last_selection
    assert sel is not None and sel["champion"] == "logreg"
    assert {row["candidate"] for row in sel["table"]} == {
        "logreg",
        "linear_svm",
        "random_forest",
        "mlp",
    }
    table = {row["candidate"]: row["macro_f1"] for row in sel["table"]}
    if sel["replaced"]:
        assert table[sel["best"]] > table["logreg"] and loop.student_algorithm == sel["best"]
    else:
        assert loop.student_algorithm == "logreg"
    assert (
        report.student_version.split("-")[1].startswith(loop.student_algorithm) or sel["replaced"]
    )
    with p.db.engine.connect() as conn:
        metrics = conn.exec_driver_sql("SELECT metrics FROM model_versions").scalars().all()
    assert any('"selection"' in m and "random_forest" in m for m in metrics), metrics


def test_machine_labels_the_retrained_model_no_longer_gives_are_taken_back(tmp_path, data) -> None:
    """A machine label the current models and thresholds do not give (here: corrupted to the
    other label) is taken back at the next routing, at no human cost: the item is labeled
    again by the current rule or sent to people, never left wrong."""
    path, gold = data
    p = make(tmp_path, path)
    loop = FeedbackLoop(p, retrain_every=10, select_every=0)
    loop.step()
    review(p, gold, 180)  # past the cold start and the calibration sample
    loop.retrain()
    fl = p.final_labels()
    machine = fl[fl.source_kind == "machine"]
    assert len(machine) > 0
    # corrupt one machine label: a confident spam item labeled ham by "machines"
    spam = machine[machine["labels"].map(lambda x: x == ["spam"])]
    target = int((spam if len(spam) else machine)["item_id"].iloc[0])
    wrong = "ham" if gold[p.items().set_index("id").loc[target, "content"]] == "spam" else "spam"
    from labelloop.store.labels import set_final_labels

    with p.db.engine.begin() as conn:
        set_final_labels(
            conn,
            [
                {
                    "project_id": p.id,
                    "item_id": target,
                    "labels": [wrong],
                    "source_kind": "machine",
                    "source_name": "ensemble",
                    "source_version": "x",
                    "confidence": 0.99,
                }
            ],
        )
    review(p, gold, 10)
    report = loop.retrain()
    assert report.route.revoked >= 1
    assert not report.label_issues or target not in {i["item_id"] for i in report.label_issues}
    truth = gold[p.items().set_index("id").loc[target, "content"]]
    final = p.final_labels().set_index("item_id")
    if target in final.index:  # labeled again by the current rule, with the right label
        assert (
            final.loc[target, "labels"] == [truth] and final.loc[target, "source_kind"] == "machine"
        )
    else:  # or waiting for a person
        assert p.items().set_index("id").loc[target, "state"] in ("queued", "grouped")
    from labelloop.store.loop_state import count_events

    assert count_events(p.db, p.id, "machine_labels_revoked") >= 1


def test_between_retrains_new_labels_update_the_models_and_the_queue(tmp_path, data) -> None:
    path, gold = data
    p = make(tmp_path, path)
    loop = FeedbackLoop(p, retrain_every=1000, update_every=10, select_every=0)
    loop.step()
    review(p, gold, 30)
    loop.retrain()
    version_before = loop.labelers.student.version
    order_before = list(p.next_for_review(30)["id"])
    review(p, gold, 12)
    assert loop.step() is None  # not a full retrain ...
    assert loop.labelers.student.version != version_before  # ... but the student moved on
    assert len(loop.labelers.humans) == 42
    assert list(p.next_for_review(30)["id"]) != order_before  # and the queue was re-scored
    with p.db.engine.connect() as conn:
        kinds = (
            conn.exec_driver_sql("SELECT kind FROM events WHERE kind = 'update'").scalars().all()
        )
    assert kinds == ["update"]


def test_machine_labels_appear_and_keep_the_precision_promise(tmp_path) -> None:
    """Issue 10: under active learning, machines label a share of the pool by a few hundred
    human labels, with realised precision at the target, overall and per class."""
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text").head(1200)
    path = tmp_path / "sms.csv"
    df.to_csv(path, index=False)
    gold = dict(zip(df.text, df.label, strict=True))
    p = make(tmp_path, path)
    loop = FeedbackLoop(p, retrain_every=50, select_every=0, update_every=0)
    loop.step()
    for _ in range(6):
        review(p, gold, 50)
        loop.step()
    report = loop.history[-1].route
    assert report.calibration_labeled >= 90  # the random sample got its labels
    fl = p.final_labels()
    machine = fl[fl.source_kind == "machine"]
    assert len(machine) > 300
    right = machine["content"].map(gold) == machine["labels"].map(lambda x: x[0])
    assert right.mean() >= 0.95
    per_class = right.groupby(machine["labels"].map(lambda x: x[0])).agg(["size", "mean"])
    assert (per_class[per_class["size"] >= 20]["mean"] >= 0.95).all()
