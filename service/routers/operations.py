"""Operations: liveness, readiness, what is served (``/v1/info``) and Prometheus metrics."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tagindex.service.engine import Engine
from tagindex.service.models import ErrorBody, Health, Info
from tagindex.service.routers.deps import EngineDep, SettingsDep, has_key

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers (liveness)."""
    return Health(status="ok")


@router.get(
    "/readyz", response_model=Health, responses={503: {"model": ErrorBody, "description": "not ready"}}
)
def readyz(request: Request) -> Response:
    """Index loaded with at least one tag and the feedback database usable (readiness)."""
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        return JSONResponse({"detail": "index not loaded"}, status_code=503)
    if not len(engine):
        return JSONResponse({"detail": "the index holds no tags"}, status_code=503)
    try:
        request.app.state.feedback.ping()
    except (sqlite3.Error, ConnectionError) as exc:
        return JSONResponse({"detail": f"feedback database unusable: {exc}"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/v1/info", response_model=Info)
def info(request: Request, engine: EngineDep, settings: SettingsDep) -> Info:
    """The served index, the limits and defaults (the web page reads this).

    Without the API key, file system paths (an encoder stored in the index directory) show as their
    last component only: the layout of the server's disk is not the public's business.
    """
    index = engine.describe()
    stage = engine.stage.describe() if engine.stage is not None else None
    if not has_key(request):
        index, stage = _without_paths(index), _without_paths(stage)
    return Info(
        index=index,
        limits={
            "max_body_bytes": settings.max_body_bytes,
            "max_batch": settings.max_batch,
            "max_top_k": settings.max_top_k,
            "max_text_chars": settings.max_text_chars,
            "max_new_tags": settings.max_new_tags,
            "max_rerank_depth": settings.max_rerank_depth,
        },
        accept_threshold=settings.accept_threshold,
        explainer=request.app.state.explainer.name,
        decider=request.app.state.decider.name,
        feedback_rows=request.app.state.feedback.count(),
        stage=stage,
    )


@router.get("/metrics", response_class=Response)
def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format: request counts and latency histograms by route, tags, feedback."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _without_paths(value: Any) -> Any:
    """``value`` with every file system path (absolute, or relative and existing) cut to its last
    component."""
    if isinstance(value, dict):
        return {k: _without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    if (
        isinstance(value, str)
        and ("/" in value or os.sep in value)
        and (os.path.isabs(value) or os.path.exists(value))
    ):
        return os.path.basename(value.rstrip("/\\")) or "/"
    return value
