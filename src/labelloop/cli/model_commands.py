"""``labelloop train``, ``evaluate``, ``models``, ``promote`` and ``rollback``: the deployed
model (issue 14). Registered in ``cli/main.py`` with ``register(app)``; the work is
``labelloop.mlops`` and ``labelloop.registry``, through ``Project``."""

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
    register: Annotated[
        bool,
        typer.Option(help="Log the run to MLflow and register it as the challenger."),
    ] = True,
    promote: Annotated[
        bool, typer.Option("--promote", help="Then promote it if it earns it (see promote).")
    ] = False,
    rows: Annotated[
        str | None,
        typer.Option(
            help="Train on these rows instead of the project's labels: a table file, a "
            "SQLAlchemy URL with --query, or a paginated JSON API's URL (needs --target)."
        ),
    ] = None,
    query: Annotated[str | None, typer.Option(help="With --rows URL: the SQL query.")] = None,
    target: Annotated[str | None, typer.Option(help="With --rows: the column to predict.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The full result as JSON.")] = False,
) -> None:
    """Snapshot the final labels, select and tune the deployed model by cross-validation,
    evaluate it on the test split (human labels only), save models/<dataset version>/ and
    register it in MLflow as the challenger."""
    if (rows is None) != (target is None):
        raise typer.BadParameter("--rows and --target go together")
    p = _open(project)
    decision = None
    options: dict[str, Any] = {
        "register": register or promote,
        "trials": trials,
        "budget_seconds": budget_seconds,
        "candidates": candidate,
    }
    try:
        with progress_bar("train", enabled=not as_json) as progress:
            if rows is not None and target is not None:
                result = p.train_rows(
                    _rows_reader(rows, query), target, **options, progress=progress
                )
            else:
                result = p.train(**options, progress=progress)
        if promote and result.registered_version is not None:
            decision = p.promote(result.registered_version)
    finally:
        p.close()
    if as_json:
        out = result.as_dict() | ({"promotion": decision.as_dict()} if decision else {})
        print(json.dumps(out, indent=2, default=str))
        return
    table = Table("candidate", f"cv {result.metric}", title=f"dataset {result.dataset_version}")
    for name, score in sorted(result.cv_scores.items(), key=lambda kv: -kv[1]):
        table.add_row(name + (" (winner)" if name == result.winner else ""), f"{score:.4f}")
    console.print(table)
    _print_metrics(result.test_metrics, result.ship)
    console.print(
        f"model: {result.model_path}  ({result.trials} pipelines, {result.seconds:.1f} s)"
    )
    if result.registered_version is not None:
        console.print(f"registered: version {result.registered_version} (challenger)")
    if decision is not None:
        _print_decision(decision.as_dict())


@friendly_errors
def models(
    project: ProjectOpt = Path("."),
    history: Annotated[bool, typer.Option("--history", help="The history instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """The registered versions of the deployed model, their aliases (champion, challenger)
    and test scores; --history: every registration, promotion, refusal and rollback."""
    p = _open(project)
    try:
        frame = p.model_history() if history else p.models()
        name = p.registry.name
    finally:
        p.close()
    if as_json:
        print(frame.to_json(orient="records", date_format="iso", indent=2))
        return
    if frame.empty:
        console.print(f"model {name!r}: nothing registered yet (labelloop train)")
        return
    if history:
        table = Table("when", "action", "version", "was", "by", "reason", title=f"{name} history")
        for r in frame.itertuples():
            table.add_row(
                str(r.created_at)[:19],
                r.action,
                _int(r.version),
                _int(r.previous_version),
                r.actor if isinstance(r.actor, str) else "",
                r.reason,
            )
    else:
        shown = [c for c in ("macro_f1", "accuracy", "roc_auc", "mae", "rmse", "r2") if c in frame]
        table = Table("version", "aliases", "dataset", "winner", *shown, title=name)
        for r in frame.to_dict("records"):
            table.add_row(
                str(r["version"]),
                r["aliases"],
                str(r["dataset_version"]),
                str(r["winner"]),
                *[f"{r[c]:.4f}" if r[c] == r[c] else "" for c in shown],
            )
    console.print(table)


def _int(v: Any) -> str:
    return "" if v is None or v != v else str(int(v))


@friendly_errors
def promote(
    project: ProjectOpt = Path("."),
    version: Annotated[
        int | None, typer.Option(min=1, help="The version to promote (default: challenger).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the checks (needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why; kept in the history.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The decision as JSON.")] = False,
) -> None:
    """Make the challenger the champion if it meets every ship threshold and beats the
    champion on the same test items (McNemar's test; a paired bootstrap for regression).
    Exit 1 when refused; the decision is in the history either way."""
    p = _open(project)
    try:
        decision = p.promote(version, force=force, reason=reason, actor=_actor())
    finally:
        p.close()
    if as_json:
        print(json.dumps(decision.as_dict(), indent=2, default=str))
    else:
        _print_decision(decision.as_dict())
    if not decision.promoted:
        raise typer.Exit(1)


@friendly_errors
def rollback(
    reason: Annotated[str, typer.Option(help="Why; kept in the history.")],
    project: ProjectOpt = Path("."),
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Go back to this version (default: the one it replaced)."),
    ] = None,
) -> None:
    """Point the champion back at the version it replaced (or --version)."""
    p = _open(project)
    try:
        mv = p.rollback(version, reason=reason, actor=_actor())
    finally:
        p.close()
    console.print(f"champion is now version {mv.version}", highlight=False)


def _actor() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _print_decision(d: dict[str, Any]) -> None:
    verdict = "[green]promoted[/green]" if d["promoted"] else "[yellow]not promoted[/yellow]"
    console.print(f"version {d['challenger']}: {verdict}: {d['reason']}")
    if d["champion_metrics"]:
        keys = [k for k in d["challenger_metrics"] if k in d["champion_metrics"] and k != "rows"]
        table = Table("metric", f"v{d['challenger']}", f"champion v{d['champion']}")
        for k in keys:
            table.add_row(k, f"{d['challenger_metrics'][k]:.4f}", f"{d['champion_metrics'][k]:.4f}")
        console.print(table)


def _rows_reader(source: str, query: str | None) -> Any:
    from labelloop.sources.readers import SqlReader, reader_for
    from labelloop.sources.rest import RestReader

    if source.startswith(("http://", "https://")):
        return RestReader(source)
    if query is not None:
        return SqlReader(source, query)
    return reader_for(source)


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
    app.command()(models)
    app.command()(promote)
    app.command()(rollback)
