"""``labelloop serve-models`` (the prediction app) and ``labelloop predict`` (a file in, a file
with predictions out). Registered in ``cli/main.py`` with ``register(app)``; the work is
``labelloop.serve``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labelloop.cli.common import ProjectOpt, console, err_console, friendly_errors, progress_bar
from labelloop.core.errors import LabelloopError


@friendly_errors
def serve_models(
    project: ProjectOpt = Path("."),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    poll_seconds: Annotated[
        float,
        typer.Option(help="How often to ask the registry where the aliases point; 0: never."),
    ] = 5.0,
    log_json: Annotated[
        bool, typer.Option(help="Log JSON lines to stderr (one per request, with its id).")
    ] = False,
) -> None:
    """Serve the registered champion (and challenger, by model.serving) over HTTP: /predict,
    MLflow's /invocations, /models, /health, /ready. Needs a token of scope predict
    (labelloop user token NAME --scope predict). Ctrl-C stops it."""
    import uvicorn

    from labelloop.serve.app import create_predict_app
    from labelloop.store.context import ProjectContext

    if log_json:
        from labelloop.workers.metrics import configure_json_logging

        configure_json_logging()
    ctx = ProjectContext.open(project)
    try:
        shown = f"[{host}]" if ":" in host else host
        console.print(
            f"labelloop: predictions of [bold]{ctx.config.name}[/] at http://{shown}:{port}/ "
            "(API docs at /docs)",
            highlight=False,
        )
        app = create_predict_app(ctx, poll_seconds=poll_seconds)
        uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
    finally:
        ctx.close()


@friendly_errors
def predict(
    input_path: Annotated[Path, typer.Argument(help="Rows to score: .csv, .jsonl or .parquet.")],
    output_path: Annotated[
        Path, typer.Argument(help="Where to write the rows with their predictions (same types).")
    ],
    project: ProjectOpt = Path("."),
    version: Annotated[
        int | None, typer.Option(help="A registered version of the project's model.")
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="The version an alias points at (default: champion).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="A model folder (or model.joblib) instead of the registry."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Rows scored at a time.")] = 1000,
    probabilities: Annotated[
        bool, typer.Option(help="Also write p_<label> for every class.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The summary as JSON.")] = False,
) -> None:
    """Score every row of a file with the registered model, in batches (memory stays that of
    one batch), and write the input columns plus label and confidence (value for regression)."""
    from labelloop.mlops.predictor import Predictor
    from labelloop.serve.batch import predict_file

    chosen = sum(x is not None for x in (version, alias, model))
    if chosen > 1:
        raise LabelloopError("choose one of --version, --alias and --model")
    if model is not None:
        predictor, which = Predictor.load(model), str(model)
    else:
        from labelloop.serve.service import registry_version
        from labelloop.store.context import ProjectContext

        ctx = ProjectContext.open(project)
        try:
            found = registry_version(ctx, alias=alias, version=version)
        finally:
            ctx.close()
        predictor, which = Predictor.load(found.path), f"{found.name} version {found.version}"
    with progress_bar(f"predict ({which})", enabled=not as_json) as progress:
        summary = predict_file(
            predictor,
            input_path,
            output_path,
            batch_size=batch_size,
            probabilities=probabilities,
            progress=progress,
        )
    if as_json:
        print(json.dumps({"model": which, **summary.as_dict()}, indent=2))
        return
    err_console.print(
        f"{summary.rows:,} rows scored by {which} in {summary.seconds:.1f} s -> {summary.output}",
        highlight=False,
    )
    if summary.label_counts:
        counts = ", ".join(f"{k}: {v:,}" for k, v in sorted(summary.label_counts.items()))
        console.print(f"labels: {counts}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``serve-models`` and ``predict`` to the ``labelloop`` command."""
    app.command("serve-models")(serve_models)
    app.command("predict")(predict)
