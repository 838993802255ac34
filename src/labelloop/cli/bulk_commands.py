"""``labelloop annotate INPUT OUTPUT``: bulk annotation of a file, locally or on Ray.

Registered in ``cli/main.py`` with ``app.command()(annotate)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labelloop.cli.common import ProjectOpt, console, friendly_errors, progress_bar
from labelloop.cli.common import open_project as _open


@friendly_errors
def annotate(
    input: Annotated[
        str, typer.Argument(help="Parquet, CSV or JSONL file: a path or a URI (s3://, gs://).")
    ],
    output: Annotated[
        Path, typer.Argument(help="Folder for one Parquet file per block and the manifest.")
    ],
    project: ProjectOpt = Path("."),
    engine: Annotated[str, typer.Option(help="local (a process pool) or ray.")] = "local",
    workers: Annotated[
        int | None,
        typer.Option(help="Processes or Ray actors (default: the CPUs; local 0: in-process)."),
    ] = None,
    block_rows: Annotated[int, typer.Option(help="Rows per block (the unit of resume).")] = 1000,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    write_store: Annotated[
        bool, typer.Option(help="Also ingest the rows and store suggestions and decisions.")
    ] = False,
    id_column: Annotated[
        str | None, typer.Option(help="Input column with the row ids (default: project's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Label every row of INPUT with the project's labelers and routing rule; write the
    suggestions and decisions to OUTPUT as Parquet. Rerun to resume an interrupted run."""
    from labelloop.workers.bulk import annotate_file

    with _open(project) as p, progress_bar("Annotating", enabled=not as_json) as update:
        r = annotate_file(
            p.ctx,
            input,
            output,
            engine=engine,
            block_rows=block_rows,
            workers=workers,
            address=address,
            write_store=write_store,
            id_column=id_column,
            progress=update,
        )
    if as_json:
        console.print_json(json.dumps(r.as_dict(), default=str))
        return
    version = f"#{r.model_version_id}" if r.model_version_id else "none (no human labels)"
    stored = f"; {r.stored:,} items stored in the project" if write_store else ""
    console.print(
        f"{r.rows:,} rows in {r.blocks} blocks ({r.done_now} labeled now, {r.skipped} done "
        f"before) with the {r.engine} engine, {r.workers} workers: {r.auto:,} auto, "
        f"{r.review:,} for review, {r.rejected:,} rejected; model version {version}"
        f"{stored}. {r.seconds:.1f} s -> {r.output}",
        highlight=False,
    )
