"""The numbers behind the dashboard, and small server-side SVG charts (no JavaScript, no CDN).

The computations (pace, time left, throughput bins, the per-label source table, bias evidence)
are pure functions over arrays and frames; :func:`dashboard_numbers` reads the store once and
hands them their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from labelloop.project import Project
from labelloop.quality.agreement import krippendorff_alpha_nominal
from labelloop.quality.bias import compare_label_distributions, mode_collapse
from labelloop.routing.router import audited_precision
from labelloop.store.reads import (
    final_label_sources,
    final_labels_frame,
    valid_answers_of_items,
)
from labelloop.store.reviews import human_actions

ANSWERS = ("label", "accept", "correct")
PALETTE = ("#3b6fd8", "#e08a2c", "#3aa676", "#c2477a", "#7a5cc4", "#8a8f98")
# Who decided a final label, in the order the dashboard shows them.
SOURCES = ("human", "machine", "propagated", "import")
SOURCE_COLORS = {
    "human": "#3b6fd8",
    "machine": "#e08a2c",
    "propagated": "#3aa676",
    "import": "#8a8f98",
}
DONE_STATES = ("labeled", "auto")
# The team's pace is measured over its last 8 active hours (a working day) of answers ...
PACE_WINDOW_HOURS = 8.0
# ... where a pause between two answers counts at most 15 minutes (a break is not work) ...
IDLE_GAP_SECONDS = 15 * 60
# ... and only once there are 10 answers over 10 active minutes; fewer say nothing.
PACE_MIN_ANSWERS = 10
PACE_MIN_ACTIVE_SECONDS = 10 * 60
# Throughput is binned per hour while the answers span two days at most, else per day.
HOURLY_SPAN_HOURS = 48
MAX_DAILY_BINS = 60
# Bias checks: a label is flagged on a 2-fold skew, q < 0.05 over the labels, 5 answers behind.
BIAS_FACTOR = 2.0
BIAS_ALPHA = 0.05
BIAS_MIN_COUNT = 5
BIAS_WATCH = 3  # labels listed per labeler as the closest to having enough evidence


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


# -- pace and time left ------------------------------------------------------------------------


def answer_seconds(actions: pd.DataFrame) -> np.ndarray:
    """Epoch seconds of the answers still standing (label, accept, correct), sorted.

    SQLite hands back naive datetimes: they are UTC, as the store writes them."""
    answers = actions[actions["action"].isin(ANSWERS)]
    if answers.empty:
        return np.empty(0)
    stamps = pd.to_datetime(answers["created_at"], utc=True)
    epoch = pd.Timestamp(0, tz="UTC")  # (the unit of datetime64 varies: us here, ns there)
    return np.sort((stamps - epoch).dt.total_seconds().to_numpy(dtype=np.float64))


@dataclass(frozen=True, slots=True)
class Pace:
    """Answers per hour of active time over the most recent stretch of answers.

    ``answers``: the answers the pace rests on; ``active_seconds``: the time between them,
    each pause cut at the idle gap; ``per_hour``: None when that is too little to go on."""

    answers: int
    active_seconds: float
    per_hour: float | None


def recent_pace(
    seconds: np.ndarray,
    *,
    window_hours: float = PACE_WINDOW_HOURS,
    idle_gap_seconds: float = IDLE_GAP_SECONDS,
    min_answers: int = PACE_MIN_ANSWERS,
    min_active_seconds: float = PACE_MIN_ACTIVE_SECONDS,
) -> Pace:
    """People's answers per active hour, over their last ``window_hours`` of active time.

    ``seconds``: the answer times (epoch seconds, any order), everyone's together for the
    team's pace. Each answer after the first is credited with the pause before it, cut at
    ``idle_gap_seconds``, so a night or a lunch does not count as work; the pace is the answers
    counted over the time credited, walking back from the latest answer until the credited
    time reaches the window.
    """
    t = np.sort(np.asarray(seconds, dtype=np.float64))
    if len(t) < 2:
        return Pace(int(len(t)), 0.0, None)
    gaps = np.minimum(np.diff(t), idle_gap_seconds)[::-1]  # latest first
    credited = np.cumsum(gaps)
    n = int(np.searchsorted(credited, window_hours * 3600.0) + 1)
    n = min(n, len(gaps))
    active = float(credited[n - 1])
    if n < min_answers or active < min_active_seconds:
        return Pace(n, active, None)
    return Pace(n, active, n * 3600.0 / active)


def progress_numbers(
    states: Mapping[str, int], sources: Mapping[str, int], pace: Pace
) -> dict[str, Any]:
    """Items done and left, the human work left, and the time it takes at the recent pace.

    Done: items with a final label (``labeled``, ``auto``). Left for people: items queued (or
    skipped) now, plus the items not routed yet (``new``, ``suggested``) times the share of
    decided items people decided (near-duplicate copies and machine labels cost no one time;
    imports say nothing about the loop and are left out). Near-duplicates waiting for their
    representative (``grouped``) take its label and cost nothing.
    """
    total = int(sum(states.values()))
    done = int(sum(states.get(s, 0) for s in DONE_STATES))
    queued = int(states.get("queued", 0) + states.get("skipped", 0))
    unrouted = int(states.get("new", 0) + states.get("suggested", 0))
    decided = sum(int(sources.get(k, 0)) for k in ("human", "machine", "propagated"))
    human_fraction = sources.get("human", 0) / decided if decided else None
    machine_share = sources.get("machine", 0) / decided if decided else None
    human_left = queued + unrouted * (1.0 if human_fraction is None else human_fraction)
    hours_left = human_left / pace.per_hour if pace.per_hour else None
    return {
        "total": total,
        "done": done,
        "left": total - done,
        "done_share": round(done / total, 4) if total else None,
        "by_state": {k: int(v) for k, v in states.items()},
        "human_left": int(math.ceil(human_left)),
        "machine_share": None if machine_share is None else round(machine_share, 4),
        "per_hour": None if pace.per_hour is None else round(pace.per_hour, 1),
        "pace_answers": pace.answers,
        "pace_active_hours": round(pace.active_seconds / 3600, 2),
        "hours_left": None if hours_left is None else round(hours_left, 2),
        "estimate": time_left_text(human_left, pace, machine_share),
    }


def _duration(hours: float) -> str:
    if hours < 1:
        return f"{max(1, round(hours * 60))} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours:,.0f} h (about {hours / 8:,.0f} working days of 8 h)"


def time_left_text(human_left: float, pace: Pace, machine_share: float | None) -> str:
    """One sentence a lead can read: how long the human work left takes at the recent pace."""
    if human_left <= 0:
        return "Nothing is left for people."
    if pace.per_hour is None:
        return (
            f"Time left: not enough activity to estimate ({pace.answers} answers over "
            f"{pace.active_seconds / 60:.0f} active min; needs {PACE_MIN_ANSWERS} answers over "
            f"{PACE_MIN_ACTIVE_SECONDS // 60} min)."
        )
    machines = (
        "no item decided yet, so every item is counted for people"
        if machine_share is None
        else f"machines decide {machine_share:.0%} of items"
    )
    return (
        f"Time left: about {_duration(human_left / pace.per_hour)} of reviewing for "
        f"~{math.ceil(human_left):,} items at {pace.per_hour:.0f} items/h (the team's pace over "
        f"its last {pace.active_seconds / 3600:.1f} active hours, {pace.answers} answers; "
        f"{machines})."
    )


# -- throughput over time ------------------------------------------------------------------------


def throughput_bins(seconds: np.ndarray, now: datetime) -> dict[str, Any]:
    """Answers per hour (when the answers span two days at most) or per day, up to ``now``.

    Every bin from the first answer's to ``now``'s is there, empty ones too (a chart with gaps
    left out would lie about the pace); daily bins stop at the last ``MAX_DAILY_BINS`` days.
    """
    t = np.asarray(seconds, dtype=np.float64)
    if len(t) == 0:
        return {"unit": "hour", "bins": []}
    end = now.timestamp()
    hourly = end - t.min() <= HOURLY_SPAN_HOURS * 3600
    step = 3600 if hourly else 86400
    first = math.floor(t.min() / step) * step
    last = math.floor(max(end, t.max()) / step) * step
    if not hourly:
        first = max(first, last - (MAX_DAILY_BINS - 1) * step)
    edges = np.arange(first, last + 2 * step, step, dtype=np.float64)
    counts, _ = np.histogram(t, bins=edges)
    fmt = "%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"
    bins = [
        {"start": datetime.fromtimestamp(e, UTC).strftime(fmt), "count": int(c)}
        for e, c in zip(edges[:-1], counts, strict=True)
    ]
    return {"unit": "hour" if hourly else "day", "bins": bins}


def reviewer_pace(actions: pd.DataFrame) -> list[dict[str, Any]]:
    """Per reviewer: answers, items per active hour lately (or None), and the last answer."""
    answers = actions[actions["action"].isin(ANSWERS)]
    out = []
    for name, group in answers.groupby("annotator", sort=True):
        seconds = answer_seconds(group)
        pace = recent_pace(seconds)
        out.append(
            {
                "annotator": str(name),
                "answers": len(group),
                "per_hour": None if pace.per_hour is None else round(pace.per_hour, 1),
                "last_at": datetime.fromtimestamp(float(seconds[-1]), UTC).strftime(
                    "%Y-%m-%d %H:%M UTC"
                ),
            }
        )
    return sorted(out, key=lambda r: -r["answers"])


# -- labels by source ----------------------------------------------------------------------------


def label_source_rows(
    labels_by_source: Mapping[str, Mapping[str, int]], taxonomy: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per label of the taxonomy (and any other label found): a count per source
    (human, machine, propagated, import) and the total, most used first."""
    names = list(dict.fromkeys([*taxonomy, *labels_by_source]))
    rows = []
    for name in names:
        by = labels_by_source.get(name, {})
        row: dict[str, Any] = {"label": str(name)}
        row.update({k: int(by.get(k, 0)) for k in SOURCES})
        row["total"] = int(sum(by.values()))
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["total"], r["label"]))


# -- bias evidence -------------------------------------------------------------------------------


def bias_evidence(
    human: Mapping[int, Any],
    answers: pd.DataFrame,
    taxonomy: Sequence[Any],
    *,
    factor: float = BIAS_FACTOR,
    alpha: float = BIAS_ALPHA,
    min_count: int = BIAS_MIN_COUNT,
) -> list[dict[str, Any]]:
    """Per machine labeler: the labels it over- or under-predicts on evidence, and for the
    rest how many more human labels a test would need.

    ``human``: people's label per item id; ``answers``: the labelers' answers (columns
    item_id, labeler, label). Each labeler is compared with people on the items both answered
    (``same_items``): people label the items routing sent them, not a random sample, and a
    comparison over different items would flag that choice as the labeler's bias. See
    :func:`labelloop.quality.bias.compare_label_distributions`.
    """
    known = set(taxonomy)
    people = {int(i): x for i, x in human.items() if x in known}
    if not people or answers.empty:
        return []
    out = []
    for labeler, group in answers.groupby("labeler", sort=True):
        pairs = [
            (label, people[int(i)])
            for i, label in zip(group["item_id"], group["label"], strict=True)
            if int(i) in people and label in known
        ]
        if not pairs:
            continue
        machine, humans = [m for m, _ in pairs], [h for _, h in pairs]
        cmp = compare_label_distributions(
            machine, humans, list(taxonomy), factor, min_count, alpha, same_items=True
        )
        mode = mode_collapse(machine, humans, alpha=alpha)
        table = cmp.table
        more = table["human_needed"] - cmp.n_human
        flagged = table[table["flag"] != ""]
        waiting = table[(table["flag"] == "") & (more > 0) & np.isfinite(more)]
        waiting = waiting.assign(more=more[waiting.index]).sort_values("more").head(BIAS_WATCH)
        out.append(
            {
                "labeler": str(labeler),
                "n_items": len(pairs),
                "labels": len(table),
                "testable": int((more <= 0).sum()),
                "flags": [_bias_row(name, r, None) for name, r in flagged.iterrows()],
                "waiting": [_bias_row(name, r, int(r["more"])) for name, r in waiting.iterrows()],
                "one_label": (
                    {
                        "label": str(mode.label),
                        "machine_share": round(mode.machine_share, 4),
                        "human_share": round(mode.human_share, 4),
                    }
                    if mode.flagged
                    else None
                ),
            }
        )
    return out


def _lean(machine_share: float, human_share: float) -> str:
    """Which way an unflagged label leans so far: "over", "under" or "even"."""
    if math.isclose(machine_share, human_share, abs_tol=1e-12):
        return "even"
    return "over" if machine_share > human_share else "under"


def _bias_row(name: Any, r: pd.Series, more: int | None) -> dict[str, Any]:
    return {
        "label": str(name),
        "direction": str(r["flag"]) or _lean(float(r["machine_share"]), float(r["human_share"])),
        "machine_count": int(r["machine_count"]),
        "human_count": int(r["human_count"]),
        "machine_share": round(float(r["machine_share"]), 4),
        "human_share": round(float(r["human_share"]), 4),
        "q_value": round(float(r["q_value"]), 6),
        "more_needed": more,
    }


def people_labels(final_labels: pd.DataFrame) -> dict[int, Any]:
    """The first label of each item people decided (human or import), by item id, as the
    bias checks compare them; near-duplicate copies are left out (one answer, counted once)."""
    if final_labels.empty:
        return {}
    return {
        int(i): ls[0]
        for i, ls, k in zip(
            final_labels["item_id"],
            final_labels["labels"],
            final_labels["source_kind"],
            strict=True,
        )
        if k in ("human", "import") and ls
    }


# -- everything, from the store ------------------------------------------------------------------


def dashboard_numbers(project: Project, now: datetime | None = None) -> dict[str, Any]:
    """Progress and time left, throughput, labels by source, reviewers, agreement, bias."""
    status = project.status()
    label_counts = {k: sum(v.values()) for k, v in sorted(status["labels"].items())}
    decided_by: dict[str, int] = {}
    for by_kind in status["labels"].values():
        for kind, n in by_kind.items():
            decided_by[kind] = decided_by.get(kind, 0) + n
    total = sum(decided_by.values())
    actions = human_actions(project.db, project.id)
    seconds = answer_seconds(actions)
    sources = final_label_sources(project.db, project.id)
    taxonomy = list(project.config.label_names)
    return {
        "project": status["project"],
        "items": status["items"],
        "states": status["states"],
        "progress": progress_numbers(status["states"], sources, recent_pace(seconds)),
        "throughput": {
            **throughput_bins(seconds, now or datetime.now(UTC)),
            "per_reviewer": reviewer_pace(actions),
        },
        "label_counts": label_counts,
        "labels_by_source": {k: dict(v) for k, v in sorted(status["labels"].items())},
        "label_table": label_source_rows(status["labels"], taxonomy),
        "items_by_source": {k: int(sources.get(k, 0)) for k in SOURCES},
        "decided_by": decided_by,
        "human_share": round(decided_by.get("human", 0) / total, 4) if total else None,
        "reviewers": reviewer_throughput(actions),
        "reviewer_agreement": reviewer_agreement(actions),
        "audited_precision": audited_precision_numbers(project),
        "label_issues": project.label_issues().head(20).to_dict("records"),
        "gold_scores": project.gold_scores().to_dict("records"),
        "labeler_bias": project.labeler_bias().to_dict("records"),
        "bias_checks": bias_evidence(
            people_labels(final_labels_frame(project.db, project.id)),
            valid_answers_of_items(project.db, project.id),
            taxonomy,
        ),
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


# -- SVG and HTML helpers ------------------------------------------------------------------------


def breakable(name: object) -> Markup:
    """A label name, escaped, that may wrap after ``_``, ``-``, ``/`` and ``.`` (long
    snake_case intents wrap at a word instead of overflowing or being cut)."""
    text = str(escape(str(name)))
    for sep in ("_", "-", "/", "."):
        text = text.replace(sep, sep + "<wbr>")
    return Markup(text)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


# The charts' 12px system font averages under 7px a character; names get that much room.
CHAR_PX = 7.0


def bar_chart_svg(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 460,
    bar_height: int = 22,
) -> Markup:
    """A horizontal bar chart as inline SVG; every text is escaped, no name is cut (the name
    column is as wide as the longest name needs)."""
    if not rows:
        return Markup('<p class="empty">nothing yet</p>')
    longest = max(len(str(name)) for name, _ in rows)
    label_w, value_w, gap = max(60, int(longest * CHAR_PX) + 12), 70, 6
    width = max(width, label_w + value_w + 200)
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
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'class="axis">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_height}" rx="3" '
            f'fill="{color}"><title>{escape(name)}: {escape(_fmt(value))}{escape(unit)}</title>'
            f"</rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + bar_height * 0.7:.1f}" class="value">'
            f"{escape(_fmt(value))}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def column_chart_svg(
    bins: Sequence[Mapping[str, Any]],
    *,
    title: str,
    unit: str,
    width: int = 560,
    height: int = 190,
) -> Markup:
    """Counts over time as columns; the y axis starts at zero, a few x labels, a title per
    column (its bin and count) for the exact numbers."""
    if not bins:
        return Markup('<p class="empty">nothing yet</p>')
    left, right, top_pad, bottom = 44, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = _nice_top(max(2, *(int(b["count"]) for b in bins)))  # 2 at least: whole ticks
    slot = plot_w / len(bins)
    bar_w = max(1.0, slot * 0.8)
    parts = [
        f'<svg class="chart chart-wide" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in (0.0, top / 2, top) if (top / 2).is_integer() else (0.0, top):
        y = top_pad + plot_h - tick / top * plot_h
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid-line"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="value">'
            f"{escape(_fmt(tick))}</text>"
        )
    every = max(1, math.ceil(len(bins) / 6))
    for i, b in enumerate(bins):
        n = int(b["count"])
        h = n / top * plot_h
        x = left + i * slot + (slot - bar_w) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar_w:.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{escape(b["start"])}: {n:,} '
            f"{escape(unit)}</title></rect>"
        )
        if i % every == 0:
            label = str(b["start"])
            label = label[5:] if len(label) > 10 else label  # "MM-DD HH:00" for hours
            parts.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle" class="value">{escape(label)}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top_pad + plot_h}" '
        f'y2="{top_pad + plot_h}" class="axis-line"/></svg>'
    )
    return Markup("".join(parts))


def share_bar_svg(
    parts_in: Mapping[str, int],
    *,
    title: str,
    width: int = 460,
    colors: Mapping[str, str] | None = None,
) -> Markup:
    """One stacked bar of shares (e.g. human / machine / propagated / import); the legend is
    HTML below it, so long names and counts wrap instead of running off the chart. Colours
    are SVG attributes: the app's CSP (style-src 'self') refuses inline styles."""
    shown = {k: int(v) for k, v in parts_in.items() if v}
    total = sum(shown.values())
    if not total:
        return Markup('<p class="empty">nothing yet</p>')
    x = 0.0
    bar = [
        f'<svg class="chart share-bar" role="img" viewBox="0 0 {width} 26" '
        f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>"
    ]
    legend = ['<ul class="legend">']
    for i, (name, n) in enumerate(shown.items()):
        w = n / total * width
        color = (colors or {}).get(name, PALETTE[i % len(PALETTE)])
        share = f"{n / total:.0%}"
        bar.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="26" fill="{color}">'
            f"<title>{escape(name)}: {n:,} ({share})</title></rect>"
        )
        legend.append(
            f'<li><svg class="swatch" viewBox="0 0 12 12" aria-hidden="true">'
            f'<rect width="12" height="12" rx="2" fill="{color}"/></svg>'
            f"{escape(name)} <b>{n:,}</b> <small>({share})</small></li>"
        )
        x += w
    bar.append("</svg>")
    legend.append("</ul>")
    return Markup("".join(bar) + "".join(legend))


def progress_bar_html(by_state: Mapping[str, int]) -> Markup:
    """Items by state as one stacked bar (done states first) with a legend, in HTML."""
    order = ["labeled", "auto", "grouped", "queued", "skipped", "suggested", "new"]
    names = [s for s in order if by_state.get(s)] + [
        s for s in by_state if s not in order and by_state.get(s)
    ]
    colors = {
        "labeled": "#3b6fd8",
        "auto": "#e08a2c",
        "grouped": "#3aa676",
        "queued": "#c2477a",
        "skipped": "#b08a3e",
        "suggested": "#7a5cc4",
        "new": "#b8bec8",
    }
    return share_bar_svg(
        {s: int(by_state[s]) for s in names}, title="items by state", colors=colors
    )
