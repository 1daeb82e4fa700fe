"""Duplicate tags (merge candidates): the ranked pairs, and background scans with progress.

Registered before the vocabulary router, whose ``/v1/tags/{id}`` would otherwise take these paths.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from tagindex.service.models import DuplicatePair, DuplicatesResponse
from tagindex.service.routers.deps import ERRORS, EngineDep, SettingsDep
from tagindex.service.scans import DuplicateScans

router = APIRouter(tags=["vocabulary"])

MinScore = Annotated[float, Query(ge=-1.0, le=1.0, description="lowest cosine similarity")]
Siblings = Annotated[bool, Query(description="keep pairs with the same parent (labelled sibling)")]


class ScanStatus(BaseModel):
    state: str = Field(description="idle (never started), running, ready or failed")
    done: int = Field(0, description="tags scanned so far")
    total: int = Field(0, description="tags to scan")
    pairs: int | None = Field(None, description="pairs found, once ready")
    error: str | None = None
    cached: bool = Field(False, description="the result came from the cache (no scan ran)")
    elapsed_s: float = 0.0
    index_version: int


def scans(request: Request) -> DuplicateScans:
    """The app's scan registry (created on first use)."""
    registry: DuplicateScans | None = getattr(request.app.state, "duplicate_scans", None)
    if registry is None:
        registry = request.app.state.duplicate_scans = DuplicateScans()
    return registry


@router.get("/v1/tags/duplicates", response_model=DuplicatesResponse, responses=ERRORS)
def duplicate_tags(
    engine: EngineDep,
    settings: SettingsDep,
    min_score: MinScore = 0.9,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    include_siblings: Siblings = False,
) -> DuplicatesResponse:
    """Merge candidates: near-identical tags that are not ancestor/descendant (nor, by default,
    siblings), best evidence first (vectors, names, paths, labelled products carrying both)."""
    version = engine.version
    pairs = engine.duplicates(min_score, settings.duplicate_neighbours, include_siblings)
    return DuplicatesResponse(
        min_score=min_score,
        total=len(pairs),
        include_siblings=include_siblings,
        index_version=version,
        pairs=[
            DuplicatePair(
                a=p.a,
                a_name=engine.name(p.a) or p.a,
                a_path=engine.path(p.a),
                b=p.b,
                b_name=engine.name(p.b) or p.b,
                b_path=engine.path(p.b),
                score=p.score,
                relation=p.relation,
                name_similarity=p.name_similarity,
                names_equal=p.names_equal,
                path_similarity=p.path_similarity,
                shared_products=p.shared_products,
                evidence=p.evidence,
                reasons=p.reasons,
            )
            for p in pairs[:limit]
        ],
    )


@router.post(
    "/v1/tags/duplicates/scan",
    response_model=ScanStatus,
    responses={**ERRORS, 202: {"model": ScanStatus, "description": "the scan runs"}},
)
def start_scan(
    request: Request,
    response: Response,
    engine: EngineDep,
    settings: SettingsDep,
    min_score: MinScore = 0.9,
    include_siblings: Siblings = False,
) -> ScanStatus:
    """Starts a duplicate scan in the background (or finds the running or cached one): 202 while it
    runs, 200 when its result is ready for ``GET /v1/tags/duplicates``."""
    job = scans(request).start(engine, min_score, settings.duplicate_neighbours, include_siblings)
    if job.state == "running":
        response.status_code = 202
    return ScanStatus(**job.to_dict(), index_version=engine.version)


@router.get("/v1/tags/duplicates/scan", response_model=ScanStatus, responses=ERRORS)
def scan_status(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    min_score: MinScore = 0.9,
    include_siblings: Siblings = False,
) -> ScanStatus:
    """How far the scan for these parameters has got (``idle`` when none was started)."""
    job = scans(request).status(engine, min_score, settings.duplicate_neighbours, include_siblings)
    if job is None:
        return ScanStatus(
            state="idle", done=0, total=len(engine), pairs=None, cached=False, index_version=engine.version
        )
    return ScanStatus(**job.to_dict(), index_version=engine.version)
