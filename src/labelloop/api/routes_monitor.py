"""``/api/alerts`` and ``/api/automation``: monitoring and automation over REST (issue 15).
Thin over ``Project``; the same as ``labelloop alerts``, ``runs`` and ``automate --once``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from labelloop.api.security import Caller, admin, project_of, viewer
from labelloop.project import Project

router = APIRouter(prefix="/api", tags=["monitoring"])
ProjectDep = Annotated[Project, Depends(project_of)]
Viewer = Annotated[Caller, Depends(viewer)]
Admin = Annotated[Caller, Depends(admin)]


class AlertOut(BaseModel):
    id: int
    rule: str
    metric: str
    severity: str
    state: str
    value: float | None
    bound: float
    message: str
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    deliveries: list[dict[str, Any]]


class RunOut(BaseModel):
    id: int
    policies: list[str]
    trigger: str
    actions: list[str]
    status: str
    outcome: dict[str, Any]
    error: str | None
    human_labels: int
    holder: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None


class CheckOut(BaseModel):
    values: dict[str, float | None]
    opened: list[str]
    resolved: list[str]
    fired: list[str]
    actions: list[str]
    run_id: int | None
    status: str | None
    outcome: dict[str, Any]
    error: str | None
    skipped: str | None


@router.get("/alerts", response_model=list[AlertOut], summary="Alerts, newest first")
def alerts(
    project: ProjectDep,
    _: Viewer,
    open_only: Annotated[bool, Query(description="only the open ones")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> list[dict[str, Any]]:
    return project.alerts(open_only=open_only, limit=limit)


@router.get("/automation/runs", response_model=list[RunOut], summary="Automation runs")
def runs(
    project: ProjectDep, _: Viewer, limit: Annotated[int, Query(ge=1, le=10_000)] = 200
) -> list[dict[str, Any]]:
    return project.automation_runs(limit)


@router.post(
    "/automation/check",
    response_model=CheckOut,
    summary="Measure, alert and run the policies that are due, now (admin)",
)
def check(project: ProjectDep, _: Admin) -> dict[str, Any]:
    return project.automation().check().as_dict()
