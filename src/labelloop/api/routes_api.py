"""The JSON API under /api: thin over ``Project``, the review queue, auth and export."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile, status
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from labelloop.api import schemas
from labelloop.api.dashboard import dashboard_numbers
from labelloop.api.security import Caller, admin, project_of, reviewer, viewer
from labelloop.auth import AuthError, create_token, create_user, list_users
from labelloop.project import Project
from labelloop.store.models import ItemState
from labelloop.store.reviews import item_exists, leased_media_path

router = APIRouter(prefix="/api")
ProjectDep = Annotated[Project, Depends(project_of)]
Viewer = Annotated[Caller, Depends(viewer)]
Reviewer = Annotated[Caller, Depends(reviewer)]
Admin = Annotated[Caller, Depends(admin)]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts: NaN becomes None, timestamps ISO strings."""
    out = []
    for row in df.to_dict("records"):
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                row[key] = None
            elif isinstance(value, datetime | pd.Timestamp):
                row[key] = value.isoformat()
        out.append(row)
    return out


def _leased(project: Project, item: dict[str, Any] | None) -> schemas.LeasedItem | None:
    """The item as a reviewer sees it: without the known label kept from the source (it would
    anchor the reviewer), with a URL for its image."""
    if item is None:
        return None
    hidden = project.config.label_field
    if hidden and isinstance(item.get("meta"), dict) and hidden in item["meta"]:
        item = {**item, "meta": {k: v for k, v in item["meta"].items() if k != hidden}}
    media_url = f"/api/items/{item['id']}/media" if item.get("media_path") else None
    return schemas.LeasedItem(**item, media_url=media_url)


def _require_item(project: Project, item_id: int) -> None:
    if not item_exists(project.db, project.id, item_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no item {item_id} in this project")


def _upload_to(folder: Path, upload: UploadFile) -> Path:
    """Save an upload under ``folder`` as ``<digest>-<safe name>`` (the suffix kept).

    The digest of the bytes is part of the name, so the ingest's source id (the path) tells
    two different files of the same name apart, while the same file uploaded twice is still
    recognised and adds nothing; an earlier upload is never overwritten.
    """
    name = _SAFE_NAME.sub("_", Path(upload.filename or "upload").name).strip("._") or "upload"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as out:
        for chunk in iter(lambda: upload.file.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    path = folder / f"{digest.hexdigest()[:12]}-{name}"
    os.replace(out.name, path)
    return path


# -- reading -------------------------------------------------------------------------------


@router.get("/status", response_model=schemas.StatusOut, summary="Counts per state and label")
def get_status(project: ProjectDep, _: Viewer) -> dict[str, Any]:
    return project.status()


@router.get("/dashboard", response_model=schemas.DashboardOut, summary="Numbers of the dashboard")
def get_dashboard(project: ProjectDep, _: Viewer) -> dict[str, Any]:
    return dashboard_numbers(project)


@router.get("/items", response_model=list[schemas.ItemOut], summary="Items, optionally by state")
def get_items(
    project: ProjectDep,
    _: Reviewer,
    state: Annotated[str | None, Query(description="new, suggested, queued, ...")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    if state is not None and state not in ItemState.all:
        raise HTTPException(
            422,
            f"unknown state {state!r}; use one of {', '.join(ItemState.all)}",
        )
    return _records(project.items(state=state, limit=limit))


@router.get("/quarantine", response_model=list[schemas.QuarantineOut], summary="Rejected rows")
def get_quarantine(
    project: ProjectDep, _: Reviewer, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[dict[str, Any]]:
    return _records(project.quarantine().head(limit))


@router.get("/labels", response_model=list[schemas.FinalLabelOut], summary="Final labels")
def get_labels(
    project: ProjectDep, _: Reviewer, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
) -> list[dict[str, Any]]:
    return _records(project.final_labels().head(limit))


@router.get(
    "/suggestions",
    response_model=list[schemas.SuggestionRecordOut],
    summary="Machine suggestions with provenance, oldest first",
)
def get_suggestions(
    project: ProjectDep,
    _: Reviewer,
    labeler: Annotated[str | None, Query(description="only this labeler, e.g. student")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[dict[str, Any]]:
    return _records(project.suggestions(labeler, limit))


# -- reviewing -----------------------------------------------------------------------------


@router.post("/queue/next", response_model=schemas.NextOut, summary="Lease the next item")
def queue_next(project: ProjectDep, caller: Reviewer) -> dict[str, Any]:
    return {"item": _leased(project, project.next_item(caller.name))}


@router.post(
    "/items/{item_id}/label",
    response_model=schemas.SubmitOut,
    summary="Answer a leased item",
    responses={409: {"description": "no live lease"}, 422: {"description": "label refused"}},
)
def label_item(
    item_id: int, body: schemas.LabelIn, project: ProjectDep, caller: Reviewer
) -> dict[str, Any]:
    _require_item(project, item_id)
    return project.submit(
        item_id, body.labels, annotator=caller.name, time_spent_ms=body.time_spent_ms
    )


@router.post("/items/{item_id}/skip", response_model=schemas.SkipOut, summary="Pass on an item")
def skip_item(item_id: int, project: ProjectDep, caller: Reviewer) -> dict[str, Any]:
    _require_item(project, item_id)
    project.skip(item_id, annotator=caller.name)
    return {"item_id": item_id, "skipped": True}


@router.post("/undo", response_model=schemas.NextOut, summary="Take back your last answer")
def undo(project: ProjectDep, caller: Reviewer) -> dict[str, Any]:
    return {"item": _leased(project, project.undo(annotator=caller.name))}


@router.get(
    "/items/{item_id}/media",
    summary="The image of an item leased to you (admins: any item)",
    response_class=FileResponse,
)
def item_media(item_id: int, project: ProjectDep, caller: Reviewer) -> FileResponse:
    path = leased_media_path(
        project.db, project.id, item_id, None if caller.user.can("admin") else caller.name
    )
    if not path or not Path(path).is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no media for item {item_id} leased to {caller.name!r}"
        )
    return FileResponse(path)


@router.post("/queue/enqueue", response_model=schemas.EnqueueOut, summary="Send items to people")
def enqueue(body: schemas.EnqueueIn, project: ProjectDep, _: Admin) -> dict[str, Any]:
    if body.priorities is not None and len(body.priorities) != len(body.item_ids):
        raise HTTPException(
            422,
            f"{len(body.item_ids)} item_ids but {len(body.priorities)} priorities",
        )
    project.enqueue(
        body.item_ids, body.priorities, reason=body.reason, reviews_needed=body.reviews_needed
    )
    return {"enqueued": len(body.item_ids)}


# -- administration ------------------------------------------------------------------------


@router.post("/ingest", response_model=schemas.IngestOut, summary="Ingest a file (admin)")
def ingest(
    project: ProjectDep,
    _: Admin,
    path: Annotated[
        str | None, Form(description="a file or image folder on the server (relative: project)")
    ] = None,
    file: Annotated[UploadFile | None, File(description="a CSV/TSV/JSONL/Parquet upload")] = None,
) -> dict[str, Any]:
    if (path is None) == (file is None):
        raise HTTPException(422, "send exactly one of 'path' and 'file'")
    if file is not None:
        source = _upload_to(project.folder / "uploads", file)
    else:
        source = Path(path or "")
        source = source if source.is_absolute() else project.folder / source
        if not source.exists():
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no file or folder at {source}")
    return project.ingest(source).as_dict()


@router.get("/users", response_model=list[schemas.UserOut], summary="Users (admin)")
def get_users(project: ProjectDep, _: Admin) -> list[Any]:
    return [{"id": u.id, "username": u.username, "role": u.role} for u in list_users(project.db)]


@router.post(
    "/users",
    response_model=schemas.UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user (admin)",
)
def post_user(body: schemas.UserIn, project: ProjectDep, _: Admin) -> dict[str, Any]:
    if any(u.username == body.username for u in list_users(project.db)):
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {body.username!r} already exists")
    try:
        user = create_user(project.db, body.username, body.role, body.password)
    except AuthError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"id": user.id, "username": user.username, "role": user.role}


@router.post(
    "/users/{username}/tokens",
    response_model=schemas.TokenOut,
    status_code=status.HTTP_201_CREATED,
    summary="A new API token for a user (admin)",
)
def post_token(username: str, project: ProjectDep, _: Admin) -> dict[str, Any]:
    try:
        token = create_token(project.db, username)
    except AuthError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return {"username": username, "token": token}


# -- export and import ---------------------------------------------------------------------

EXPORT_MEDIA = {
    "csv": ("text/csv", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
    "label-studio": ("application/json", "json"),
}


@router.get(
    "/export",
    summary="Download the final labels (admin)",
    response_class=FileResponse,
    responses={200: {"description": "the file, as an attachment"}},
)
def export(
    project: ProjectDep,
    _: Admin,
    format: Annotated[str, Query(description="csv, jsonl, parquet or label-studio")] = "csv",
) -> FileResponse:
    from labelloop.interop import export_label_studio, export_labels

    if format not in EXPORT_MEDIA:
        raise HTTPException(
            422,
            f"unknown format {format!r}; use one of {', '.join(EXPORT_MEDIA)}",
        )
    media_type, suffix = EXPORT_MEDIA[format]
    folder = Path(tempfile.mkdtemp(prefix="labelloop-export-"))
    path = folder / f"{project.config.name}-labels.{suffix}"
    try:
        if format == "label-studio":
            export_label_studio(project, path)
        else:
            export_labels(project, path, format)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type=media_type,
        filename=path.name,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.post("/import/label-studio", summary="Import Label Studio tasks (admin)")
def import_label_studio_file(
    project: ProjectDep,
    _: Admin,
    file: Annotated[UploadFile, File(description="a Label Studio JSON export")],
    overwrite_human: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    from labelloop.interop import import_label_studio

    path = _upload_to(project.folder / "uploads", file)
    summary = import_label_studio(project, path, overwrite_human=overwrite_human)
    out = summary.as_dict(with_issues=True)
    out["issues"] = out["issues"][:200]
    return out
