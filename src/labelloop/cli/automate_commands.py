"""``labelloop automate``, ``alerts`` and ``runs``: monitoring and automation (issue 15).
Registered in ``cli/main.py`` with ``register(app)``; the work is ``labelloop.automate``."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from labelloop.cli.common import ProjectOpt, console, friendly_errors
from labelloop.cli.common import open_project as _open


@friendly_errors
def automate(
    project: ProjectOpt = Path("."),
    once: Annotated[bool, typer.Option("--once", help="One check, then exit.")] = False,
    interval: Annotated[
        float | None,
        typer.Option(min=1.0, help="Seconds between checks (default: automation.check_seconds)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --once: the report as JSON.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port."),
    ] = None,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines to stderr.")] = False,
) -> None:
    """Watch the project: measure its metrics, open and resolve alerts (sent to the log and
    the webhooks in monitoring:), and run the automation: policies that are due. Runs never
    overlap for a project, however many of these run. SIGTERM or Ctrl-C stops it."""
    p = _open(project)
    try:
        auto = p.automation()
        if once:
            report = auto.check()
            if as_json:
                print(json.dumps(report.as_dict(), indent=2, default=str))
            else:
                _print_check(report.as_dict())
            if report.status == "failed":
                raise typer.Exit(1)
            return
        if log_json:
            from labelloop.workers.metrics import configure_json_logging

            configure_json_logging()
        else:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port)
        stopping: list[bool] = []

        def stop(*_: Any) -> None:
            stopping.append(True)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        every = interval or p.config.automation.check_seconds
        console.print(f"automation for {p.config.name!r}: a check every {every:g} s")
        auto.run_forever(interval=interval, stop=lambda: bool(stopping))
    finally:
        p.close()


def _print_check(r: dict[str, Any]) -> None:
    if r["skipped"]:
        console.print(f"[yellow]skipped:[/] {r['skipped']}")
        return
    shown = "  ".join(f"{k} {'n/a' if v is None else f'{v:.4g}'}" for k, v in r["values"].items())
    console.print(shown, highlight=False)
    for name in r["opened"]:
        console.print(f"[red]alert opened:[/] {name}")
    for name in r["resolved"]:
        console.print(f"[green]alert resolved:[/] {name}")
    if not r["fired"]:
        console.print("no policy due")
        return
    console.print(f"run {r['run_id']}: {', '.join(r['fired'])} -> {', '.join(r['actions'])}")
    for action, out in r["outcome"].items():
        console.print(f"  {action}: {out.get('summary', '')}", highlight=False)
    color = "green" if r["status"] == "succeeded" else "red"
    console.print(f"[{color}]{r['status']}[/]" + (f": {r['error']}" if r["error"] else ""))


@friendly_errors
def alerts(
    project: ProjectOpt = Path("."),
    all_: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Open alerts (with --all: their history too), newest first."""
    with _open(project) as p:
        rows = p.alerts(open_only=not all_)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("no open alerts" if not all_ else "no alerts yet")
        return
    table = Table("opened", "rule", "severity", "state", "value", "message", "resolved")
    for a in rows:
        value = "" if a["value"] is None else f"{a['value']:.4g}"
        resolved = str(a["resolved_at"])[:19] if a["resolved_at"] else ""
        table.add_row(
            str(a["opened_at"])[:19],
            a["rule"],
            a["severity"],
            a["state"],
            value,
            a["message"],
            resolved,
        )
    console.print(table)


@friendly_errors
def runs(
    project: ProjectOpt = Path("."),
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """Automation runs, newest first: what fired, what ran, how it went."""
    with _open(project) as p:
        rows = p.automation_runs(limit)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("no automation runs yet")
        return
    table = Table("id", "started", "policies", "actions", "status", "seconds", "outcome")
    for r in rows:
        outcome = "; ".join(f"{k}: {v.get('summary', '')}" for k, v in r["outcome"].items())
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        table.add_row(
            str(r["id"]),
            str(r["started_at"])[:19],
            ", ".join(r["policies"]),
            ", ".join(r["actions"]),
            r["status"],
            seconds,
            (r["error"] or outcome)[:200],
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(automate)
    app.command()(alerts)
    app.command()(runs)
