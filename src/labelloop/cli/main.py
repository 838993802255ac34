"""The ``labelloop`` command: thin over the Python API (``labelloop.project.Project``).

Errors a user can act on print as one red line and exit with status 1, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from labelloop.cli.automate_commands import register as register_automate_commands
from labelloop.cli.bulk_commands import annotate
from labelloop.cli.common import ProjectOpt, console, err_console, friendly_errors, progress_bar
from labelloop.cli.common import open_project as _open
from labelloop.cli.edge_commands import register as register_edge_commands
from labelloop.cli.loop_commands import retrain, worker
from labelloop.cli.model_commands import register as register_model_commands
from labelloop.cli.serve_commands import register as register_serve_commands
from labelloop.cli.server_commands import serve
from labelloop.cli.stream_commands import stream_worker, watch, webhook_relay
from labelloop.cli.user_commands import user_app
from labelloop.core.errors import LabelloopError

if TYPE_CHECKING:
    from labelloop.sources.ingest import IngestReport

app = typer.Typer(
    name="labelloop",
    help="Annotate data in real time and at scale, and keep the models that learn from it healthy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
@friendly_errors
def init(
    folder: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    name: Annotated[
        str | None, typer.Option(help="Project name (default: the folder name).")
    ] = None,
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated label names, e.g. 'ham,spam'.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="An existing project YAML to copy and validate.")
    ] = None,
    modality: Annotated[
        str,
        typer.Option(
            help="What an item is: text, image (files; also video frames) or tabular (rows)."
        ),
    ] = "text",
    text_field: Annotated[
        str | None,
        typer.Option(
            help="Input field(s) that hold the content, comma-separated. Default: 'text'; for "
            "tabular, '*' (every column but the id and --label-field)."
        ),
    ] = None,
    label_field: Annotated[
        str | None, typer.Option(help="Input field holding a known label (kept as metadata).")
    ] = None,
    multi_label: Annotated[bool, typer.Option(help="Items may take several labels.")] = False,
    storage: Annotated[
        str, typer.Option(help="SQLAlchemy URL; default a SQLite file in the folder.")
    ] = "sqlite:///labelloop.db",
    force: Annotated[bool, typer.Option(help="Overwrite an existing project file.")] = False,
    model_task: Annotated[
        str, typer.Option(help="The deployed model's task: classification or regression.")
    ] = "classification",
    primary_metric: Annotated[
        str | None,
        typer.Option(
            help="The metric the model is chosen on: macro_f1 (default), accuracy, precision, "
            "recall, roc_auc; regression: rmse (default), mae, r2."
        ),
    ] = None,
) -> None:
    """Create a project: a folder with labelloop.yaml and an empty store."""
    from labelloop.core.config import load_project_config
    from labelloop.project import Project

    if config is not None:
        cfg = load_project_config(config)
        p = Project.init(folder, cfg, overwrite=force)
    else:
        if not labels:
            raise LabelloopError("give --labels 'a,b,...' or --config FILE")
        from labelloop.core.config import ALL_COLUMNS, Modality

        if modality not in {m.value for m in Modality}:
            raise LabelloopError(
                f"--modality {modality!r}: expected one of {', '.join(m.value for m in Modality)}"
            )
        if text_field:
            fields = [x.strip() for x in text_field.split(",") if x.strip()]
        else:
            fields = list(ALL_COLUMNS) if modality == Modality.tabular else ["text"]
        p = Project.init(
            folder,
            overwrite=force,
            name=name or folder.resolve().name,
            labels=[x.strip() for x in labels.split(",") if x.strip()],
            modality=modality,
            content_fields=fields,
            label_field=label_field,
            task="multi_label" if multi_label else "single_label",
            storage=storage,
            model={
                "task": model_task,
                "primary_metric": primary_metric
                or ("rmse" if model_task == "regression" else "macro_f1"),
            },
        )
    console.print(
        f"Created project [bold]{p.config.name}[/] in {p.folder} "
        f"({len(p.config.labels)} labels, store {p.db.safe_url})"
    )
    p.close()


@app.command()
@friendly_errors
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="A .csv, .tsv, .jsonl or .parquet file (in an image project: a list of image "
            "paths), a folder of images, a SQLAlchemy URL with --query, or the http(s) URL of a "
            "paginated JSON API."
        ),
    ],
    project: ProjectOpt = Path("."),
    query: Annotated[
        str | None, typer.Option(help="SQL query to run when SOURCE is a database URL.")
    ] = None,
    import_labels: Annotated[
        bool,
        typer.Option(
            help="Image projects: import each image's class folder name (root/<label>/x.png) "
            "and a manifest's label column as its label, when in the taxonomy."
        ),
    ] = True,
    items_key: Annotated[
        str | None,
        typer.Option(help="REST: the key holding a page's rows (default: items, data, ...)."),
    ] = None,
    page_param: Annotated[
        str | None,
        typer.Option(help="REST: page-number pagination by this query parameter (e.g. page)."),
    ] = None,
    token_env: Annotated[
        str | None,
        typer.Option(help="REST: the environment variable holding a bearer token."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Stream items in. Bad rows are quarantined with their reason; re-running adds nothing."""
    with _open(project) as p:
        labels = p.config.label_names
        if source.startswith(("http://", "https://")):
            with progress_bar("ingest", not as_json) as progress:
                report = p.ingest_rest(
                    source,
                    items_key=items_key,
                    page_param=page_param,
                    token_env=token_env,
                    progress=progress,
                )
        elif query is not None:
            with progress_bar("ingest", not as_json) as progress:
                report = p.ingest_sql(source, query, progress=progress)
        else:
            with progress_bar("ingest", not as_json) as progress:
                report = p.ingest(source, import_labels=import_labels, progress=progress)
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
        return
    table = Table(title=f"ingested {report.source}", show_header=False)
    table.add_row("rows read", f"{report.rows_read:,}")
    table.add_row("new items", f"{report.items_added:,}")
    table.add_row("exact duplicates (linked)", f"{report.duplicates:,}")
    table.add_row("already ingested", f"{report.already_ingested:,}")
    table.add_row("quarantined", f"{report.quarantined:,}")
    for reason, n in report.quarantine_reasons.items():
        table.add_row(f"  {reason}", f"{n:,}")
    if report.quarantine_file:
        table.add_row("quarantine file", report.quarantine_file)
    if report.labels_source:
        _label_rows(table, report)
    table.add_row("rows/s", f"{report.rows_per_second:,.0f}")
    console.print(table)
    if report.labels_unknown:
        names = ", ".join(f"{name} ({n:,})" for name, n in report.labels_unknown.items())
        err_console.print(
            f"[yellow]Labels not in the taxonomy, not imported:[/] {names}. The project's "
            f"labels are {', '.join(labels[:20])}{', ...' if len(labels) > 20 else ''}; rename "
            "the folders (or values), add the labels to labelloop.yaml, or pass "
            "--no-import-labels.",
            soft_wrap=True,
        )


def _label_rows(table: Table, report: IngestReport) -> None:
    """The ingest report's rows about the labels that came with the images."""
    source = report.labels_source
    if report.labels_ignored:
        table.add_row(f"labels ignored ({source})", f"{report.labels_ignored:,}")
        return
    table.add_row(f"labels imported ({source})", f"{report.labels_imported:,}")
    if report.labels_already_imported:
        table.add_row("  already imported", f"{report.labels_already_imported:,}")
    if report.labels_kept_human:
        table.add_row("  kept a person's label", f"{report.labels_kept_human:,}")
    if report.labels_unknown:
        table.add_row("  not in the taxonomy", f"{sum(report.labels_unknown.values()):,}")
    for reason, n in report.labels_invalid.items():
        table.add_row(f"  {reason}", f"{n:,}")


@app.command()
@friendly_errors
def status(
    project: ProjectOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Counts per state, per label (human or machine), and quarantined rows by reason."""
    with _open(project) as p:
        s = p.status()
    if as_json:
        console.print_json(json.dumps(s))
        return
    console.print(
        f"[bold]{s['project']}[/]: {s['items']:,} items, {s['quarantined']:,} quarantined"
    )
    states = Table("state", "items", title="items by state")
    for state, n in s["states"].items():
        states.add_row(state, f"{n:,}")
    console.print(states)
    if s["labels"]:
        labels = Table("label", "human", "machine", "import", title="final labels")
        for label, by_kind in sorted(s["labels"].items()):
            labels.add_row(
                label, *(f"{by_kind.get(k, 0):,}" for k in ("human", "machine", "import"))
            )
        console.print(labels)
    if s["labelers"]:
        usage = Table(
            "labeler", "suggestions", "invalid", "tokens", "cost (USD)", title="machine labelers"
        )
        for name, u in sorted(s["labelers"].items()):
            usage.add_row(
                name,
                f"{u['suggestions']:,}",
                f"{u['invalid']:,}",
                f"{u['tokens']:,}",
                f"{u['cost_usd']:.4f}",
            )
        console.print(usage)
    _print_loop(s["loop"])
    if s["quarantine_reasons"]:
        q = Table("reason", "rows", title="quarantine")
        for reason, n in s["quarantine_reasons"].items():
            q.add_row(reason, f"{n:,}")
        console.print(q)


def _print_loop(loop: dict[str, Any]) -> None:
    """The loop part of ``status``: model in use, last retrain, workers and their lag."""
    if loop["model_version"]:
        m = loop["model_metrics"]
        f1 = m.get("held_out_macro_f1")
        console.print(
            f"Model in use: [bold]#{loop['model_version_id']}[/] trained on "
            f"{loop['model_n_labels']:,} human labels, held-out macro-F1 "
            f"{'-' if f1 is None else f'{f1:.3f}'}, {m.get('student_algorithm', 'logreg')} "
            f"student\n  {loop['model_version']}",
            highlight=False,
        )
    else:
        console.print("Model in use: none stored yet (zero-shot until people label items)")
    last = loop["last_retrain_at"]
    console.print(
        f"Last retrain: {last.isoformat(timespec='seconds') if last else 'never'} · next after "
        f"{loop['labels_until_retrain']:,} more labels",
        highlight=False,
    )
    if loop["workers"]:
        t = Table("worker", "last event", "events not processed", "lag (s)", title="loop workers")
        for name, w in loop["workers"].items():
            lag = w["lag_seconds"]
            t.add_row(name, str(w["last_event_id"]), f"{w['pending_events']:,}", f"{lag or 0:.1f}")
        console.print(t)
    else:
        console.print("No loop worker has run yet (labelloop serve, or labelloop worker).")


@app.command()
@friendly_errors
def suggest(
    project: ProjectOpt = Path("."),
    limit: Annotated[int | None, typer.Option(help="At most this many items.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the machine labelers over items that lack suggestions."""
    with _open(project) as p, progress_bar("suggest", not as_json) as progress:
        r = p.suggest(limit=limit, progress=progress)
    if as_json:
        console.print_json(json.dumps(r.as_dict()))
        return
    console.print(
        f"Suggested labels for {r.items:,} items with {', '.join(r.labelers)} "
        f"({r.suggestions:,} suggestions; trained on {r.human_labels:,} human labels). "
        f"LLM calls: {r.expensive_calls:,}, invalid answers: {r.invalid:,} (sent to people), "
        f"cost ${r.cost_usd:.4f}. {r.seconds:.1f} s."
    )
    if r.model_version_id:
        how = "trained now" if r.trained else "stored model reused"
        console.print(f"Model version: #{r.model_version_id} ({how}).", highlight=False)
    if r.llm_error:
        # The items are safe (they go to people), but the setup needs fixing.
        console.print(f"[red]error:[/] {escape(r.llm_error)}", highlight=False)
        raise typer.Exit(1)


@app.command()
@friendly_errors
def suggestions(
    project: ProjectOpt = Path("."),
    labeler: Annotated[
        str | None, typer.Option(help="Only this labeler (e.g. student, zeroshot, llm:...).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.", min=1)] = 20,
    out: Annotated[
        Path | None, typer.Option(help="Write them all to a .csv, .jsonl or .parquet file.")
    ] = None,
) -> None:
    """Machine suggestions with their provenance: label, confidence and how it was measured."""
    with _open(project) as p:
        df = p.suggestions(labeler, None if out else limit)
    if out is not None:
        suffix = out.suffix.lower()
        if suffix == ".csv":
            df.assign(probs=df["probs"].map(json.dumps)).to_csv(out, index=False)
        elif suffix in (".jsonl", ".ndjson"):
            df.to_json(out, orient="records", lines=True)
        elif suffix in (".parquet", ".pq"):
            df.assign(probs=df["probs"].map(json.dumps)).to_parquet(out, index=False)
        else:
            raise LabelloopError(f"{out}: use a .csv, .jsonl or .parquet file")
        console.print(f"{len(df):,} suggestions written to {out}")
        return
    if df.empty:
        console.print("No suggestions yet (run labelloop suggest).")
        return
    table = Table("item", "labeler", "label", "confidence", "method", "status", "text")
    for row in df.itertuples():
        conf = (
            ""
            if row.confidence is None or row.confidence != row.confidence
            else f"{row.confidence:.3f}"
        )
        table.add_row(
            str(row.item_id),
            row.labeler,
            row.label or "",
            conf,
            row.confidence_method or "",
            row.status if row.status == "ok" else f"[red]{row.status}[/]: {row.error}",
            row.content[:60],
        )
    console.print(table)


@app.command()
@friendly_errors
def route(
    project: ProjectOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Auto-accept machine labels that meet the precision target; queue the rest for people."""
    with _open(project) as p:
        r = p.route()
        target = p.config.metrics.precision_target
    if as_json:
        console.print_json(json.dumps(r.as_dict(), default=str))
        return
    console.print(
        f"{r.pending:,} items: {r.auto:,} labeled by machines ({r.audit:,} of them also sent to "
        f"people as an audit), {r.queued:,} queued for people. Human labels: {r.human_labels:,}."
    )
    if r.thresholds:
        table = Table(
            "label", "threshold", "support", "precision", f"lower bound (target {target})", "note"
        )
        for t in r.thresholds:
            table.add_row(
                t["label"],
                f"{t['threshold']:.3f}",
                str(t["support"]),
                f"{t['precision']:.3f}",
                f"{t['lower_bound']:.3f}",
                t["reason"],
            )
        console.print(table)
    else:
        console.print("Too few human labels to estimate precision: nothing is auto-accepted yet.")


@app.command()
@friendly_errors
def check(
    project: ProjectOpt = Path("."),
    llm_order: Annotated[
        int, typer.Option(help="Also ask the LLM N human-labeled items under two label orders.")
    ] = 0,
) -> None:
    """Machine labelers against people: label skew, one-label answers, order sensitivity."""
    with _open(project) as p:
        bias = p.labeler_bias()
        if bias.empty:
            console.print("Too few human labels (two labels at least) to compare with.")
        else:
            table = Table(
                "labeler",
                "answers",
                "total variation",
                "over-predicted",
                "mode",
                "its share",
                "people's share",
                "flag",
                title="labelers against people",
            )
            for r in bias.itertuples():
                table.add_row(
                    r.labeler,
                    f"{r.n:,}",
                    f"{r.total_variation:.3f}",
                    r.over_predicted or "-",
                    str(r.mode),
                    f"{r.mode_share:.0%}",
                    f"{r.human_mode_share:.0%}",
                    "[red]check[/]" if r.flagged else "ok",
                )
            console.print(table)
        if llm_order:
            from labelloop.annotate.checks import llm_order_sensitivity
            from labelloop.labelers.llm.factory import project_llm_labeler

            res = llm_order_sensitivity(p.ctx, project_llm_labeler(p.ctx), llm_order)
            if res["flip_rate"] is None:
                console.print(f"Order sensitivity: not measured ({res['measured_on']}).")
            else:
                console.print(
                    f"LLM order sensitivity: {res['flips']} of {res['n_items']} answers changed "
                    f"with the label order ({res['flip_rate']:.0%}, 95% interval "
                    f"{res['ci_low']:.0%} to {res['ci_high']:.0%})."
                )


def _pairs(values: list[str] | None, what: str, option: str) -> dict[str, str]:
    """``name=value`` pairs, given as repeated options or comma-separated."""
    out: dict[str, str] = {}
    for value in values or []:
        for part in value.split(","):
            if not part.strip():
                continue
            name, sep, target = part.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise LabelloopError(f"{option}: expected {what}, got {part.strip()!r}")
            out[name.strip()] = target.strip()
    return out


@app.command()
@friendly_errors
def export(
    path: Annotated[
        Path,
        typer.Argument(help="Output file: .csv, .jsonl, .parquet, or .json (Label Studio tasks)."),
    ],
    project: ProjectOpt = Path("."),
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="csv, jsonl, parquet or label-studio (default: from the suffix)."
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Only labels from these sources: human, machine, import."),
    ] = None,
    annotator_emails: Annotated[
        list[str] | None,
        typer.Option(
            "--annotator-emails",
            help="Label Studio: annotator=email of a Label Studio member (ana=ana@x.org,...); "
            "added to label_studio.annotator_emails. Annotators without one are kept in the "
            "task's meta and Label Studio credits the importing user.",
        ),
    ] = None,
    from_name: Annotated[
        str | None, typer.Option(help="Label Studio: the Choices control's name.")
    ] = None,
    to_name: Annotated[
        str | None, typer.Option(help="Label Studio: the object tag the choices label.")
    ] = None,
    media_url: Annotated[
        str | None,
        typer.Option(help="Label Studio: an image's URL, with {path}, {name}, {item_id}."),
    ] = None,
    media_root: Annotated[
        Path | None, typer.Option(help="Label Studio: {path} is relative to this folder.")
    ] = None,
    predictions: Annotated[
        bool, typer.Option(help="Label Studio: machine suggestions as predictions.")
    ] = True,
    label_config: Annotated[
        Path | None,
        typer.Option(help="Label Studio: where to write the labeling config (default: beside)."),
    ] = None,
) -> None:
    """Write final labels with provenance (who or what labeled, version, confidence), or every
    item as Label Studio tasks with annotations and predictions."""
    from labelloop.interop import export_kind

    kind = export_kind(path, fmt, option="--format")
    with _open(project) as p:
        if kind == "label-studio":
            s = p.export(
                path,
                kind,
                annotator_emails=_pairs(annotator_emails, "annotator=email", "--annotator-emails"),
                from_name=from_name,
                to_name=to_name,
                media_url=media_url,
                media_root=media_root,
                include_predictions=predictions,
                label_config_path=label_config,
            )
            console.print(
                f"Wrote {s.rows:,} tasks to {s.path} ({s.annotations:,} annotations, "
                f"{s.annotations_with_email:,} with an annotator email; {s.predictions:,} "
                f"predictions, {s.propagated:,} propagated labels) and the labeling config "
                f"to {s.label_config_path} (control {s.from_name!r} on {s.to_name!r}).",
                highlight=False,
            )
            return
        options: dict[str, Any] = {}
        if source:
            options["source_kinds"] = source
        with progress_bar("export") as progress:
            summary = p.export(path, kind, progress=progress, **options)
    console.print(f"Wrote {summary.rows:,} labels to {summary.path} ({summary.format}).")


@app.command("import")
@friendly_errors
def import_(
    path: Annotated[Path, typer.Argument(help="A Label Studio JSON (or JSONL) export.")],
    project: ProjectOpt = Path("."),
    from_name: Annotated[
        str | None, typer.Option(help="The Label Studio control holding the choices.")
    ] = None,
    label_config: Annotated[
        Path | None,
        typer.Option(
            help="The Label Studio project's labeling config (XML; default: "
            "<file>.label_config.xml beside the file, when there is one)."
        ),
    ] = None,
    annotators: Annotated[
        list[str] | None,
        typer.Option(
            help="Label Studio annotator=labelloop name (an email, or ls-user-<id> for a bare "
            "id): ls-user-1=ana,bo@x.org=bo."
        ),
    ] = None,
    media_root: Annotated[
        Path | None, typer.Option(help="Label Studio's local-files root, to find image files.")
    ] = None,
    overwrite_human: Annotated[
        bool, typer.Option(help="Let imported labels replace labels people gave here.")
    ] = False,
) -> None:
    """Import Label Studio tasks with their annotations (human labels) and predictions."""
    with _open(project) as p:
        with progress_bar("import") as progress:
            s = p.import_label_studio(
                path,
                from_name=from_name,
                label_config=label_config,
                annotators=_pairs(annotators, "annotator=name", "--annotators"),
                media_root=media_root,
                overwrite_human=overwrite_human,
                progress=progress,
            )
    added = s.ingest.items_added if s.ingest is not None else 0
    console.print(
        f"Imported {s.tasks:,} tasks ({s.shape} export; {s.tasks_matched:,} found by labelloop's "
        f"identity, {added:,} new items): {s.annotations:,} annotations and "
        f"{s.predictions:,} predictions added; {s.annotations_already_imported:,} annotations "
        f"and {s.predictions_already_imported:,} predictions already here; "
        f"{s.annotations_rejected:,} annotations and {s.predictions_rejected:,} predictions "
        f"rejected, {s.annotations_cancelled:,} cancelled.",
        highlight=False,
    )
    for warning in s.warnings:
        console.print(f"  warning: {warning}", highlight=False)
    for issue in s.issues[:10]:
        console.print(f"  task {issue.task_id}: {issue.reason}", highlight=False)


@app.command("push-label-studio")
@friendly_errors
def push_label_studio_(
    url: Annotated[str, typer.Argument(help="Label Studio's address, e.g. http://127.0.0.1:8080")],
    ls_project: Annotated[int, typer.Option(help="The Label Studio project's id.")],
    token: Annotated[
        str,
        typer.Option(envvar="LABEL_STUDIO_API_KEY", help="Label Studio API token (or the env)."),
    ],
    project: ProjectOpt = Path("."),
    annotator_emails: Annotated[
        list[str] | None,
        typer.Option("--annotator-emails", help="annotator=email of a Label Studio member."),
    ] = None,
) -> None:
    """Update a Label Studio project in place: new items become tasks, known ones get their new
    annotations and predictions (a second push adds nothing)."""
    emails = _pairs(annotator_emails, "annotator=email", "--annotator-emails")
    with _open(project) as p:
        s = p.push_label_studio(url, token, ls_project, annotator_emails=emails)
    console.print(
        f"Label Studio project {s.project}: {s.tasks_created:,} tasks created, "
        f"{s.tasks_found:,} found; {s.annotations_created:,} annotations and "
        f"{s.predictions_created:,} predictions added, {s.tasks_meta_updated:,} tasks updated.",
        highlight=False,
    )


def _char_ngrams_settings(value: str) -> dict[str, dict[str, int | str]]:
    """``--char-ngrams``: a number of features (0: off) or ``auto``, as project settings."""
    if value.strip().lower() == "auto":
        return {"embedding": {"char_ngrams": "auto"}}
    try:
        n = int(value)
    except ValueError:
        raise LabelloopError(
            f"--char-ngrams: expected 0 to 65536 or 'auto', got {value!r}"
        ) from None
    if not 0 <= n <= 65536:
        raise LabelloopError(f"--char-ngrams: expected 0 to 65536 or 'auto', got {n}")
    return {"embedding": {"char_ngrams": n}}


@app.command()
@friendly_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the project and the report.")] = Path(
        "labelloop-demo"
    ),
    simulate: Annotated[
        bool,
        typer.Option(help="A simulated reviewer answers from the dataset's labels (unattended)."),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(help="A labeled CSV, TSV, JSONL or Parquet file (default: bundled SMS spam)."),
    ] = None,
    text_col: Annotated[str, typer.Option(help="Column holding the text.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column holding the label.")] = "label",
    budget: Annotated[int, typer.Option(help="Human labels the simulated reviewer gives.")] = 400,
    retrain_every: Annotated[int, typer.Option(help="Retrain after this many new labels.")] = 50,
    noise: Annotated[
        float,
        typer.Option(
            help="With --simulate: the share of answers the simulated reviewer gets wrong "
            "(to see what rechecks catch).",
            min=0.0,
            max=0.99,
        ),
    ] = 0.0,
    llm: Annotated[
        bool, typer.Option(help="Use the local LLM (SmolLM2) where the cascade says it pays.")
    ] = True,
    llm_budget: Annotated[int, typer.Option(help="At most this many LLM calls.")] = 100,
    char_ngrams: Annotated[
        str,
        typer.Option(
            help="embedding.char_ngrams: 'auto' (the loop compares the student with and "
            "without hashed character n-grams on its random sample and chooses), or append "
            "this many n-gram features to each vector (0: off; see docs/benchmarks.md).",
        ),
    ] = "auto",
    host: Annotated[str, typer.Option(help="Review app host (without --simulate).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Review app port (without --simulate).")] = 8000,
) -> None:
    """The whole loop on the bundled example (or --data): label with people, or --simulate."""
    from labelloop.demo.report import write_report
    from labelloop.demo.run import run_demo

    settings = _char_ngrams_settings(char_ngrams)  # a bad value fails before any work
    llm_labeler = None
    if llm:
        from labelloop.demo.run import local_llm_for_demo

        llm_labeler = local_llm_for_demo(console, max_calls=llm_budget)
    result, p, loop = run_demo(
        out,
        data=data,
        text_col=text_col,
        label_col=label_col,
        simulate=simulate,
        budget=budget,
        retrain_every=retrain_every,
        llm=llm_labeler,
        console=console,
        noise=noise,
        settings=settings,
    )
    if simulate:
        report = write_report(
            result, out / "report", p.config.metrics.precision_target, p.labeler_bias()
        )
        console.print(f"[bold green]Report:[/] {report}")
        p.close()
        return
    _serve_demo(p, loop, host, port)


def _serve_demo(p: Any, loop: Any, host: str, port: int) -> None:
    """Open the review app with the feedback loop retraining beside it."""
    import secrets
    import threading

    import uvicorn

    from labelloop.api import create_app
    from labelloop.auth import create_user
    from labelloop.workers.loop_worker import LoopWorker

    password = secrets.token_urlsafe(9)
    create_user(p.db, "demo", "admin", password)
    stop = threading.Event()
    LoopWorker(p.ctx, embedder=loop.embedder, llm=loop.llm, retrain_every=loop.retrain_every).start(
        stop
    )
    console.print(
        f"Review app: [bold]http://{host}:{port}/review[/] · user [bold]demo[/], password "
        f"[bold]{password}[/] · the student retrains every {loop.retrain_every} labels · Ctrl-C stops."
    )
    try:
        uvicorn.run(create_app(p), host=host, port=port, log_level="warning")
    finally:
        stop.set()
        p.close()


@app.command()
@friendly_errors
def quickstart(
    folder: Annotated[Path, typer.Argument(help="Where to create the example project.")] = Path(
        "labelloop-quickstart"
    ),
) -> None:
    """Create a project on the bundled SMS spam dataset and ingest it (no servers, no network)."""
    from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path
    from labelloop.project import Project

    if (folder / "labelloop.yaml").exists():
        p = Project.open(folder)
        console.print(f"Using the existing project in {folder}")
    else:
        p = Project.init(
            folder,
            name="sms-spam",
            labels=[{"name": k, "description": v} for k, v in SMS_SPAM_LABELS.items()],
            content_fields=["text"],
            label_field="label",
        )
        console.print(f"Created project [bold]sms-spam[/] in {folder}")
    with p:
        with progress_bar("ingest") as progress:
            report = p.ingest(sms_spam_path(), progress=progress)
        console.print(
            f"Ingested {report.rows_read:,} rows: {report.items_added:,} new items, "
            f"{report.duplicates:,} exact duplicates linked, {report.already_ingested:,} already "
            f"there, {report.quarantined:,} quarantined ({report.rows_per_second:,.0f} rows/s)."
        )
    status(project=folder, as_json=False)


app.command()(serve)
app.command()(retrain)
app.command()(worker)
app.command()(annotate)
app.command("stream-worker")(stream_worker)
app.command("webhook-relay")(webhook_relay)
app.command()(watch)
register_model_commands(app)
register_edge_commands(app)
register_serve_commands(app)
register_automate_commands(app)
app.add_typer(user_app, name="user", help="Manage users and API tokens of the review app.")


if __name__ == "__main__":
    app()
