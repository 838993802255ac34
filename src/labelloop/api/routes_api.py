"""The JSON API under /api: thin over ``Project``, the review queue, auth and export."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import (
    APIRouter,
    Body,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
    status,
)
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from labelloop.api import schemas
from labelloop.api.dashboard import dashboard_numbers
from labelloop.api.security import (
    Caller,
    admin,
    project_of,
    require_self_or_admin,
    reviewer,
    viewer,
)
from labelloop.auth import (
    AuthError,
    InactiveUser,
    LastAdmin,
    UnknownUser,
    WrongPassword,
    change_password,
    create_user,
    deactivate_user,
    issue_token,
    list_tokens,
    list_users,
    reactivate_user,
    revoke_tokens,
    set_password,
)
from labelloop.auth.throttle import LoginThrottle
from labelloop.auth.users import USERNAME_PATTERN
from labelloop.core.config import Modality
from labelloop.core.errors import quoted
from labelloop.project import Project
from labelloop.review.progress import progress_cache
from labelloop.store.models import ItemState
from labelloop.store.reads import human_label_count
from labelloop.store.reviews import item_exists, leased_media_path

router = APIRouter(prefix="/api")
ProjectDep = Annotated[Project, Depends(project_of)]
Viewer = Annotated[Caller, Depends(viewer)]
Reviewer = Annotated[Caller, Depends(reviewer)]
Admin = Annotated[Caller, Depends(admin)]
ItemIdPath = Annotated[int, PathParam(ge=1, le=schemas.MAX_ID, description="the item's id")]
# Only names create_user allows: anything else is a 422 here, not a NUL byte PostgreSQL refuses.
UserPath = Annotated[str, PathParam(max_length=100, pattern=rf"^{USERNAME_PATTERN}$")]
TokenIdPath = Annotated[int, PathParam(ge=1, le=schemas.MAX_ID, description="the token's id")]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# Where a rejected path ingest ends, whether the path exists or is outside the import folders:
# the same status and words, so the API does not tell which paths exist on the server.
_NO_PATH = "no file or folder {path} inside the import folders (ingest.import_dirs)"


def safe_file_name(name: str, default: str = "file") -> str:
    """``name`` as a plain file name: letters, digits, ``.``, ``_`` and ``-`` only, no leading
    dot, at most 100 characters (nothing in it can climb out of a folder)."""
    safe = _SAFE_NAME.sub("_", name).strip("._") or default
    if len(safe) > 100:
        stem, dot, suffix = safe.rpartition(".")
        safe = f"{stem[: 99 - len(suffix)]}.{suffix}" if dot and len(suffix) <= 10 else safe[:100]
    return safe


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
    cells = None
    if project.config.modality == Modality.tabular:
        cells = table_cells(item["content"])
        if cells is not None:
            rank = {name: i for i, name in enumerate(_column_order(project))}
            cells = dict(sorted(cells.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return schemas.LeasedItem(**item, media_url=media_url, cells=cells)


# (store, project id) -> (human label actions when ranked, columns in order)
_COLUMN_ORDERS: dict[tuple[str, int], tuple[int, list[str]]] = {}


def _column_order(project: Project) -> list[str]:
    """The project's columns, most telling first, re-ranked when human label actions have
    grown by a tenth (at least 10) since the last ranking; cheap between rankings."""
    key = (str(project.db.engine.url), project.id)
    count = human_label_count(project.db, project.id)
    cached = _COLUMN_ORDERS.get(key)
    if cached is not None and count - cached[0] < max(10, cached[0] // 10):
        return cached[1]
    order = project.column_order()
    _COLUMN_ORDERS[key] = (count, order)
    return order


def table_cells(content: str) -> dict[str, Any] | None:
    """A table row's stored content (a JSON object of its cells) as a dict; None if it is not
    one (an item stored before the project became tabular)."""
    try:
        cells = json.loads(content)
    except ValueError:
        return None
    return cells if isinstance(cells, dict) else None


def _require_item(project: Project, item_id: int) -> None:
    if not item_exists(project.db, project.id, item_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no item {item_id} in this project")


def _upload_to(folder: Path, upload: UploadFile, max_bytes: int) -> tuple[Path, bool]:
    """Save an upload under ``folder`` as ``<digest>-<safe name>`` (the suffix kept); return
    the path and whether it is new (False: the same bytes under the same name came before).

    The digest of the bytes is part of the name, so the ingest's source id (the path) tells
    two different files of the same name apart, while the same file uploaded twice is still
    recognised and adds nothing; an earlier upload is never overwritten. More than
    ``max_bytes`` is a 413, and nothing of it stays on disk.
    """
    name = safe_file_name(Path(upload.filename or "upload").name, "upload")
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as out:
        try:
            for chunk in iter(lambda: upload.file.read(1 << 20), b""):
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPException(
                        413,
                        f"the upload is larger than {max_bytes:,} bytes (api.max_upload_bytes)",
                    )
                digest.update(chunk)
                out.write(chunk)
        except BaseException:
            out.close()
            os.unlink(out.name)
            raise
    path = folder / f"{digest.hexdigest()[:12]}-{name}"
    if path.exists():
        os.unlink(out.name)
        return path, False
    os.replace(out.name, path)
    return path, True


@contextmanager
def _saved_upload(project: Project, upload: UploadFile) -> Iterator[Path]:
    """The upload saved in the project's ``uploads`` folder; removed again if what runs with
    it fails (a rejected upload leaves no file behind)."""
    path, new = _upload_to(project.folder / "uploads", upload, project.config.api.max_upload_bytes)
    try:
        yield path
    except BaseException:
        if new:
            path.unlink(missing_ok=True)
        raise


def _import_path(project: Project, given: str) -> Path:
    """The real path of ``given`` if it lies inside one of the configured import folders.

    Relative paths are looked up in each import folder in turn; ``..`` and symbolic links are
    resolved first, so neither leads out. A path that does not exist and one outside the
    folders get the same 404, so the answer tells nothing about the server's files.
    """
    folders = project.config.ingest.import_dirs
    if not folders:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "path ingest over HTTP is off; set ingest.import_dirs (or upload the file)",
        )
    try:
        roots = [(project.folder / d).resolve() for d in folders]
        given_path = Path(given)
        tries = [given_path] if given_path.is_absolute() else [r / given_path for r in roots]
        for candidate in tries:
            real = candidate.resolve()
            if any(real.is_relative_to(root) for root in roots) and real.exists():
                return real
    except (OSError, ValueError):  # a NUL byte, a name too long, a loop of links
        pass
    raise HTTPException(status.HTTP_404_NOT_FOUND, _NO_PATH.format(path=quoted(given)))


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
    state: Annotated[
        str | None, Query(max_length=100, description="new, suggested, queued, ...")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    if state is not None and state not in ItemState.all:
        raise HTTPException(
            422,
            f"unknown state {quoted(state)}; use one of {', '.join(ItemState.all)}",
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
    labeler: Annotated[
        str | None, Query(max_length=200, description="only this labeler, e.g. student")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[dict[str, Any]]:
    return _records(project.suggestions(labeler, limit))


# -- reviewing -----------------------------------------------------------------------------


@router.post("/queue/next", response_model=schemas.NextOut, summary="Lease the next item")
def queue_next(project: ProjectDep, caller: Reviewer) -> dict[str, Any]:
    item = _leased(project, project.next_item(caller.name))
    return {"item": item, "progress": _progress(project, caller.name)}


def _progress(project: Project, annotator: str) -> dict[str, Any] | None:
    """The reviewer's done / left / per-hour numbers (cached a few seconds per reviewer)."""
    return progress_cache.get(project.db, project.id, annotator).as_dict()


@router.post(
    "/items/{item_id}/label",
    response_model=schemas.SubmitOut,
    summary="Answer a leased item (multi-label: [] is 'none of these apply')",
    responses={
        409: {"description": "no live lease"},
        422: {"description": "label refused (outside the taxonomy, or not one on single-label)"},
    },
)
def label_item(
    item_id: ItemIdPath, body: schemas.LabelIn, project: ProjectDep, caller: Reviewer
) -> dict[str, Any]:
    _require_item(project, item_id)
    result = project.submit(
        item_id, body.labels, annotator=caller.name, time_spent_ms=body.time_spent_ms
    )
    if not result.get("gold"):  # a gold answer scores the reviewer; it is not a label
        progress_cache.note_answer(
            project.db,
            project.id,
            caller.name,
            decided=result["final"] is not None,
            time_spent_ms=body.time_spent_ms,
        )
    return result


@router.post("/items/{item_id}/skip", response_model=schemas.SkipOut, summary="Pass on an item")
def skip_item(item_id: ItemIdPath, project: ProjectDep, caller: Reviewer) -> dict[str, Any]:
    _require_item(project, item_id)
    project.skip(item_id, annotator=caller.name)
    return {"item_id": item_id, "skipped": True}


@router.post("/undo", response_model=schemas.NextOut, summary="Take back your last answer")
def undo(project: ProjectDep, caller: Reviewer) -> dict[str, Any]:
    item = _leased(project, project.undo(annotator=caller.name))
    progress_cache.forget(project.db, project.id, caller.name)
    return {"item": item, "progress": _progress(project, caller.name)}


@router.get(
    "/items/{item_id}/media",
    summary="The image of an item leased to you (admins: any item)",
    response_class=FileResponse,
)
def item_media(item_id: ItemIdPath, project: ProjectDep, caller: Reviewer) -> FileResponse:
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


@router.post(
    "/ingest",
    response_model=schemas.IngestOut,
    summary="Ingest an uploaded file, or a server path inside ingest.import_dirs (admin)",
    responses={
        403: {"description": "path ingest is off (no ingest.import_dirs)"},
        404: {"description": "no such path inside the import folders"},
        413: {"description": "the upload is larger than api.max_upload_bytes"},
    },
)
def ingest(
    project: ProjectDep,
    _: Admin,
    path: Annotated[
        str | None,
        Form(
            max_length=4096,
            description="a file or image folder inside one of the project's ingest.import_dirs "
            "(relative: looked up in each); off when none are set",
        ),
    ] = None,
    file: Annotated[UploadFile | None, File(description="a CSV/TSV/JSONL/Parquet upload")] = None,
    import_labels: Annotated[
        bool,
        Form(
            description="image projects: import each image's class folder name and a "
            "manifest's label column as its label, when in the taxonomy"
        ),
    ] = True,
) -> dict[str, Any]:
    if (path is None) == (file is None):
        raise HTTPException(422, "send exactly one of 'path' and 'file'")
    if file is not None:
        with _saved_upload(project, file) as source:
            return project.ingest(source, import_labels=import_labels).as_dict()
    source = _import_path(project, path or "")
    return project.ingest(source, import_labels=import_labels).as_dict()


@router.post(
    "/items",
    response_model=schemas.ItemsOut,
    summary="Add items, one or a list, idempotent by external_id (admin)",
)
def post_items(
    body: Annotated[
        schemas.ItemIn | list[schemas.ItemIn],
        Body(description=f"one item or a list of at most {schemas.MAX_ITEMS_PER_REQUEST}"),
    ],
    project: ProjectDep,
    _: Admin,
) -> dict[str, Any]:
    """Items enter the project (content-hash dedup). With a Redis URL (``stream.redis_url``
    in the project file, or ``LABELLOOP_ITEMS_REDIS``) each is also put once on the stream
    workers' input stream (``stream.items_stream``, or ``LABELLOOP_ITEMS_STREAM``); while the
    workers' group is more than ``stream.max_lag`` entries behind, the answer is 429 with
    ``Retry-After`` (backpressure) and nothing is taken."""
    from labelloop.workers.metrics import group_lag
    from labelloop.workers.stream import RedisStreamFeed, redis_client, submit_items

    items = body if isinstance(body, list) else [body]
    if not items or len(items) > schemas.MAX_ITEMS_PER_REQUEST:
        raise HTTPException(
            422, f"{len(items)} items: send 1 to {schemas.MAX_ITEMS_PER_REQUEST} per request"
        )
    feed = None
    settings = project.config.stream
    url = os.environ.get("LABELLOOP_ITEMS_REDIS") or settings.redis_url
    if url:
        stream = os.environ.get("LABELLOOP_ITEMS_STREAM") or settings.items_stream
        client = redis_client(url)
        if settings.max_lag is not None:
            lag = group_lag(client, stream, settings.group) if client.exists(stream) else None
            if lag is not None and lag > settings.max_lag:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"the stream workers are {lag:,} entries behind (stream.max_lag "
                    f"{settings.max_lag:,}); retry later",
                    headers={"Retry-After": "1"},
                )
        feed = RedisStreamFeed(client, stream)
    pairs = [(i.external_id, dict(i.fields)) for i in items]
    return submit_items(project.ctx, pairs, feed=feed).as_dict()


@router.get("/users", response_model=list[schemas.UserOut], summary="Users (admin)")
def get_users(project: ProjectDep, _: Admin) -> list[Any]:
    return [
        {"id": u.id, "username": u.username, "role": u.role, "active": u.active}
        for u in list_users(project.db)
    ]


@router.post(
    "/users",
    response_model=schemas.UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user (admin)",
)
def post_user(body: schemas.UserIn, project: ProjectDep, _: Admin) -> dict[str, Any]:
    if any(u.username == body.username for u in list_users(project.db)):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"user {quoted(body.username)} already exists"
        )
    try:
        user = create_user(project.db, body.username, body.role, body.password)
    except AuthError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"id": user.id, "username": user.username, "role": user.role, "active": user.active}


def _auth_refusal(exc: AuthError) -> HTTPException:
    """The status of an account error: 404 no such user or token, 409 a deactivated user or the
    last admin, 403 a wrong current password, 422 anything else (an empty password)."""
    if isinstance(exc, UnknownUser):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, InactiveUser | LastAdmin):
        return HTTPException(status.HTTP_409_CONFLICT, str(exc))
    if isinstance(exc, WrongPassword):
        return HTTPException(status.HTTP_403_FORBIDDEN, str(exc))
    return HTTPException(422, str(exc))


@router.post(
    "/users/{username}/tokens",
    response_model=schemas.TokenOut,
    status_code=status.HTTP_201_CREATED,
    summary="A new API token for a user (admin)",
)
def post_token(
    username: UserPath,
    project: ProjectDep,
    _: Admin,
    body: schemas.TokenIn | None = None,
) -> dict[str, Any]:
    body = body or schemas.TokenIn()
    days = project.config.auth.token_days if body.days is None else body.days
    try:
        issued = issue_token(project.db, username, body.name, days)
    except AuthError as exc:
        raise _auth_refusal(exc) from None
    return {
        "username": username,
        "token": issued.token,
        "id": issued.id,
        "name": issued.name,
        "expires_at": issued.expires_at,
    }


@router.get(
    "/users/{username}/tokens",
    response_model=list[schemas.TokenInfoOut],
    summary="A user's API tokens, never their values (admin, or the user)",
)
def get_tokens(username: UserPath, project: ProjectDep, caller: Viewer) -> list[dict[str, Any]]:
    require_self_or_admin(caller, username)
    try:
        tokens = list_tokens(project.db, username)
    except AuthError as exc:
        raise _auth_refusal(exc) from None
    return [
        {
            "id": t.id,
            "name": t.name,
            "created_at": t.created_at,
            "expires_at": t.expires_at,
            "last_used_at": t.last_used_at,
            "state": t.state,
        }
        for t in tokens
    ]


@router.delete(
    "/users/{username}/tokens",
    response_model=schemas.RevokeOut,
    summary="Revoke all of a user's API tokens (admin, or the user)",
)
def delete_tokens(username: UserPath, project: ProjectDep, caller: Viewer) -> dict[str, Any]:
    require_self_or_admin(caller, username)
    try:
        return {"username": username, "revoked": revoke_tokens(project.db, username)}
    except AuthError as exc:
        raise _auth_refusal(exc) from None


@router.delete(
    "/users/{username}/tokens/{token_id}",
    response_model=schemas.RevokeOut,
    summary="Revoke one API token (admin, or the user)",
)
def delete_token(
    username: UserPath, token_id: TokenIdPath, project: ProjectDep, caller: Viewer
) -> dict[str, Any]:
    require_self_or_admin(caller, username)
    try:
        return {"username": username, "revoked": revoke_tokens(project.db, username, token_id)}
    except AuthError as exc:
        raise _auth_refusal(exc) from None


@router.post(
    "/users/{username}/deactivate",
    response_model=schemas.AccountOut,
    summary="Deactivate a user: tokens revoked, sessions ended, no login (admin)",
)
def post_deactivate(username: UserPath, project: ProjectDep, _: Admin) -> dict[str, Any]:
    try:
        done = deactivate_user(project.db, username)
    except AuthError as exc:
        raise _auth_refusal(exc) from None
    return {
        "username": username,
        "active": False,
        "revoked_tokens": done.revoked_tokens,
        "ended_sessions": done.ended_sessions,
        "message": f"user {username!r} is deactivated; their tokens and sessions no longer work",
    }


@router.post(
    "/users/{username}/reactivate",
    response_model=schemas.AccountOut,
    summary="Let a deactivated user log in again (admin)",
)
def post_reactivate(username: UserPath, project: ProjectDep, _: Admin) -> dict[str, Any]:
    try:
        reactivate_user(project.db, username)
    except AuthError as exc:
        raise _auth_refusal(exc) from None
    return {
        "username": username,
        "active": True,
        "revoked_tokens": 0,
        "ended_sessions": 0,
        "message": f"user {username!r} may log in again; old tokens stay revoked",
    }


def _password_out(username: str, revoked_tokens: int, ended_sessions: int) -> dict[str, Any]:
    return {
        "username": username,
        "revoked_tokens": revoked_tokens,
        "ended_sessions": ended_sessions,
        "message": (
            f"password changed; {revoked_tokens} other API token(s) revoked and "
            f"{ended_sessions} other session(s) ended"
        ),
    }


@router.post(
    "/users/{username}/password",
    response_model=schemas.PasswordOut,
    summary="Set a user's password; their other tokens and sessions stop working (admin)",
)
def post_user_password(
    username: UserPath, body: schemas.PasswordIn, project: ProjectDep, caller: Admin
) -> dict[str, Any]:
    own = caller.name == username  # an admin resetting their own keeps this credential
    try:
        done = set_password(
            project.db,
            username,
            body.password,
            keep_token_id=caller.token_id if own else None,
            keep_session_id=caller.session_id if own else None,
        )
    except AuthError as exc:
        raise _auth_refusal(exc) from None
    return _password_out(username, done.revoked_tokens, done.ended_sessions)


@router.post(
    "/me/password",
    response_model=schemas.PasswordOut,
    summary="Change your own password (needs the current one); your other tokens and "
    "sessions stop working",
)
def post_my_password(
    body: schemas.PasswordChangeIn, request: Request, project: ProjectDep, caller: Viewer
) -> dict[str, Any]:
    # Wrong current passwords count against the login throttle: a stolen session cannot
    # guess the password here faster than at /login.
    throttle: LoginThrottle = request.app.state.login_throttle
    keys = (f"user:{caller.name.lower()}", f"ip:{request.client.host if request.client else '?'}")
    wait = throttle.retry_after(*keys)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many wrong passwords; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    try:
        done = change_password(
            project.db,
            caller.name,
            body.current_password,
            body.new_password,
            keep_token_id=caller.token_id,
            keep_session_id=caller.session_id,
        )
    except WrongPassword as exc:
        throttle.failed(*keys)
        raise _auth_refusal(exc) from None
    except AuthError as exc:
        raise _auth_refusal(exc) from None
    return _password_out(caller.name, done.revoked_tokens, done.ended_sessions)


# -- export and import ---------------------------------------------------------------------

MAX_LABEL_CONFIG_BYTES = 1_000_000  # a labeling config is a page of XML

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
            f"unknown format {quoted(format)}; use one of {', '.join(EXPORT_MEDIA)}",
        )
    media_type, suffix = EXPORT_MEDIA[format]
    folder = Path(tempfile.mkdtemp(prefix="labelloop-export-"))
    path = folder / f"{safe_file_name(project.config.name, 'project')}-labels.{suffix}"
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
    label_config: Annotated[
        UploadFile | None,
        File(description="the Label Studio project's labeling config (XML), to read its names"),
    ] = None,
    from_name: Annotated[
        str | None,
        Form(max_length=200, description="the Choices control to read, when several hold choices"),
    ] = None,
) -> dict[str, Any]:
    from labelloop.interop import import_label_studio

    config_xml = None
    if label_config is not None:
        raw = label_config.file.read(MAX_LABEL_CONFIG_BYTES + 1)
        if len(raw) > MAX_LABEL_CONFIG_BYTES:
            raise HTTPException(413, f"label_config: over {MAX_LABEL_CONFIG_BYTES:,} bytes")
        try:
            config_xml = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(422, "label_config: not UTF-8 text (expected the XML)") from None
    with _saved_upload(project, file) as path:
        summary = import_label_studio(
            project,
            path,
            overwrite_human=overwrite_human,
            label_config=config_xml,
            from_name=from_name or None,
        )
    out = summary.as_dict(with_issues=True)
    out["issues"] = out["issues"][:200]
    return out
