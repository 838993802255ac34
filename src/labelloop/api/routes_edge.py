"""``POST /api/edge/sync``: answers edge devices made offline (``labelloop.edge``).

Token-authenticated (a device has no browser session), reviewer or admin. Idempotent: each
(device id, result id) is stored once however often it is sent, and the answer says how many
were new. A low-confidence answer's text becomes an item (through the same ingest as
``POST /api/items``, idempotent by the external id ``edge:<device>:<result>``) and joins the
review queue, unless someone labeled or queued that content already.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from labelloop.api.schemas import MAX_ID
from labelloop.api.security import Caller, project_of, reviewer
from labelloop.core.config import Modality
from labelloop.project import Project
from labelloop.store.edge import (
    link_items,
    results_without_item,
    store_edge_results,
    unreviewed_items,
)

router = APIRouter(prefix="/api")
MAX_RESULTS_PER_SYNC = 5000
EDGE_REASON = "edge"
ProjectDep = Annotated[Project, Depends(project_of)]
Reviewer = Annotated[Caller, Depends(reviewer)]
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # no control characters (PostgreSQL refuses NUL)
_PRINTABLE_OR_EMPTY = r"^[^\x00-\x1f\x7f]*$"


class EdgeResultIn(BaseModel):
    result_id: int = Field(ge=1, le=MAX_ID, description="the device's local id of the answer")
    label: str = Field(min_length=1, max_length=200, pattern=_PRINTABLE)
    confidence: float = Field(ge=0.0, le=1.0)
    needs_review: bool
    model_version: str = Field(default="", max_length=200, pattern=_PRINTABLE_OR_EMPTY)
    text: str | None = Field(
        default=None,
        description="the input, sent with low-confidence answers (at most the project's "
        "ingest.max_content_chars)",
    )
    created_at: datetime | None = Field(default=None, description="when the device answered")


class EdgeSyncIn(BaseModel):
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    results: list[EdgeResultIn] = Field(min_length=1, max_length=MAX_RESULTS_PER_SYNC)


class EdgeSyncOut(BaseModel):
    received: int = Field(description="answers in the request")
    new: int = Field(description="answers stored now (the rest were synced before)")
    queued: int = Field(description="items sent to people now")
    rejected: int = Field(description="low-confidence texts the ingest refused")


@router.post(
    "/edge/sync",
    response_model=EdgeSyncOut,
    summary="Answers of an edge device, stored once; low-confidence ones queued (reviewer)",
)
def edge_sync(body: EdgeSyncIn, project: ProjectDep, caller: Reviewer) -> dict[str, Any]:
    if caller.token_id is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "edge devices sync with an API token (Bearer)"
        )
    limit = project.config.ingest.max_content_chars
    for r in body.results:
        if r.text is not None and len(r.text) > limit:
            raise HTTPException(
                422,
                f"result {r.result_id}: the text has {len(r.text):,} characters, more than "
                f"{limit:,} (ingest.max_content_chars)",
            )
    results = {r.result_id: r for r in body.results}  # a result sent twice counts once
    device = body.device_id
    with project.db.engine.begin() as conn:
        new = store_edge_results(
            conn, project.id, device, [r.model_dump() for r in results.values()]
        )
        pending = results_without_item(
            conn, project.id, device, [i for i, r in results.items() if r.needs_review]
        )
    queued, rejected = _queue_texts(project, device, [results[i] for i in sorted(pending)])
    return {"received": len(body.results), "new": len(new), "queued": queued, "rejected": rejected}


def _queue_texts(project: Project, device: str, results: list[EdgeResultIn]) -> tuple[int, int]:
    """Items for the answers' texts, queued for people; (queued now, refused by the ingest).

    Queued before the answers are linked to their items: a sync that dies in between leaves
    the links empty, and the next one finds the same items (the ingest is idempotent by
    external id) already queued and only links them."""
    from labelloop.workers.stream import submit_items

    pairs: list[tuple[str, dict[str, Any]]] = []
    by_external: dict[str, EdgeResultIn] = {}
    for r in results:
        fields = _fields(project, r.text)
        if fields is None:
            continue
        external = f"edge:{device}:{r.result_id}"
        pairs.append((external, fields))
        by_external[external] = r
    if not pairs:
        return 0, 0
    report = submit_items(project.ctx, pairs, source="api:edge")
    linked: list[tuple[int, int]] = []
    confidence: dict[int, float] = {}
    for row in report.items:
        item_id = row.get("item_id")
        if item_id is None:
            continue
        r = by_external[row["external_id"]]
        linked.append((r.result_id, int(item_id)))
        confidence[int(item_id)] = min(confidence.get(int(item_id), 1.0), r.confidence)
    with project.db.engine.connect() as conn:
        fresh = unreviewed_items(conn, project.id, confidence)
    if fresh:
        # The least sure first.
        project.enqueue(fresh, [1.0 - confidence[i] for i in fresh], reason=EDGE_REASON)
    with project.db.engine.begin() as conn:
        link_items(conn, project.id, device, linked)
    return len(fresh), report.rejected


def _fields(project: Project, text: str | None) -> dict[str, Any] | None:
    """An item's content fields for an answer's input; None where it cannot become one."""
    if text is None or not text.strip():
        return None
    config = project.config
    if config.modality == Modality.tabular:
        try:
            row = json.loads(text)
        except ValueError:
            return None
        return {str(k): v for k, v in row.items()} if isinstance(row, dict) else None
    if config.modality == Modality.image:
        return None
    return {config.content_fields[0]: text}
