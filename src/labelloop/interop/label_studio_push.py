"""Send the project to a running Label Studio over its REST API, updating what it holds.

Label Studio's file import always creates new tasks (it has no upsert), so importing a second
export of the same project doubles every task. ``push_label_studio`` instead reads what the
Label Studio project holds (a snapshot export), finds each item's task there by labelloop's
identity (``meta.labelloop.content_hash``), imports only the items it lacks, and on the tasks
it has adds the annotations and predictions that are new (one request each), noting the
annotation ids in the task's ``meta`` so that neither the next push nor an import back into
labelloop counts them twice. The Label Studio task ids are recorded for the project's items.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from labelloop.core.errors import LabelloopError
from labelloop.interop.label_studio_export import (
    LS_ANNOTATIONS,
    META_KEY,
    TASK_IDS_EVENT,
    export_label_studio,
    label_studio_task_ids,
)
from labelloop.store.context import ProjectContext
from labelloop.store.events import log_event
from labelloop.store.interop import writing

_BATCH = 1000  # tasks per import request


class PushError(LabelloopError):
    """Label Studio refused a request, or could not be reached."""


@dataclass
class PushSummary:
    """What one push did to the Label Studio project."""

    project: int
    tasks: int = 0
    tasks_created: int = 0
    tasks_found: int = 0  # items Label Studio already held (found by labelloop's identity)
    annotations_created: int = 0  # on new tasks and added to existing ones
    predictions_created: int = 0
    tasks_meta_updated: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Client:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        scheme = "Bearer" if token.count(".") == 2 else "Token"  # a JWT access token, or legacy
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"{scheme} {token}"},
            timeout=timeout,
        )

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise PushError(f"Label Studio at {self.http.base_url}: {exc}") from None
        if r.status_code >= 400:
            raise PushError(
                f"Label Studio refused {method} {path}: HTTP {r.status_code}: {r.text[:300]}"
            )
        return r.json() if r.content else None

    def snapshot(self, project: int) -> list[dict[str, Any]]:
        """Every task of the project with full annotations and predictions."""
        options = {
            "annotations__completed_by": {"only_id": False},
            "predictions": {"only_id": False},
        }
        made = self(
            "POST", f"/api/projects/{project}/exports", json={"serialization_options": options}
        )
        for _ in range(600):
            if (
                self("GET", f"/api/projects/{project}/exports/{made['id']}")["status"]
                == "completed"
            ):
                break
            time.sleep(0.5)
        else:
            raise PushError(f"Label Studio's export of project {project} did not finish")
        params = {"exportType": "JSON"}
        return self("GET", f"/api/projects/{project}/exports/{made['id']}/download", params=params)


def _ours(task: Mapping[str, Any]) -> dict[str, Any]:
    meta = task.get("meta")
    found = meta.get(META_KEY) if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def push_label_studio(
    ctx: ProjectContext,
    url: str,
    token: str,
    project: int,
    *,
    timeout: float = 300.0,
    **export_options: Any,
) -> PushSummary:
    """Bring Label Studio project ``project`` (at ``url``, API ``token``) up to date with the
    labelloop project: new items become tasks, known ones get their new annotations and
    predictions. ``export_options`` go to ``export_label_studio`` (``annotator_emails``, ...).
    Pushing twice adds nothing the second time."""
    started = time.perf_counter()
    ls = _Client(url, token, timeout)
    with tempfile.TemporaryDirectory(prefix="labelloop-push-") as folder:
        path = Path(folder) / "tasks.json"
        export_label_studio(ctx, path, **export_options)
        tasks = json.loads(path.read_text(encoding="utf-8"))
    summary = PushSummary(project=project, tasks=len(tasks))
    held = {}
    for t in ls.snapshot(project):
        h = _ours(t).get("content_hash")
        if isinstance(h, str):
            held.setdefault(h, t)
    known_ids = label_studio_task_ids(ctx)
    members: dict[str, int] = {}
    if any("completed_by" in a for t in tasks for a in t.get("annotations") or []):
        users = ls("GET", "/api/users")
        users = users.get("results", []) if isinstance(users, dict) else users
        members = {str(u.get("email")): int(u["id"]) for u in users or [] if u.get("email")}
    new_ids: dict[int, int] = {}
    fresh = [t for t in tasks if _ours(t)["content_hash"] not in held]
    for start in range(0, len(fresh), _BATCH):
        batch = [{k: v for k, v in t.items() if k != "id"} for t in fresh[start : start + _BATCH]]
        answer = ls("POST", f"/api/projects/{project}/import?return_task_ids=true", json=batch)
        summary.tasks_created += int(answer.get("task_count", 0))
        summary.annotations_created += int(answer.get("annotation_count", 0))
        summary.predictions_created += int(answer.get("prediction_count", 0))
        for t, task_id in zip(batch, answer.get("task_ids") or [], strict=False):
            new_ids[int(_ours(t)["item_id"])] = int(task_id)
    for t in tasks:
        there = held.get(_ours(t)["content_hash"])
        if there is None:
            continue
        summary.tasks_found += 1
        new_ids[int(_ours(t)["item_id"])] = int(there["id"])
        _update(ls, t, there, summary, members)
    changed = {k: v for k, v in new_ids.items() if known_ids.get(k) != v}
    if changed:
        with writing(ctx.db) as conn:
            ids = {str(k): v for k, v in changed.items()}
            log_event(conn, ctx.id, TASK_IDS_EVENT, {"ids": ids})
    summary.seconds = time.perf_counter() - started
    return summary


def _update(
    ls: _Client,
    task: dict[str, Any],
    there: dict[str, Any],
    s: PushSummary,
    members: Mapping[str, int],
) -> None:
    """Add to Label Studio task ``there`` what labelloop's ``task`` has that it lacks; an
    annotator with an email is credited to that member (else to the token's user)."""
    task_id = int(there["id"])
    ours, theirs = _ours(task), _ours(there)
    placed: dict[str, int] = dict(theirs.get(LS_ANNOTATIONS) or {})
    have = {str(a.get("import_id")) for a in there.get("annotations") or [] if a.get("import_id")}
    live = {int(a["id"]) for a in there.get("annotations") or [] if isinstance(a.get("id"), int)}
    for ann in task.get("annotations") or []:
        key = str(ann.get("id"))
        if key in have or placed.get(key) in live:
            continue
        body = {k: v for k, v in ann.items() if k in ("result", "lead_time", "was_cancelled")}
        email = (ann.get("completed_by") or {}).get("email")
        if email in members:
            body["completed_by"] = members[email]
        made = ls("POST", f"/api/tasks/{task_id}/annotations", json=body)
        placed[key] = int(made["id"])
        s.annotations_created += 1
    versions = {
        str(p.get("model_version")) for p in there.get("predictions") or [] if isinstance(p, dict)
    }
    for pred in task.get("predictions") or []:
        if str(pred.get("model_version")) in versions:
            continue
        ls("POST", "/api/predictions", json={**pred, "task": task_id})
        s.predictions_created += 1
    meta = dict(ours)
    for key in ("annotations", "predictions"):  # what Label Studio still holds stays known
        before = theirs.get(key)
        if isinstance(before, dict) and (before or key in ours):
            meta[key] = {**before, **(ours.get(key) or {})}
    if placed:
        meta[LS_ANNOTATIONS] = placed
    if meta != theirs:
        other = {k: v for k, v in (there.get("meta") or {}).items() if k != META_KEY}
        ls("PATCH", f"/api/tasks/{task_id}", json={"meta": {**other, META_KEY: meta}})
        s.tasks_meta_updated += 1
