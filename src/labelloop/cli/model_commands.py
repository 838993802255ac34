"""``labelloop train`` and ``labelloop evaluate``: the deployed model (issue 14, items 1-4).
Registered in ``cli/main.py`` with ``register(app)``; the work is ``labelloop.mlops``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from labelloop.cli.common import ProjectOpt, console, friendly_errors, progress_bar
from labelloop.cli.common import open_project as _open


@friendly_errors
def train(
    project: ProjectOpt = Path("."),
    budget_seconds: Annotated[
        float | None, typer.Option(help="Tuning's time budget (default: the project's model:).")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Optuna trials; 0: candidates' defaults only.")
    ] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these candidates (repeatable): logistic, tree, forest, svm, mlp, boosting."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The full result as JSON.")] = False,
) -> None:
    """Snapshot the final labels, select and tune the deployed model by cross-validation, and
    evaluate it on the test split (human labels only). Saves models/<dataset version>/."""
    p = _open(project)
    try:
        with progress_bar("train", enabled=not as_json) as progress:
            result = p.train(
                trials=trials,
                budget_seconds=budget_seconds,
                candidates=candidate,
                progress=progress,
            )
    finally:
        p.close()
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
        return
    table = Table("candidate", f"cv {result.metric}", title=f"dataset {result.dataset_version}")
    for name, score in sorted(result.cv_scores.items(), key=lambda kv: -kv[1]):
        table.add_row(name + (" (winner)" if name == result.winner else ""), f"{score:.4f}")
    console.print(table)
    _print_metrics(result.test_metrics, result.ship)
    console.print(
        f"model: {result.model_path}  ({result.trials} pipelines, {result.seconds:.1f} s)"
    )


@friendly_errors
def evaluate(
    project: ProjectOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="The scores as JSON.")] = False,
) -> None:
    """Score the latest trained model on the current test split (per-class precision, recall,
    F1, confusion matrix, calibration; plots next to the model)."""
    p = _open(project)
    try:
        out = p.evaluate()
    finally:
        p.close()
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    console.print(f"model: {out['model']}  (dataset now {out['dataset_version']})")
    _print_metrics(out["metrics"], out["ship"])


def _print_metrics(metrics: dict[str, Any], ship: dict[str, bool]) -> None:
    if "per_class" in metrics:
        table = Table("label", "precision", "recall", "F1", "support", title="test split")
        for label, row in metrics["per_class"].items():
            table.add_row(
                label,
                f"{row['precision']:.3f}",
                f"{row['recall']:.3f}",
                f"{row['f1']:.3f}",
                str(row["support"]),
            )
        console.print(table)
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    console.print("  ".join(f"{k} {v:.4f}" for k, v in shown.items()), highlight=False)
    verdict = ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in ship.items())
    console.print(f"ship thresholds: {verdict}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
