"""``labelloop export-edge``: the deployed model as an edge bundle (``labelloop.edge`` runs it
on a device). Registered in ``cli/main.py`` with ``register(app)``; the work is
``labelloop.serve.edge_export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labelloop.cli.common import ProjectOpt, console, err_console, friendly_errors, progress_bar
from labelloop.cli.common import open_project as _open


@friendly_errors
def export_edge(
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle folder to write.")],
    project: ProjectOpt = Path("."),
    version: Annotated[
        int | None,
        typer.Option(help="A registered version (default: the champion, else the latest)."),
    ] = None,
    min_confidence: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Answers below it are marked for review."),
    ] = 0.9,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the folder's contents.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The manifest as JSON.")] = False,
) -> None:
    """Export the champion model (or --version) as an offline edge bundle: the int8 embedding
    model, the head as ONNX, labels, thresholds and a checksummed manifest."""
    from labelloop.serve.edge_export import export_project_edge

    p = _open(project)
    try:
        with progress_bar("export-edge", enabled=not as_json) as progress:
            manifest = export_project_edge(
                p.ctx,
                out,
                version=version,
                min_confidence=min_confidence,
                overwrite=overwrite,
                progress=progress,
            )
    finally:
        p.close()
    if as_json:
        console.print_json(json.dumps(manifest))
        return
    if manifest.get("note"):
        err_console.print(f"[yellow]note:[/] {manifest['note']}", highlight=False)
    size = sum(f["bytes"] for f in manifest["files"].values())
    console.print(
        f"edge bundle of model version {manifest['model_version']} in {out} "
        f"({len(manifest['files'])} files, {size / 1e6:.1f} MB); run it with "
        f"`python -m labelloop.edge annotate {out} INPUT.txt`",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("export-edge")(export_edge)
