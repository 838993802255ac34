"""The demo's report: an HTML page with PNG charts, readable without a server."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from labelloop.demo.run import RANDOM_SEEDS, DemoResult  # noqa: E402


def _learning_curve(result: DemoResult, path: Path) -> None:
    cps = [c for c in result.checkpoints if c.student_macro_f1 is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(
        [c.human_labels for c in cps],
        [c.student_macro_f1 for c in cps],
        "o-",
        label="labelloop loop (active learning)",
    )
    rnd = [c for c in cps if c.random_macro_f1 is not None]
    x = [c.human_labels for c in rnd]
    ax.plot(
        x,
        [c.random_macro_f1 for c in rnd],
        "s--",
        label=f"random sampling, no loop ({RANDOM_SEEDS} draws: mean, range)",
    )
    band = [c for c in rnd if c.random_macro_f1_low is not None]
    if band:
        ax.fill_between(
            [c.human_labels for c in band],
            [c.random_macro_f1_low for c in band],
            [c.random_macro_f1_high for c in band],
            color="tab:orange",
            alpha=0.2,
        )
    ax.set_ylim(0, 1.0)  # from zero: gaps look as large as they are
    ax.set_xlabel("human labels")
    ax.set_ylabel(f"student macro-F1 on {result.test_items:,} held-out items")
    ax.set_title("Student quality against human labels")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine_share(result: DemoResult, path: Path) -> None:
    cps = result.checkpoints
    fig, ax = plt.subplots(figsize=(6.4, 4))
    x = [c.human_labels for c in cps]
    ax.plot(x, [c.auto_share for c in cps], "o-", label="share of items labeled by machines")
    prec = [
        (c.human_labels, c.machine_precision_true)
        for c in cps
        if c.machine_precision_true is not None
    ]
    if prec:
        ax.plot(*zip(*prec, strict=True), "s-", label="their precision (vs the dataset's labels)")
    aud = [(c.human_labels, c.audited_precision) for c in cps if c.audited_precision is not None]
    if aud:
        ax.plot(*zip(*aud, strict=True), "^:", label="their precision (audited by people)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("human labels")
    ax.set_title("Machine labels")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _audited(c: Any) -> str:
    """Audited precision with its 95% interval and what it was measured on."""
    if c.audited_precision is None:
        return f"— ({c.audited} audited)"
    return (
        f"{_pct(c.audited_precision)} [{_pct(c.audited_low)}, {_pct(c.audited_high)}] "
        f"({c.audited} audited)"
    )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _bias_table(bias: pd.DataFrame | None) -> str:
    if bias is None or bias.empty:
        return ""
    rows = "\n".join(
        f"<tr><td>{html.escape(str(r.labeler))}</td><td>{r.n:,}</td><td>{r.total_variation:.3f}</td>"
        f"<td>{html.escape(str(r.mode))}: {r.mode_share:.0%} (people {r.human_mode_share:.0%})</td>"
        f"<td>{'check: over-predicts ' + html.escape(r.over_predicted) if r.over_predicted else ('check' if r.flagged else 'ok')}</td></tr>"
        for r in bias.itertuples()
    )
    return (
        "<h2>Machine labelers against people</h2><table><thead><tr><th>labeler</th><th>answers</th>"
        "<th>skew (total variation)</th><th>most frequent answer</th><th>flag</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def write_report(
    result: DemoResult, folder: Path, target: float, bias: pd.DataFrame | None = None
) -> Path:
    """``report.html`` with ``learning_curve.png``, ``machine_labels.png`` and the checkpoints
    as ``checkpoints.json`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints.json").write_text(
        json.dumps(result.as_dict(), indent=2, default=str), encoding="utf-8"
    )
    _learning_curve(result, folder / "learning_curve.png")
    _machine_share(result, folder / "machine_labels.png")
    rows = "\n".join(
        f"<tr><td>{c.human_labels}</td><td>{_num(c.student_macro_f1)}</td><td>{_num(c.random_macro_f1)}</td>"
        f"<td>{c.auto_labeled:,}</td><td>{_pct(c.auto_share)}</td><td>{_pct(c.machine_precision_true)}</td>"
        f"<td>{_audited(c)}</td><td>{c.seconds:.0f}</td></tr>"
        for c in result.checkpoints
    )
    saved = _saved_paragraph(result, target)
    sim = (
        '<p class="sim">SIMULATION: the reviewer was simulated; it answered with the dataset\'s own '
        "labels.</p>"
        if result.simulated
        else ""
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labelloop demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #1d2330; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.sim {{ background: #fff4d6; border: 1px solid #e0b64b; padding: .6em 1em; }}
img {{ max-width: 48%; }}
</style></head><body>
<h1>labelloop demo report</h1>
{sim}
<p>Project: <code>{html.escape(result.project_dir)}</code> · {result.items:,} items to label ·
{result.test_items:,} items held out (never shown to the loop) to measure the student ·
LLM labeler: {html.escape(result.llm or "off")}</p>
{saved}
<img src="learning_curve.png" alt="student macro-F1 against human labels, loop versus random sampling">
<img src="machine_labels.png" alt="share of items labeled by machines and their precision">
<h2>After each retrain</h2>
<table><thead><tr><th>human labels</th><th>student macro-F1</th><th>random sampling macro-F1</th>
<th>machine-labeled</th><th>share</th><th>precision (dataset labels)</th><th>audited precision</th>
<th>seconds</th></tr></thead><tbody>
{rows}
</tbody></table>
{_class_table(result, target)}
{_rechecks_paragraph(result)}
{_views_paragraph(result)}
{_versions_table(result)}
{_deployed_paragraph(result)}
{_monitoring_paragraph(result)}
{_llm_paragraph(result)}
{_bias_table(bias)}
<p>Macro-F1 is measured on the held-out items. "Random sampling" trains the same student on the same
number of labels drawn at random from the pool, without the loop. Machine precision is measured
against the dataset's labels (possible only in a simulation) and, as in production, on the audited
share that people re-checked.</p>
</body></html>
"""
    out = folder / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _saved_paragraph(result: DemoResult, target: float) -> str:
    """Who labeled what, and when machines labeled nothing, why (the labels' stated reasons)."""
    last = result.checkpoints[-1] if result.checkpoints else None
    if last is None:
        return ""
    saved = last.auto_labeled + last.propagated
    copied = (
        f" and <b>{last.propagated:,}</b> took a person's label as near-duplicates of an item "
        f"people labeled (precision against the dataset {_pct(last.propagated_precision_true)})"
        if last.propagated
        else ""
    )
    out = (
        f"<p><b>{last.human_labels + saved:,}</b> of {result.items:,} items have a label: people "
        f"labeled <b>{last.human_labels:,}</b>, machines <b>{last.auto_labeled:,}</b> at a "
        f"precision target of {target:.0%}{copied}. <b>{saved:,} human labels saved</b>.</p>"
    )
    if last.auto_labeled == 0 and result.classes:
        reasons = Counter(
            c["reason"] or "auto-accepts, but no item reached its threshold" for c in result.classes
        )
        items = "".join(
            f"<li>{html.escape(r)} ({n} label{'s' if n > 1 else ''})</li>"
            for r, n in reasons.most_common()
        )
        out += (
            "<p>Why machines labeled nothing: no label's rule could promise the target yet. "
            "More labels on the calibration sample (the random items people see first) narrow "
            f"the bounds; a lower <code>metrics.precision_target</code> passes sooner.</p><ul>{items}</ul>"
        )
    return out


def _class_table(result: DemoResult, target: float) -> str:
    """Per label: its auto-accept rule, the evidence behind it, and what it produced."""
    if not result.classes:
        return ""
    simulated = any(c["precision_true"] is not None for c in result.classes) or result.simulated
    rows = []
    for c in sorted(result.classes, key=lambda c: (-c["machine_labels"], c["label"])):
        rule = f"confidence &ge; {c['threshold']:.3f}" if c["threshold"] is not None else "none"
        true = _pct(c["precision_true"])
        if (
            c["precision_true"] is not None
            and c["machine_labels"] >= 20
            and c["precision_true"] < target
        ):
            true = f"<b>{true}</b>"
        rows.append(
            f"<tr><td>{html.escape(str(c['label']))}</td><td>{rule}</td><td>{c['evidence']:,}</td>"
            f"<td>{_pct(c['evidence_precision'])}</td><td>{_pct(c['lower_bound'])}</td>"
            f"<td>{c['machine_labels']:,}</td>"
            + (f"<td>{true}</td>" if simulated else "")
            + f"<td>{html.escape(c['reason'] or '')}</td></tr>"
        )
    head_true = "<th>precision (dataset labels)</th>" if simulated else ""
    return (
        "<h2>Per label</h2><p>Each label auto-accepts items whose calibrated confidence reaches "
        "its threshold, fit on the calibration sample with strength borrowed from the other "
        f"labels: its evidence is the sampled items above the threshold (effective count), their "
        f"share right and the 95% lower bound that must reach {target:.0%}. Audits of machine "
        "labels raise a threshold that falls short. Bold: a label with 20 or more machine "
        "labels below target.</p>"
        f"<table><thead><tr><th>label</th><th>rule</th><th>evidence</th><th>right</th>"
        f"<th>lower bound</th><th>machine labels</th>{head_true}<th>why not auto-accepted</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _views_paragraph(result: DemoResult) -> str:
    """``embedding.char_ngrams: auto``: which vectors the student read, and why."""
    if not result.views:
        return ""
    last = result.views[-1]
    parts, current = ["sentence vectors from the start"], "sentence"
    for v in result.views:
        if v["chosen"] != current:
            current = v["chosen"]
            parts.append(f"{html.escape(str(current))} from {v['n_labels']:,} human labels")
    losses = ", ".join(
        f"{html.escape(str(k))} {loss:.3f}" for k, loss in sorted(last["log_loss"].items())
    )
    return (
        "<h2>Vectors</h2><p><code>embedding.char_ngrams: auto</code>: at each retrain the "
        "student was scored with and without hashed character n-grams on the random "
        f"sample's held-out labels. It read {'; then '.join(parts)}. At the last retrain "
        f"({last['n_labels']:,} labels, {last['n_scored']:,} scored on {last['scored_on']}), "
        f"held-out log-loss: {losses}; the other view's gain {last['gain']:+.3f}, where a "
        f"switch needs more than {last['gain_needed']:.3f} (one standard error of the paired "
        "fold differences).</p>"
    )


def _rechecks_paragraph(result: DemoResult) -> str:
    """Labels sent to a second person, and what the second answers said."""
    r = result.rechecks
    if not r:
        return ""
    actions = max(r.get("label_actions", 0), 1)
    share = r["sent"] / actions
    if r["sent"] == 0:
        body = "No label was sent to a second person: none was more likely wrong than the recheck cost."
    elif r["answered"] == 0:
        body = (
            f"<b>{r['sent']:,}</b> labels ({share:.1%} of {actions:,} label actions) were sent "
            "to a second person; none has been answered yet"
            + (
                " (the simulation has one reviewer, who is never asked twice)."
                if result.simulated
                else "."
            )
        )
    else:
        body = (
            f"<b>{r['sent']:,}</b> labels ({share:.1%} of {actions:,} label actions) were sent to a "
            f"second person; <b>{r['answered']:,}</b> answered, and <b>{r['changed']:,}</b> of "
            "those answers differ from the first."
        )
    return (
        "<h2>Rechecks</h2><p>A human label goes to a second person when the models make it more "
        "likely wrong than the recheck is worth (<code>loop.recheck_cost_ratio</code>), at most "
        f"<code>loop.recheck_max_rate</code> of the label actions. {body}</p>"
    )


def _versions_table(result: DemoResult) -> str:
    """The loop as the service runs it: each retrain's stored model version."""
    cps = [c for c in result.checkpoints if c.retrain_seconds is not None]
    if not cps:
        return ""
    rows = "\n".join(
        f"<tr><td>{c.human_labels}</td>"
        f"<td>{'#' + str(c.model_version_id) if c.model_version_id else '-'}"
        f"{'' if c.model_trained or c.model_version_id is None else ' (reused)'}</td>"
        f"<td>{_num(c.held_out_macro_f1)}</td><td>{c.refreshed:,}</td><td>{c.rechecks:,}</td>"
        f"<td>{c.retrain_seconds:.1f}</td></tr>"
        for c in cps
    )
    versions = len({c.model_version_id for c in cps if c.model_version_id})
    return (
        "<h2>Model versions</h2><p>Each retrain stores the trained labelers as a model version, "
        f"keyed by the human labels it learned from ({versions} here); every entrance (the CLI, "
        "a notebook, the API, the loop worker of <code>labelloop serve</code>) reuses the stored "
        "version until the labels change, and <code>labelloop status</code> shows the one in "
        "use. The held-out macro-F1 is the store's own estimate (out of fold, on the human "
        "labels, which active learning chose: harder than the pool).</p>"
        "<table><thead><tr><th>human labels</th><th>model version</th>"
        "<th>held-out macro-F1 (human labels)</th><th>items given fresh suggestions</th>"
        "<th>labels sent for a recheck</th><th>retrain seconds</th></tr></thead><tbody>"
        f"{rows}</tbody></table>"
    )


def _deployed_paragraph(result: DemoResult) -> str:
    """The lifecycle after the loop: the deployed model trained, registered and promoted."""
    d = result.deployed
    if not d:
        return ""
    if "error" in d:
        return f"<h2>Deployed model</h2><p>Not trained: {html.escape(d['error'])}</p>"
    cv = ", ".join(f"{k} {v:.3f}" for k, v in sorted(d["cv_scores"].items(), key=lambda kv: -kv[1]))
    sizes = ", ".join(f"{k} {v:,}" for k, v in d["split_sizes"].items())
    verdict = "promoted to champion" if d["promoted"] else "not promoted"
    return (
        "<h2>Deployed model</h2>"
        f"<p>After the loop, <code>labelloop train</code> chose a model on the final labels by "
        f"cross-validation ({html.escape(cv)}; macro-F1), evaluated it on the test split "
        f"(human labels only: {sizes}) at macro-F1 {_num(d['test_macro_f1'])}, and registered "
        f"it in MLflow as <code>{html.escape(d['name'])}</code> version {d['version']} "
        f"(<code>{html.escape(d['tracking_uri'])}</code>); <code>labelloop promote</code>: "
        f"{verdict} ({html.escape(d['reason'])}). The champion scores macro-F1 "
        f"<b>{d['holdout_macro_f1']:.3f}</b> on the {d['holdout_items']:,} held-out items, "
        "through the same predictor <code>labelloop serve-models</code> answers with. "
        f"The loop's student is in the same registry: {d['student_versions']} versions of "
        f"<code>{html.escape(d['name'])}-student</code>, one per retrain that trained. "
        f"{d['seconds']:.0f} s.</p>"
    )


def _monitoring_paragraph(result: DemoResult) -> str:
    """One monitoring check at the end: what the automation watches, and two checks of it."""
    m = result.monitoring
    if not m:
        return ""
    if "error" in m:
        return f"<h2>Monitoring</h2><p>Not measured: {html.escape(m['error'])}</p>"
    v = m["values"]
    parts = [
        "<h2>Monitoring</h2><p>One check of what <code>labelloop automate</code> watches "
        "(alerts and policies in the project file; charts on <code>/monitoring</code>): "
        f"audited precision {_pct(v.get('audited_precision'))}, "
        f"the confidence-based estimate of machine precision {_pct(v.get('estimated_precision'))}"
    ]
    if m.get("machine_precision_true") is not None:
        est = v.get("estimated_precision")
        gap = (
            ""
            if est is None
            else f" (estimate off by {abs(est - m['machine_precision_true']):.1%})"
        )
        parts.append(
            f", against the dataset's labels {_pct(m['machine_precision_true'])} on "
            f"{m['machine_labels']:,} machine labels{gap}"
        )
    change = v.get("audit_change")
    parts.append(
        "; a change in the audit outcomes: "
        + ("none measured yet" if change is None else ("yes" if change else "no"))
        + f"; the champion's accuracy on the latest human labels {_pct(v.get('champion_accuracy'))}."
    )
    d = m.get("holdout_drift")
    if d:
        verdict = "drift" if d["drifted"] else "no drift"
        parts.append(
            f" Embedding drift of the held-out items against the pool (the same data, so it "
            f"should not fire): domain-classifier AUC {d['auc']:.3f} against a threshold of "
            f"{d['threshold']:.3f}: {verdict}."
        )
    return "".join(parts) + "</p>"


def _llm_paragraph(result: DemoResult) -> str:
    """What the LLM did, measured against the dataset's labels (simulation only)."""
    last = result.checkpoints[-1] if result.checkpoints else None
    if last is None or last.llm_accuracy is None:
        return ""
    return (
        f"<h2>LLM labeler</h2><p>It answered <b>{last.llm_answers:,}</b> items (the cascade asks "
        f"it only where the cheap labelers are unsure). Its answers matched the dataset's labels "
        f"on <b>{last.llm_accuracy:.0%}</b>; the true label was among the labels its prompt showed "
        f"for {_pct(last.llm_candidate_recall)}. Its weight in the pooled probabilities, learned on "
        f"items people also labeled, ended at <b>{last.llm_weight or 0:.2f}</b> (0 means it does "
        f"not move labels): {html.escape(last.llm_weight_note or 'not measured')}.</p>"
    )
