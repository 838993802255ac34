"""The main job, `labelloop demo --simulate`, on a small labeled file: it runs the loop
unattended and writes its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from labelloop.cli.main import app
from labelloop.demo.data import sms_spam_path


def test_demo_simulate_on_a_small_file_writes_the_report(tmp_path: Path) -> None:
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    small = pd.concat([df[df.label == "spam"].head(60), df[df.label == "ham"].head(240)])
    data = tmp_path / "small.jsonl"
    small.rename(columns={"text": "message", "label": "kind"}).to_json(
        data, orient="records", lines=True
    )
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--simulate",
            "--out",
            str(out),
            "--data",
            str(data),
            "--text-col",
            "message",
            "--label-col",
            "kind",
            "--budget",
            "60",
            "--retrain-every",
            "20",
            "--no-llm",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "SIMULATION" in result.output
    report = (out / "report" / "report.html").read_text()
    assert "SIMULATION" in report and "human labels saved" in report
    assert (out / "report" / "learning_curve.png").stat().st_size > 1000
    assert (out / "report" / "machine_labels.png").stat().st_size > 1000
    # The loop as the service runs it: each retrain stored a model version, shown and saved.
    assert "Model versions" in report
    saved = json.loads((out / "report" / "checkpoints.json").read_text())
    checkpoints = saved["checkpoints"]
    # Per label: the rule in force, its evidence and what it produced, in the page and the JSON.
    assert "<h2>Per label</h2>" in report
    classes = {c["label"]: c for c in saved["classes"]}
    assert set(classes) == {"ham", "spam"}
    for c in classes.values():
        assert (c["threshold"] is None) == bool(c["reason"])  # no rule, and it says why
        assert c["machine_labels"] >= 0
    assert sum(c["machine_labels"] for c in classes.values()) == checkpoints[-1]["auto_labeled"]
    # Rechecks: how many were sent, of how many label actions, and what came of them.
    assert "<h2>Rechecks</h2>" in report
    assert saved["rechecks"]["label_actions"] == checkpoints[-1]["human_labels"]
    assert saved["rechecks"]["answered"] <= saved["rechecks"]["sent"]
    # The random baseline is a band over several draws, its mean inside it.
    last = checkpoints[-1]
    assert last["random_macro_f1_low"] <= last["random_macro_f1"] <= last["random_macro_f1_high"]
    versions = [c["model_version_id"] for c in checkpoints if c["model_version_id"]]
    assert versions and versions == sorted(set(versions))  # a new version per retrain
    # --retrain-every 20 retrains at 20 and 40 labels, not where a batch of 25 happens to end.
    assert [c["human_labels"] for c in checkpoints][:3] == [0, 20, 40]
    # The lifecycle after the loop: trained, registered in MLflow, promoted, scored held out.
    deployed = saved["deployed"]
    assert "error" not in deployed, deployed
    assert deployed["version"] == 1 and deployed["promoted"]
    assert 0.5 < deployed["holdout_macro_f1"] <= 1.0
    assert deployed["student_versions"] == len(versions)
    assert "<h2>Deployed model</h2>" in report and "demo-student" in report
    assert (out / "project" / "mlflow.db").is_file()
    # One monitoring check: the confidence-based estimate beside the audits, held-out drift.
    monitoring = saved["monitoring"]
    assert "error" not in monitoring, monitoring
    assert set(monitoring["values"]) >= {"audited_precision", "estimated_precision"}
    assert monitoring["holdout_drift"]["drifted"] is False  # held-out items: the same data
    assert "<h2>Monitoring</h2>" in report

    from labelloop.demo.report import _audited
    from labelloop.demo.run import Checkpoint

    audited = Checkpoint(100, 0.9, 0.8, 50, 0.5, 0.97, 12, 0.9167, 0.646, 0.985, 1.0)
    assert _audited(audited) == "91.7% [64.6%, 98.5%] (12 audited)"


def test_demo_with_char_ngrams_runs_the_whole_loop_on_them(tmp_path: Path) -> None:
    """``--char-ngrams``: the project embeds with character n-grams appended, and every stage
    after it (routing, the deployed model, its held-out drift check) reads those vectors."""
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    small = pd.concat([df[df.label == "spam"].head(40), df[df.label == "ham"].head(160)])
    data = tmp_path / "small.csv"
    small.to_csv(data, index=False)
    out = tmp_path / "demo"
    args = ["demo", "--simulate", "--out", str(out), "--data", str(data), "--budget", "40"]
    args += ["--retrain-every", "20", "--no-llm", "--char-ngrams", "256"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = (out / "project" / "labelloop.yaml").read_text()
    assert "char_ngrams: 256" in config
    saved = json.loads((out / "report" / "checkpoints.json").read_text())
    deployed = saved["deployed"]
    assert "error" not in deployed, deployed
    assert 0.5 < deployed["holdout_macro_f1"] <= 1.0
    assert "error" not in saved["monitoring"], saved["monitoring"]
    from labelloop.mlops.predictor import Predictor

    model = next((out / "project").rglob("model.joblib"))
    predictor = Predictor.load(model)
    assert predictor.featurizer == "embedder:minilm-l6-v2-int8+chars256"
    assert predictor.predict_proba(["WIN a FREE prize, call now"]).shape == (1, 2)
    # An edge bundle hashes the n-grams on the device, without scikit-learn, to the same answers.
    from labelloop.edge import EdgeAnnotator
    from labelloop.serve.edge_export import export_edge

    manifest = export_edge(predictor, tmp_path / "bundle")
    assert manifest["embedding"]["char_ngrams"] == 256
    probe = small.text.tolist()[:60] + ["", "WIN a FREE prize, call now"]
    with EdgeAnnotator(tmp_path / "bundle", tmp_path / "edge.sqlite") as edge:
        np.testing.assert_allclose(
            edge.predict_proba(probe), predictor.predict_proba(probe), atol=1e-4, rtol=0
        )


class CueBlindEmbedder:
    """Random unit vectors keyed by the text: they say nothing about the label."""

    model_id, dim = "cue-blind-16d", 16

    def embed(self, texts) -> np.ndarray:
        import hashlib

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=self.dim)
            out[i] = v / np.linalg.norm(v)
        return out


def test_auto_char_ngrams_switch_the_project_when_the_sample_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``embedding.char_ngrams: auto`` on a task whose label is a surface cue the sentence
    vectors cannot see: the loop compares both views on the calibration sample, switches the
    project to n-grams, and every later stage (labelers, machine labels, deployed model) reads
    them."""
    from labelloop.demo.run import run_demo
    from labelloop.embed import factory

    monkeypatch.setattr(factory, "_text_embedder", lambda cfg: CueBlindEmbedder())
    rng = np.random.default_rng(0)
    words = ["song", "great", "love", "video", "music", "voice", "best", "ever", "this", "wow"]
    spam = rng.random(400) < 0.5
    texts = [
        " ".join(rng.choice(words, 6)) + (" visit www.win-prize.com" if s else f" #{i}")
        for i, s in enumerate(spam)
    ]
    data = tmp_path / "cue.csv"
    pd.DataFrame({"text": texts, "label": np.where(spam, "spam", "ham")}).to_csv(data, index=False)
    result, project, loop = run_demo(
        tmp_path / "demo",
        data=data,
        simulate=True,
        budget=100,
        retrain_every=50,
        settings={"embedding": {"char_ngrams": "auto"}},
    )
    try:
        views = [r.view for r in loop.history if r.view is not None]
        assert views, "no retrain compared the views"
        first = views[0]
        assert first["chosen"] == "sentence+chars1024" and first["char_ngrams"] == 1024
        assert first["scored_on"] == "random sample" and first["n_scored"] >= 30
        assert first["log_loss"]["sentence+chars1024"] < first["log_loss"]["sentence"]
        assert loop.embedder.model_id == "cue-blind-16d+chars1024"
        assert loop.history[-1].embedding == "cue-blind-16d+chars1024"
        assert loop.labelers.humans.vectors.shape[1] == 16 + 1024
        assert result.checkpoints[-1].student_macro_f1 > 0.9
        assert result.views[0]["chosen"] == "sentence+chars1024"
        from labelloop.demo.report import write_report

        page = write_report(result, tmp_path / "report", 0.95).read_text()
        assert "<h2>Vectors</h2>" in page and "sentence+chars1024 from" in page
        # The deployed model records the view it was trained on, not "auto".
        from labelloop.mlops.predictor import Predictor

        predictor = Predictor.load(next((tmp_path / "demo" / "project").rglob("model.joblib")))
        assert predictor.bundle["embedding"]["char_ngrams"] == 1024
        assert predictor.predict_proba(["wow visit www.win-prize.com"]).argmax() == 1
    finally:
        project.close()


def test_demo_names_a_missing_column(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    data.write_text("body,label\nhello,a\nbye,b\n")
    result = CliRunner().invoke(
        app, ["demo", "--simulate", "--out", str(tmp_path / "d"), "--data", str(data), "--no-llm"]
    )
    assert result.exit_code == 1
    assert "no column 'text'" in result.output and "--text-col" in result.output


class OracleLLM:
    """Stands in for the LLM: answers every item with the dataset's label, among candidates."""

    labeler_id = "llm:oracle"
    version = "oracle/1"
    candidate_labels = 1  # fewer than the taxonomy: the cascade passes candidates

    def __init__(self, gold: dict[str, str], names: list[str]) -> None:
        self.gold, self.names, self.calls, self.candidates = gold, names, 0, []

    @property
    def remaining_calls(self) -> int:
        return max(30 - self.calls, 0)

    def suggest_among(self, items, candidates):
        from labelloop.core.types import Suggestion

        self.calls += len(items)
        self.candidates.extend(candidates)
        out = []
        for item, shown in zip(items, candidates, strict=True):
            truth = self.gold[item.content]
            probs = {n: (1.0 if n == truth else 0.0) for n in self.names}
            if truth not in shown:  # what a real LLM shown only the candidates would do
                probs = {n: (1.0 if n == shown[0] else 0.0) for n in self.names}
            out.append(
                Suggestion(item.id, item.content_hash, self.labeler_id, self.version, probs, 1.0)
            )
        return out


def test_demo_measures_the_llm_against_the_dataset(tmp_path: Path) -> None:
    from labelloop.demo.report import write_report
    from labelloop.demo.run import run_demo

    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    small = pd.concat([df[df.label == "spam"].head(40), df[df.label == "ham"].head(160)])
    data = tmp_path / "small.csv"
    small.to_csv(data, index=False)
    llm = OracleLLM(dict(zip(small.text, small.label, strict=True)), ["ham", "spam"])
    result, project, _ = run_demo(
        tmp_path / "demo", data=data, simulate=True, budget=60, retrain_every=20, llm=llm
    )
    assert llm.calls == 30 and all(len(c) == 1 for c in llm.candidates)
    rows = project.suggestions(llm.labeler_id)
    assert len(rows) == 30 and set(rows["status"]) == {"ok"}
    last = result.checkpoints[-1]
    assert last.llm_answers == 30
    recall = sum(
        llm.gold[c] in shown for c, shown in zip(rows["content"], llm.candidates, strict=True)
    )
    assert last.llm_candidate_recall == recall / 30 and last.llm_accuracy == recall / 30
    page = write_report(result, tmp_path / "report", 0.95).read_text()
    assert "LLM labeler</h2>" in page and f"{last.llm_answers:,}</b> items" in page
    project.close()
