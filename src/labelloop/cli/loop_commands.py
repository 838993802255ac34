"""``labelloop retrain`` (one retrain by hand) and ``labelloop worker`` (the loop, no app).

Registered in ``cli/main.py`` with ``app.command()(retrain)`` and ``app.command()(worker)``.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from labelloop.cli.common import ProjectOpt, console, friendly_errors
from labelloop.cli.common import open_project as _open


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


@friendly_errors
def retrain(
    project: ProjectOpt = Path("."),
    select: Annotated[
        bool, typer.Option(help="Also compare student kinds by cross-validation first.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Retrain now and say what changed: model version, held-out metrics before and after,
    items re-routed, labels sent for a recheck."""
    with _open(project) as p:
        r = p.retrain(select=select)
    if as_json:
        console.print_json(json.dumps(r.as_dict(), default=str))
        return
    how = "trained now" if r.trained else "unchanged labels: the stored model was reused"
    now = f"#{r.model_version_id}" if r.model_version_id else "none (no human labels yet)"
    before = f"#{r.previous_version_id}" if r.previous_version_id else "none"
    console.print(
        f"Model version: [bold]{now}[/] ({how}; before: {before}), "
        f"{r.student_algorithm} student\n"
        f"  {r.model_version or ''}\n"
        f"Held-out macro-F1 {_f(r.previous_macro_f1)} -> {_f(r.held_out_macro_f1)}, accuracy "
        f"{_f(r.previous_accuracy)} -> {_f(r.held_out_accuracy)} "
        f"(on {r.n_labels:,} human labels, out of fold)\n"
        f"Re-routed {r.route.pending:,} items: {r.route.auto:,} labeled by machines, "
        f"{r.route.queued:,} queued for people, {r.route.refreshed:,} with fresh suggestions; "
        f"{r.suggested:,} new items suggested.\n"
        f"Sent for a recheck: {len(r.label_issues):,} labels. {r.seconds:.1f} s.",
        highlight=False,
    )


@friendly_errors
def worker(
    project: ProjectOpt = Path("."),
    name: Annotated[
        str | None, typer.Option(help="Worker name (its cursor in the store); default host:pid.")
    ] = None,
    once: Annotated[bool, typer.Option(help="One pass, then exit.")] = False,
    health: Annotated[
        bool,
        typer.Option(
            "--health",
            help="Check the store and the loop's state; print one JSON line; exit 0 when "
            "healthy, 1 otherwise.",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
    ] = None,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines to stderr.")] = False,
) -> None:
    """Run the project's loop without the app: suggest and route new items, retrain every
    loop.retrain_every labels. Several may run on one PostgreSQL project; one works at a time.
    SIGTERM or Ctrl-C stops it after the current step."""
    from labelloop.workers.loop_worker import LoopWorker

    if health:
        _health(project)
    _operations(metrics_port, log_json)

    with _open(project) as p:
        stop = threading.Event()

        def report(step: Any) -> None:
            if step.retrain is not None:
                r = step.retrain
                console.print(
                    f"retrained: {r.model_version} · macro-F1 {_f(r.held_out_macro_f1)} · "
                    f"{r.route.auto:,} auto, {r.route.queued:,} queued, "
                    f"{len(r.label_issues)} rechecks · {r.seconds:.1f} s",
                    highlight=False,
                )
            elif step.suggested or step.updated:
                console.print(
                    f"suggested {step.suggested:,}, routed {step.routed:,}, "
                    f"re-scored after {step.updated:,} new labels",
                    highlight=False,
                )

        w = LoopWorker(p.ctx, name=name, on_step=report)
        if once:
            w.step()
            return
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        console.print(
            f"labelloop worker [bold]{w.name}[/] on project {p.config.name}: polling every "
            f"{w.poll_seconds:g} s, retrain every {w.retrain_every} labels (Ctrl-C stops)",
            highlight=False,
        )
        try:
            w.run(stop)
        except KeyboardInterrupt:
            stop.set()


def _operations(metrics_port: int | None, log_json: bool) -> None:
    """``--metrics-port`` and ``--log-json``, shared by the long-running commands."""
    if log_json:
        from labelloop.workers.metrics import configure_json_logging

        configure_json_logging()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")


def _health(project: Path) -> None:
    """Print the loop worker's health (the store answers, ``loop_status``) as one JSON line;
    exit 0 when healthy, else 1."""
    from labelloop.workers.loop_worker import loop_status
    from labelloop.workers.metrics import store_status

    out: dict[str, Any] = {"store": None, "loop": None}
    try:
        with _open(project) as p:
            out["store"] = store_status(p.db, p.id)
            if out["store"] == "ok":
                out["loop"] = loop_status(p.ctx)
    except Exception as exc:  # noqa: BLE001 - a health check reports, never raises
        out["store"] = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    out["healthy"] = out["store"] == "ok" and out["loop"] is not None
    typer.echo(json.dumps(out, default=str))
    raise typer.Exit(0 if out["healthy"] else 1)
