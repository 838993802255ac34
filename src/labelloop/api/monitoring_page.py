"""The numbers and charts of the monitoring page (``/monitoring``): audited precision over
time with 95% intervals, every monitored metric over the automation checks, open alerts and
their history, automation runs. Thin: the numbers come from ``Project`` and the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from labelloop.api.dashboard import PALETTE, _fmt, _nice_top
from labelloop.core.config import MONITOR_METRICS
from labelloop.core.stats import wilson_interval
from labelloop.project import Project
from labelloop.store.monitoring import metric_history

AUDIT_WINDOW = 25  # audited labels per point of the precision chart


def audited_precision_windows(
    correct: Sequence[bool], window: int = AUDIT_WINDOW
) -> list[dict[str, Any]]:
    """Consecutive windows of audit outcomes (oldest first): precision and its Wilson 95%
    interval per window; the last window may be shorter."""
    out = []
    values = np.asarray(correct, dtype=bool)
    for start in range(0, len(values), window):
        chunk = values[start : start + window]
        low, high = wilson_interval(int(chunk.sum()), len(chunk))
        out.append(
            {
                "label": f"{start + 1}-{start + len(chunk)}",
                "value": float(chunk.mean()),
                "low": float(low),
                "high": float(high),
                "n": len(chunk),
            }
        )
    return out


def line_chart_svg(
    points: Sequence[dict[str, Any]],
    *,
    title: str,
    unit: str = "",
    zero_to_one: bool = False,
    width: int = 560,
    height: int = 190,
) -> Markup:
    """A line over points (``label``, ``value``, optional ``low``/``high`` drawn as a band);
    the y axis starts at zero."""
    shown = [p for p in points if p.get("value") is not None]
    if not shown:
        return Markup('<p class="empty">nothing measured yet</p>')
    left, right, top_pad, bottom = 44, 8, 10, 34
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    top = (
        1.0
        if zero_to_one
        else _nice_top(max(1e-9, *(float(p.get("high", p["value"])) for p in shown)))
    )
    n = len(shown)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top_pad + plot_h - min(max(v, 0.0), top) / top * plot_h

    parts = [
        f'<svg class="chart chart-wide" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in (0.0, top / 2, top):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'class="grid-line"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
            f'class="value">{escape(_fmt(tick))}</text>'
        )
    if all("low" in p and "high" in p for p in shown):
        upper = " ".join(f"{x(i):.1f},{y(p['high']):.1f}" for i, p in enumerate(shown))
        lower = " ".join(
            f"{x(i):.1f},{y(p['low']):.1f}" for i, p in reversed(list(enumerate(shown)))
        )
        parts.append(f'<polygon points="{upper} {lower}" fill="{PALETTE[0]}" opacity="0.18"/>')
    line = " ".join(f"{x(i):.1f},{y(p['value']):.1f}" for i, p in enumerate(shown))
    parts.append(f'<polyline points="{line}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    every = max(1, -(-n // 6))
    for i, p in enumerate(shown):
        band = f" [{p['low']:.3f}, {p['high']:.3f}]" if "low" in p else ""
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(p["value"]):.1f}" r="2.5" fill="{PALETTE[0]}">'
            f"<title>{escape(str(p['label']))}: {p['value']:.4g}{escape(band)} {escape(unit)}"
            "</title></circle>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'class="value">{escape(str(p["label"]))}</text>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top_pad + plot_h}" '
        f'y2="{top_pad + plot_h}" class="axis-line"/></svg>'
    )
    return Markup("".join(parts))


def _when(at: datetime) -> str:
    return at.strftime("%m-%d %H:%M")


def monitoring_numbers(project: Project) -> dict[str, Any]:
    audits = project.audit_results()
    windows = (
        audited_precision_windows(audits.sort_values("item_id")["correct"].tolist())
        if not audits.empty
        else []
    )
    charts = {
        "audited_precision": line_chart_svg(
            windows, title="audited precision per 25 audits", zero_to_one=True
        )
    }
    history = metric_history(project.db, project.id)
    metrics = []
    for name, series in sorted(history.items()):
        points = [{"label": _when(at), "value": v} for at, v in series]
        metrics.append(
            {
                "name": name,
                "about": MONITOR_METRICS.get(name, ""),
                "latest": next((v for _, v in reversed(series) if v is not None), None),
                "chart": line_chart_svg(
                    points,
                    title=f"{name} over the automation checks",
                    zero_to_one=name
                    in ("audited_precision", "champion_accuracy", "embedding_drift_auc"),
                ),
            }
        )
    return {
        "project": project.config.name,
        "charts": charts,
        "audit_windows": windows,
        "metrics": metrics,
        "open_alerts": project.alerts(open_only=True),
        "alerts": project.alerts(limit=50),
        "runs": project.automation_runs(50),
        "rules": [r.model_dump() for r in project.config.monitoring.alerts],
        "policies": [p.model_dump() for p in project.config.automation.policies],
    }
