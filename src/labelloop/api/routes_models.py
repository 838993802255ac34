"""``/api/models``: the deployed model's lifecycle over REST (issue 14): train, evaluate, the
registry's versions and history, promote and roll back. Thin over ``Project``; the same as
``labelloop train|evaluate|models|promote|rollback``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from labelloop.api.security import Caller, admin, project_of, viewer
from labelloop.project import Project

router = APIRouter(prefix="/api/models", tags=["models"])
ProjectDep = Annotated[Project, Depends(project_of)]
Viewer = Annotated[Caller, Depends(viewer)]
Admin = Annotated[Caller, Depends(admin)]

CANDIDATES = ("logistic", "tree", "forest", "svm", "mlp", "boosting")
Candidate = Literal["logistic", "tree", "forest", "svm", "mlp", "boosting"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainIn(_Body):
    trials: int | None = Field(default=None, ge=0, le=500, description="Optuna trials")
    budget_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="tuning's time budget"
    )
    candidates: list[Candidate] | None = Field(
        default=None, min_length=1, max_length=len(CANDIDATES), description=", ".join(CANDIDATES)
    )
    skip_registry: bool = Field(
        default=False, description="do not register it as a new version (challenger)"
    )
    promote: bool = Field(default=False, description="then try to promote it (see /promote)")


class PromoteIn(_Body):
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="default: challenger")
    force: bool = Field(default=False, description="skip the checks (admin); reason required")
    reason: str | None = Field(default=None, max_length=2000)


class RollbackIn(_Body):
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="default: the version the champion replaced"
    )
    reason: str = Field(min_length=1, max_length=2000)


class VersionOut(BaseModel):
    name: str
    version: int
    run_id: str | None
    dataset_version: str | None
    metrics: dict[str, float]
    aliases: list[str]
    created_at: str | None
    tags: dict[str, str]


class ModelsOut(BaseModel):
    name: str
    champion: int | None
    challenger: int | None
    versions: list[VersionOut]


class HistoryOut(BaseModel):
    id: int
    model_name: str
    action: str
    alias: str | None
    version: int | None
    previous_version: int | None
    reason: str
    details: dict[str, Any]
    actor: str | None
    created_at: str


class PromotionOut(BaseModel):
    promoted: bool
    reason: str
    challenger: int
    champion: int | None
    test_items: int
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float]
    paired_test: dict[str, float]
    ship: dict[str, bool]


@router.get("", response_model=ModelsOut, summary="Registered versions and their aliases")
def models(project: ProjectDep, _: Viewer) -> dict[str, Any]:
    versions = [mv.as_dict() for mv in project.registry.versions()]

    def holder(alias: str) -> int | None:
        return next((v["version"] for v in versions if alias in v["aliases"]), None)

    return {
        "name": project.registry.name,
        "champion": holder("champion"),
        "challenger": holder("challenger"),
        "versions": versions,
    }


@router.get("/history", response_model=list[HistoryOut], summary="The registry's history")
def history(project: ProjectDep, _: Viewer) -> list[dict[str, Any]]:
    rows = project.registry.history()
    return [r | {"created_at": str(r["created_at"])} for r in rows]


@router.post("/train", summary="Train, evaluate and register a challenger (admin)")
def train(body: TrainIn, project: ProjectDep, caller: Admin) -> dict[str, Any]:
    result = project.train(
        register=not body.skip_registry,
        trials=body.trials,
        budget_seconds=body.budget_seconds,
        candidates=list(body.candidates) if body.candidates else None,
    )
    out = result.as_dict()
    if body.promote and result.registered_version is not None:
        decision = project.promote(result.registered_version, actor=caller.user.username)
        out["promotion"] = decision.as_dict()
    return out


@router.post("/evaluate", summary="Score the latest trained model on the current test split")
def evaluate(project: ProjectDep, _: Admin) -> dict[str, Any]:
    return project.evaluate()


@router.post("/promote", response_model=PromotionOut, summary="Promote the challenger (admin)")
def promote(body: PromoteIn, project: ProjectDep, caller: Admin) -> dict[str, Any]:
    decision = project.promote(
        body.version, force=body.force, reason=body.reason, actor=caller.user.username
    )
    return decision.as_dict()


@router.get(
    "/edge-bundle",
    summary="The champion (or a version) as an edge bundle, zipped (admin)",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def edge_bundle(
    project: ProjectDep,
    _: Admin,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    min_confidence: Annotated[float, Query(ge=0.0, le=1.0)] = 0.9,
) -> FileResponse:
    """``labelloop export-edge`` over HTTP: the bundle is built in a temporary folder, zipped,
    sent, and both are deleted after the response."""
    tmp = Path(tempfile.mkdtemp(prefix="labelloop-edge-"))
    try:
        manifest = project.export_edge(
            tmp / "bundle", version=version, min_confidence=min_confidence
        )
        archive = shutil.make_archive(str(tmp / "edge-bundle"), "zip", tmp / "bundle")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    name = f"{project.registry.name}-v{manifest['model_version']}-edge.zip"
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=name,
        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
    )


@router.post("/rollback", response_model=VersionOut, summary="Roll the champion back (admin)")
def rollback(body: RollbackIn, project: ProjectDep, caller: Admin) -> dict[str, Any]:
    mv = project.rollback(body.version, reason=body.reason, actor=caller.user.username)
    return mv.as_dict()
