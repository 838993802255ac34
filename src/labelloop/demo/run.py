"""The main job: the whole loop on a labeled dataset, attended (review app) or simulated.

``run_demo`` creates a project, streams the data in, runs the machine labelers, routes, and then
either opens the review app for a person (the feedback loop retrains beside it) or, with
``simulate=True``, lets a simulated reviewer answer from the dataset's own labels and runs the
loop unattended. A share of the data (``test_share``) is held out and never ingested: the
student's macro-F1 is measured on it, beside a student trained on the same number of labels
picked at random (no loop), and both end in an HTML report with PNG charts.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from labelloop.annotate.feedback import FeedbackLoop
from labelloop.core.errors import LabelloopError
from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path
from labelloop.labelers.llm.factory import ProjectLLM, project_llm_labeler
from labelloop.labelers.student import StudentLabeler
from labelloop.project import Project
from labelloop.registry.student import student_registration
from labelloop.routing.router import audited_precision
from labelloop.store.context import ProjectContext
from labelloop.store.reads import human_label_count, recheck_outcomes

SIMULATED = "simulated-reviewer"
RANDOM_SEEDS = 3  # random-sampling baselines per checkpoint: one draw is too noisy to compare


@dataclass
class Checkpoint:
    """The state of the loop after a retrain."""

    human_labels: int
    student_macro_f1: float | None
    random_macro_f1: float | None
    auto_labeled: int
    auto_share: float
    machine_precision_true: float | None  # against the dataset's labels (simulation only)
    audited: int
    audited_precision: float | None
    audited_low: float | None
    audited_high: float | None
    seconds: float
    llm_answers: int = 0  # items the LLM answered validly so far
    llm_accuracy: float | None = None  # its top label against the dataset's (simulation only)
    llm_candidate_recall: float | None = None  # share whose true label was among those shown
    llm_weight: float | None = None  # its learned weight in the pooled probabilities
    llm_weight_note: str = ""  # what the weight was measured on
    model_version_id: int | None = None  # the stored labelers in use (model_versions row)
    model_trained: bool | None = None  # False: the stored version for these labels was reused
    held_out_macro_f1: float | None = None  # the store's own estimate: out of fold, human labels
    rechecks: int = 0  # labels this retrain sent to a second person
    refreshed: int = 0  # pending items given the new model's suggestions
    retrain_seconds: float | None = None
    # Random sampling over RANDOM_SEEDS draws: random_macro_f1 is their mean, these the range.
    random_macro_f1_low: float | None = None
    random_macro_f1_high: float | None = None
    propagated: int = 0  # items given a person's label as a near-duplicate of the one labeled
    propagated_precision_true: float | None = None  # against the dataset's labels (simulation)


@dataclass
class DemoResult:
    project_dir: str
    items: int
    test_items: int
    simulated: bool
    checkpoints: list[Checkpoint] = field(default_factory=list)
    report_path: str | None = None
    llm: str | None = None
    # Simulation with noise: items the simulated reviewer labeled wrongly on first sight.
    wrong_answers: list[int] = field(default_factory=list)
    # Per label at the end: its auto-accept rule and why, and what machines labeled with it.
    classes: list[dict[str, Any]] = field(default_factory=list)
    # Labels sent to a second person: sent, answered since, answers that changed the label;
    # and the human label actions they are a share of.
    rechecks: dict[str, int] = field(default_factory=dict)
    # The deployed model trained on the loop's final labels, registered and promoted
    # (``deploy_model``): its registry version, scores and the student's beside it.
    deployed: dict[str, Any] = field(default_factory=dict)
    # One monitoring check at the end (``monitor_snapshot``): the metrics the automation
    # watches, the confidence-based estimate against the audits, held-out drift.
    monitoring: dict[str, Any] = field(default_factory=dict)
    # ``embedding.char_ngrams: auto``: each retrain's comparison of the two views, with the
    # human labels it ran at (empty under a fixed setting).
    views: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_labeled(path: Path | None, text_col: str, label_col: str) -> pd.DataFrame:
    """The dataset as a DataFrame with ``text`` and ``label`` columns (clear errors)."""
    src = path or sms_spam_path()
    suffix = src.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(src, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(src, lines=True)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(src)
        else:
            raise LabelloopError(f"{src}: use a .csv, .tsv, .jsonl or .parquet file")
    except (OSError, ValueError) as exc:
        raise LabelloopError(f"{src}: cannot read it ({exc})") from None
    missing = [c for c in (text_col, label_col) if c not in df.columns]
    if missing:
        raise LabelloopError(
            f"{src}: no column {', '.join(map(repr, missing))}; the columns are "
            f"{', '.join(map(str, df.columns))} (use --text-col and --label-col)"
        )
    df = df[[text_col, label_col]].rename(columns={text_col: "text", label_col: "label"})
    df = df.dropna()
    df["text"] = df["text"].astype(str)
    df["label"] = df["label"].astype(str)
    df = df[df["text"].str.strip() != ""].drop_duplicates("text")
    if df["label"].nunique() < 2:
        raise LabelloopError(f"{src}: column {label_col!r} needs at least two distinct labels")
    return df.reset_index(drop=True)


def split_holdout(df: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    counts = df["label"].value_counts()
    strat = df["label"] if counts.min() >= 2 else None
    pool, test = train_test_split(df, test_size=share, random_state=seed, stratify=strat)
    return pool.reset_index(drop=True), test.reset_index(drop=True)


class _Evaluator:
    """Student macro-F1 on the held-out test set, for the loop and for random sampling."""

    def __init__(
        self, loop: FeedbackLoop, pool: pd.DataFrame, test: pd.DataFrame, seed: int
    ) -> None:
        self.loop = loop
        self.label_names = loop.ctx.config.label_names
        self.test = test
        self.test_y = test["label"].to_numpy()
        self.pool = pool
        self.pool_orders = [
            np.random.default_rng([seed, draw]).permutation(len(pool))
            for draw in range(RANDOM_SEEDS)
        ]
        self._vectors: dict[tuple[str, str], np.ndarray] = {}

    def _embedded(self, which: str, texts: list[str]) -> np.ndarray:
        """Vectors of the loop's current embedder (``char_ngrams: auto`` may switch it)."""
        key = (which, self.loop.embedder.model_id)
        if key not in self._vectors:
            self._vectors = {k: v for k, v in self._vectors.items() if k[0] != which}
            self._vectors[key] = self.loop.embedder.embed(texts)
        return self._vectors[key]

    @property
    def test_vectors(self) -> np.ndarray:
        return self._embedded("test", list(self.test["text"]))

    def _f1(self, vectors: np.ndarray, labels: list[str]) -> float | None:
        from sklearn.metrics import f1_score

        if len(set(labels)) < 2:
            return None
        st = StudentLabeler(self.label_names, "single_label").fit(vectors, labels)
        pred = np.array(self.label_names)[st.predict_proba(self.test_vectors).argmax(axis=1)]
        return float(f1_score(self.test_y, pred, average="macro"))

    def loop_f1(self) -> float | None:
        humans = self.loop.labelers.humans if self.loop.labelers else None
        if humans is None or len(humans) == 0:
            return None
        return self._f1(humans.vectors, list(humans.labels))

    def random_f1(self, n: int) -> tuple[float | None, float | None, float | None]:
        """(mean, lowest, highest) macro-F1 of students on ``n`` random pool labels, one per
        draw; Nones when no draw has two labels yet."""
        if n == 0:
            return None, None, None
        pool_vectors = self._embedded("pool", list(self.pool["text"]))
        labels = self.pool["label"].to_numpy()
        scores = []
        for order in self.pool_orders:
            idx = order[: min(n, len(self.pool))]
            f1 = self._f1(pool_vectors[idx], list(labels[idx]))
            if f1 is not None:
                scores.append(f1)
        if not scores:
            return None, None, None
        return float(np.mean(scores)), min(scores), max(scores)


def _precision_against(frame: pd.DataFrame, gold: dict[str, str]) -> float | None:
    """Share of the final labels in ``frame`` that match the dataset's label (None if empty)."""
    if frame.empty:
        return None
    return float(
        np.mean(
            [ls[0] == gold.get(c) for c, ls in zip(frame["content"], frame["labels"], strict=True)]
        )
    )


def _machine_stats(p: Project, gold: dict[str, str]) -> dict[str, Any]:
    """Machine-labeled share, their precision against the dataset, the audited precision, and
    the labels copied to near-duplicates."""
    fl = p.final_labels()
    machine = fl[fl["source_kind"] == "machine"] if not fl.empty else fl
    copied = fl[fl["source_kind"] == "propagated"] if not fl.empty else fl
    total = p.count()
    audit = p.audit_results()
    est = low = high = None
    if len(audit):
        est, low, high = audited_precision(audit["correct"].to_numpy())
    return {
        "auto_labeled": int(len(machine)),
        "auto_share": len(machine) / total if total else 0.0,
        "machine_precision_true": _precision_against(machine, gold),
        "audited": int(len(audit)),
        "audited_precision": est,
        "audited_low": low,
        "audited_high": high,
        "propagated": int(len(copied)),
        "propagated_precision_true": _precision_against(copied, gold),
    }


def _finite(x: Any) -> float | None:
    """``x`` as a float, or None where it is inf or nan (they are not JSON)."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


def class_table(
    thresholds: list[dict[str, Any]], machine: pd.DataFrame, gold: dict[str, str] | None
) -> list[dict[str, Any]]:
    """Per label: the routing rule in force (threshold, evidence, why it auto-accepts nothing)
    and the machine labels it produced, with their precision against ``gold`` (the dataset's
    labels, simulation only; None otherwise)."""
    given = [ls[0] for ls in machine["labels"]] if len(machine) else []
    right = (
        [g == gold.get(c) for g, c in zip(given, machine["content"], strict=True)]
        if gold is not None and len(machine)
        else []
    )
    out = []
    for t in thresholds:
        mine = [r for g, r in zip(given, right, strict=False) if g == t["label"]]
        count = sum(1 for g in given if g == t["label"])
        out.append(
            {
                "label": t["label"],
                "threshold": _finite(t["threshold"]),  # None: auto-accepts nothing
                "evidence": t["support"],
                "evidence_precision": _finite(t["precision"]),
                "lower_bound": _finite(t["lower_bound"]),
                "reason": t.get("reason", ""),
                "machine_labels": count,
                "precision_true": float(np.mean(mine)) if mine else None,
            }
        )
    return out


def _llm_stats(p: Project, gold: dict[str, str], labeler: str) -> dict[str, Any]:
    """How the LLM's valid answers compare with the dataset's labels."""
    rows = p.suggestions(labeler)
    rows = rows[rows["status"] == "ok"].drop_duplicates("item_id", keep="last")
    if rows.empty:
        return {"llm_answers": 0}
    truth = [gold.get(c) for c in rows["content"]]
    return {
        "llm_answers": int(len(rows)),
        "llm_accuracy": float(np.mean([a == t for a, t in zip(rows["label"], truth, strict=True)])),
        "llm_candidate_recall": float(
            np.mean([probs.get(t, 0.0) > 0 for probs, t in zip(rows["probs"], truth, strict=True)])
        ),
    }


def run_demo(
    out_dir: Path,
    *,
    data: Path | None = None,
    text_col: str = "text",
    label_col: str = "label",
    simulate: bool = False,
    budget: int = 400,
    batch: int = 25,
    retrain_every: int = 50,
    test_share: float = 0.2,
    llm: Any = None,
    seed: int = 0,
    console: Console | None = None,
    noise: float = 0.0,
    settings: dict[str, Any] | None = None,
    deploy: bool = True,
    reviewers: int = 1,
) -> tuple[DemoResult, Project, FeedbackLoop]:
    """Run the loop; returns the result, the project and the loop (still usable).

    ``noise``: in a simulation, the share of answers where the simulated reviewer gives a
    wrong label (another label, at random), to measure what rechecks catch. ``settings``:
    further project file sections (``{"metrics": {"calibration_share": 0.2}}``). ``deploy``:
    in a simulation, end with the lifecycle (``deploy_model``). ``reviewers``: simulated
    people taking turns (with two or more, a label sent for a recheck reaches another person
    and is answered)."""
    if not 0.0 <= noise < 1.0:
        raise LabelloopError(f"noise={noise}: expected a share in [0, 1)")
    if reviewers < 1:
        raise LabelloopError(f"reviewers={reviewers}: expected at least 1")
    console = console or Console()
    df = load_labeled(data, text_col, label_col)
    pool, test = split_holdout(df, test_share, seed)
    gold = dict(zip(pool["text"], pool["label"], strict=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    pool_file = out_dir / "pool.csv"
    pool.to_csv(pool_file, index=False)
    names = sorted(df["label"].unique())
    described = data is None
    labels = [
        {"name": n, "description": SMS_SPAM_LABELS.get(n, n) if described else n} for n in names
    ]
    project_dir = out_dir / "project"
    if (project_dir / "labelloop.yaml").exists():
        raise LabelloopError(
            f"{project_dir} already holds a project: pick another --out or remove it"
        )
    # Two nearest examples, not four: the bundled SmolLM2 was as accurate with two on SMS spam
    # (0.94 vs 0.91, docs/benchmarks.md) and reads a prompt about half as long.
    llm_settings = {"enabled": llm is not None, "few_shot": 2}
    sections = dict(settings or {})
    loop_settings = {"retrain_every": retrain_every, **sections.pop("loop", {})}
    p = Project.init(
        project_dir,
        name="demo",
        labels=labels,
        label_field="label",
        labelers={"llm": llm_settings},
        loop=loop_settings,
        **sections,
    )
    console.print(
        f"[bold]Project[/] {project_dir} · {len(names)} labels · {len(pool):,} items to label, "
        f"{len(test):,} held out to measure the student"
    )
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("ingest", total=len(pool))
        p.ingest(pool_file, progress=lambda done, _: bar.update(task, completed=done))
    if hasattr(llm, "bind"):  # a labeler that needs the project (its embedder, its cache)
        llm = llm.bind(p.ctx)
    loop = FeedbackLoop(
        p, retrain_every=retrain_every, llm=llm, on_retrain=student_registration(p.ctx)
    )
    result = DemoResult(
        str(project_dir),
        len(pool),
        len(test),
        simulate,
        llm=getattr(llm, "version", None) if llm is not None else None,
    )
    with console.status("embedding items and running the machine labelers..."):
        first = loop.retrain()
    console.print(
        f"Machines suggested labels for {first.suggested:,} items; {first.route.queued:,} queued for people "
        f"(no human labels yet, so nothing is auto-accepted)."
    )
    evaluator = _Evaluator(loop, pool, test, seed)
    started = time.perf_counter()

    def checkpoint() -> None:
        n = len(loop.labelers.humans) if loop.labelers else 0
        stats = _machine_stats(p, gold)
        if llm is not None:
            stats.update(_llm_stats(p, gold, llm.labeler_id))
            # The last routing that weighed the LLM (one that found nothing pending did not).
            weighed = [r.route for r in loop.history if r.route.llm_weight_note]
            if weighed:
                stats["llm_weight"] = weighed[-1].llm_weight
                stats["llm_weight_note"] = weighed[-1].llm_weight_note
        if loop.history:
            r = loop.history[-1]
            stats.update(
                model_version_id=r.model_version_id,
                model_trained=r.trained,
                held_out_macro_f1=r.held_out_macro_f1,
                rechecks=len(r.label_issues),
                refreshed=r.route.refreshed,
                retrain_seconds=r.seconds,
            )
        rnd, rnd_low, rnd_high = evaluator.random_f1(n)
        cp = Checkpoint(
            n,
            evaluator.loop_f1(),
            rnd,
            seconds=time.perf_counter() - started,
            random_macro_f1_low=rnd_low,
            random_macro_f1_high=rnd_high,
            **stats,
        )
        result.checkpoints.append(cp)
        f1 = f"{cp.student_macro_f1:.3f}" if cp.student_macro_f1 is not None else "-"
        rf1 = f"{cp.random_macro_f1:.3f}" if cp.random_macro_f1 is not None else "-"
        prec = f"{cp.machine_precision_true:.3f}" if cp.machine_precision_true is not None else "-"
        llm_note = ""
        if cp.llm_accuracy is not None:
            llm_note = (
                f" · LLM {cp.llm_answers} answers, accuracy {cp.llm_accuracy:.2f}, "
                f"weight {cp.llm_weight or 0:.2f}"
            )
        console.print(
            f"  {n:>5} human labels · student macro-F1 {f1} (random sampling {rf1}) · "
            f"machine-labeled {cp.auto_labeled:,} ({cp.auto_share:.0%}), precision {prec}"
            + llm_note
        )

    if not simulate:
        return result, p, loop
    console.print(
        f"[yellow]SIMULATION[/]: a simulated reviewer answers from the dataset's own labels "
        f"(budget {budget} labels)."
    )
    checkpoint()
    done = 0
    noise_rng = np.random.default_rng([seed, 10])
    answered_once: set[int] = set()
    wrong: set[int] = set()  # items whose first answer was wrong (injected noise)

    def answer(item: dict[str, Any]) -> str:
        truth = gold[item["content"]]
        if noise and noise_rng.random() < noise:
            if item["id"] not in answered_once:
                wrong.add(item["id"])
            return str(noise_rng.choice([n for n in names if n != truth]))
        return truth

    while done < budget:
        answered = 0
        # Stop a batch where a retrain falls due, so --retrain-every 40 retrains at 40, not 50.
        since = human_label_count(p.db, p.id) - max(loop.labels_at_last_retrain, 0)
        until_retrain = max(loop.retrain_every - since, 1)
        for k in range(min(batch, budget - done, until_retrain)):
            who = SIMULATED if k % reviewers == 0 else f"{SIMULATED}-{k % reviewers + 1}"
            item = p.next_item(who)
            if item is None:
                break
            p.submit(item["id"], [answer(item)], annotator=who)
            answered_once.add(item["id"])
            answered += 1
        done += answered
        if loop.step() is not None:
            checkpoint()
        if answered == 0:
            break
    if loop.labels_at_last_retrain != done:
        loop.retrain()
        checkpoint()
    result.wrong_answers = sorted(wrong)
    # The rule last in force: a retrain that found nothing pending (the queue ran dry) fits none.
    rules = [r.route.thresholds for r in loop.history if r.route.thresholds]
    if rules:
        fl = p.final_labels()
        machine = fl[fl["source_kind"] == "machine"] if not fl.empty else fl
        result.classes = class_table(rules[-1], machine, gold)
    result.views = [{"n_labels": r.n_labels, **r.view} for r in loop.history if r.view]
    result.rechecks = {
        **recheck_outcomes(p.db, p.id),
        "label_actions": human_label_count(p.db, p.id),
    }
    if simulate and deploy:
        with console.status("training, registering and promoting the deployed model..."):
            result.deployed = deploy_model(p, test)
        with console.status("one monitoring check..."):
            result.monitoring = monitor_snapshot(p, test, gold)
        d = result.deployed
        if "error" in d:
            console.print(f"[yellow]deployed model:[/] {d['error']}")
        else:
            console.print(
                f"Deployed model: {d['winner']} v{d['version']} "
                f"({'champion' if d['promoted'] else 'not promoted'}: {d['reason']}); "
                f"held-out macro-F1 {d['holdout_macro_f1']:.3f}"
            )
    return result, p, loop


def monitor_snapshot(p: Project, test: pd.DataFrame, gold: dict[str, str]) -> dict[str, Any]:
    """What ``labelloop automate`` would measure now, plus two checks only a simulation can
    make: the confidence-based estimate of machine precision against the audited precision
    and the dataset's own labels, and embedding drift of the held-out items against the pool
    (the same distribution: it should not fire)."""
    from labelloop.automate.signals import collect
    from labelloop.embed.factory import project_embedder
    from labelloop.monitor.drift import embedding_drift

    names = {"audited_precision", "estimated_precision", "audit_change", "champion_accuracy"}
    try:
        values = collect(p.ctx, names)
    except LabelloopError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = {"values": values}
    fl = p.final_labels()
    machine = fl[fl["source_kind"] == "machine"] if not fl.empty else fl
    if len(machine):
        truth = [gold.get(c) for c in machine["content"]]
        given = [ls[0] if len(ls) else None for ls in machine["labels"]]
        out["machine_precision_true"] = float(
            np.mean([t == g for t, g in zip(truth, given, strict=True)])
        )
        out["machine_labels"] = int(len(machine))
    embedder = project_embedder(p.ctx)
    pool = p.items().sort_values("id")["content"].head(2000).tolist()
    drift = embedding_drift(
        np.asarray(embedder.embed(pool), dtype=np.float32),
        np.asarray(embedder.embed(test["text"].tolist()), dtype=np.float32),
    )
    out["holdout_drift"] = {
        "auc": drift.auc,
        "threshold": drift.auc_threshold,
        "drifted": drift.drifted,
    }
    return out


def deploy_model(p: Project, test: pd.DataFrame, *, trials: int = 4) -> dict[str, Any]:
    """The lifecycle after the loop: train the deployed model on the final labels (a short
    tuning budget), register it in MLflow, promote it, and score the champion on the demo's
    held-out items (never shown to the loop) through the same predictor the prediction app
    serves. Errors are reported, not raised: the loop's result stands without them."""
    from sklearn.metrics import f1_score

    from labelloop.mlops.predictor import Predictor

    started = time.perf_counter()
    try:
        trained = p.train(trials=trials, budget_seconds=60)
        decision = p.promote(trained.registered_version)
        champion = p.registry.by_alias("champion")
        if champion is None:
            raise LabelloopError("no champion after promotion")
        answers = Predictor.load(champion.path).predict_frame(test["text"].tolist())
    except LabelloopError as exc:
        return {"error": str(exc)}
    students = p.registry.versions(p.registry.student_name)
    return {
        "name": p.registry.name,
        "version": champion.version,
        "winner": trained.winner,
        "promoted": decision.promoted,
        "reason": decision.reason,
        "dataset_version": trained.dataset_version,
        "split_sizes": trained.split_sizes,
        "cv_scores": trained.cv_scores,
        "test_macro_f1": trained.test_metrics.get("macro_f1"),
        "holdout_macro_f1": float(
            f1_score(test["label"].astype(str), answers["label"], average="macro")
        ),
        "holdout_items": len(test),
        "student_versions": len(students),
        "tracking_uri": p.registry.registry.tracking_uri,
        "seconds": time.perf_counter() - started,
    }


def local_llm_for_demo(console: Console, max_calls: int) -> Any:
    """The bundled SmolLM2 through llama.cpp, or None (with a note) if it is not installed."""
    try:
        import llama_cpp  # noqa: F401

        from labelloop.labelers.llm import default_model_path

        default_model_path()
    except Exception:
        console.print(
            "[yellow]note:[/] the local LLM is not installed (pip install 'labelloop[llm]'); "
            "running with the zero-shot and student labelers only."
        )
        return None
    from labelloop.labelers.llm.local import REBUILD_HINT, llama_crash_reason

    reason = llama_crash_reason()
    if reason is not None:
        console.print(
            f"[yellow]note:[/] {reason}; running with the zero-shot and student labelers only. "
            f"To use the local LLM, {REBUILD_HINT}",
            highlight=False,
        )
        return None
    return _DeferredLLM(max_calls)


class _DeferredLLM:
    """Built on first use, once the demo's project (its embedder and cache folder) exists."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.labeler: ProjectLLM | None = None

    def bind(self, ctx: ProjectContext) -> ProjectLLM:
        if self.labeler is None:
            # SmolLM2-135M needs examples: it waits for the first human labels.
            self.labeler = project_llm_labeler(ctx, self.max_calls, min_examples=10)
        return self.labeler
