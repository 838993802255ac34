"""The numbers behind the dashboard, and small server-side SVG charts (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from labelloop.project import Project
from labelloop.quality.agreement import krippendorff_alpha_nominal
from labelloop.routing.router import audited_precision
from labelloop.store.reviews import human_actions

ANSWERS = ("label", "accept", "correct")
PALETTE = ("#3b6fd8", "#e08a2c", "#3aa676", "#c2477a", "#7a5cc4", "#8a8f98")


def reviewer_throughput(actions: pd.DataFrame) -> list[dict[str, Any]]:
    """Labels per reviewer and the median seconds they spent per item (answers still standing)."""
    answers = actions[actions["action"].isin(ANSWERS)]
    out = []
    for name, group in answers.groupby("annotator", sort=True):
        spent = pd.to_numeric(group["time_spent_ms"], errors="coerce").dropna()
        out.append(
            {
                "annotator": str(name),
                "labels": len(group),
                "median_seconds": round(float(spent.median()) / 1000, 2) if len(spent) else None,
            }
        )
    return sorted(out, key=lambda r: -r["labels"])


def reviewer_agreement(actions: pd.DataFrame) -> dict[str, Any]:
    """Krippendorff's alpha (nominal) over items that two or more people answered."""
    answers = actions[actions["action"].isin(ANSWERS)]
    if answers.empty:
        return {"measured": False, "value": None, "measured_on": "no items with two reviewers"}
    last = answers.assign(answer=answers["labels"].map(lambda x: "|".join(sorted(x))))
    last = last.drop_duplicates(["item_id", "annotator"], keep="last")
    shared = last.groupby("item_id")["annotator"].transform("size") >= 2
    last = last[shared]
    if last.empty:
        return {"measured": False, "value": None, "measured_on": "no items with two reviewers"}
    counts = pd.crosstab(last["item_id"], last["answer"]).to_numpy(dtype=float)
    alpha = krippendorff_alpha_nominal(counts)
    n_items = counts.shape[0]
    return {
        "measured": not np.isnan(alpha),
        "value": None if np.isnan(alpha) else round(alpha, 3),
        "measured_on": f"Krippendorff's alpha over {n_items} items with 2+ reviewers",
    }


def dashboard_numbers(project: Project) -> dict[str, Any]:
    """Progress, label distribution, who decided, reviewer throughput and agreement."""
    status = project.status()
    label_counts = {k: sum(v.values()) for k, v in sorted(status["labels"].items())}
    decided_by: dict[str, int] = {}
    for by_kind in status["labels"].values():
        for kind, n in by_kind.items():
            decided_by[kind] = decided_by.get(kind, 0) + n
    total = sum(decided_by.values())
    actions = human_actions(project.db, project.id)
    return {
        "project": status["project"],
        "items": status["items"],
        "states": status["states"],
        "label_counts": label_counts,
        "labels_by_source": {k: dict(v) for k, v in sorted(status["labels"].items())},
        "decided_by": decided_by,
        "human_share": round(decided_by.get("human", 0) / total, 4) if total else None,
        "reviewers": reviewer_throughput(actions),
        "reviewer_agreement": reviewer_agreement(actions),
        "audited_precision": audited_precision_numbers(project),
        "label_issues": project.label_issues().head(20).to_dict("records"),
        "gold_scores": project.gold_scores().to_dict("records"),
        "labeler_bias": project.labeler_bias().to_dict("records"),
        "loop": status["loop"],
    }


def audited_precision_numbers(project: Project) -> dict[str, Any]:
    """Precision of machine labels measured on the audited share, with a 95% interval."""

    audit = project.audit_results()
    if audit.empty:
        return {
            "measured": False,
            "value": None,
            "low": None,
            "high": None,
            "measured_on": "no audited machine labels answered yet",
        }
    est, low, high = audited_precision(audit["correct"].to_numpy())
    return {
        "measured": True,
        "value": round(est, 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "measured_on": f"{len(audit)} audited machine labels checked by people "
        f"(95% interval {low:.1%} to {high:.1%})",
    }


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart_svg(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 460,
    bar_height: int = 22,
) -> Markup:
    """A horizontal bar chart as inline SVG; every text is escaped."""
    if not rows:
        return Markup('<p class="empty">nothing yet</p>')
    label_w, value_w, gap = 130, 70, 6
    plot_w = width - label_w - value_w
    top = max((v for _, v in rows), default=0) or 1
    height = len(rows) * (bar_height + gap) + gap
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (name, value) in enumerate(rows):
        y = gap + i * (bar_height + gap)
        w = max(0.0, value / top * plot_w)
        color = PALETTE[i % len(PALETTE)]
        name_text = str(name) if len(str(name)) <= 18 else str(name)[:17] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'class="axis">{escape(name_text)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}" rx="3" '
            f'fill="{color}"><title>{escape(name)}: {escape(_fmt(value))}{escape(unit)}</title>'
            f"</rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + bar_height * 0.7:.1f}" class="value">'
            f"{escape(_fmt(value))}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def share_bar_svg(parts_in: dict[str, int], *, title: str, width: int = 460) -> Markup:
    """One stacked bar of shares (e.g. human / machine / import) with a legend."""
    total = sum(parts_in.values())
    if not total:
        return Markup('<p class="empty">nothing yet</p>')
    height = 64
    x = 0.0
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    legend_x = 0
    for i, (name, n) in enumerate(sorted(parts_in.items())):
        w = n / total * width
        color = PALETTE[i % len(PALETTE)]
        share = f"{n / total:.0%}"
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="26" fill="{color}">'
            f"<title>{escape(name)}: {n:,} ({share})</title></rect>"
            f'<rect x="{legend_x}" y="40" width="12" height="12" rx="2" fill="{color}"/>'
            f'<text x="{legend_x + 16}" y="50.5" class="axis">{escape(name)} {n:,} ({share})</text>'
        )
        x += w
        legend_x += 150
    parts.append("</svg>")
    return Markup("".join(parts))
