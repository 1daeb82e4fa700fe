"""Merchandiser feedback: store judgements (accept / reject / add) and page through them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from tagindex.service.feedback import FeedbackRecord, FeedbackStore
from tagindex.service.models import (
    MAX_ID_CHARS,
    MAX_INT,
    FeedbackList,
    FeedbackRequest,
    FeedbackResponse,
    FeedbackRow,
)
from tagindex.service.routers.deps import WRITE_ERRORS, EngineDep, SettingsDep, check_length, require_key
from tagindex.service.routers.learning import learner

router = APIRouter(tags=["feedback"], dependencies=[Depends(require_key)], responses=WRITE_ERRORS)


def _store(request: Request) -> FeedbackStore:
    store: FeedbackStore = request.app.state.feedback
    return store


StoreDep = Annotated[FeedbackStore, Depends(_store)]


@router.post("/v1/feedback", response_model=FeedbackResponse, status_code=201)
def post_feedback(
    body: FeedbackRequest, request: Request, engine: EngineDep, settings: SettingsDep, store: StoreDep
) -> FeedbackResponse:
    """Stores accept / reject / add judgements for one product durably (SQLite) for later training."""
    unknown = sorted({j.tag for j in body.judgements if j.tag not in engine.index})
    if unknown:
        raise HTTPException(422, f"unknown tag id(s): {unknown[:10]}")
    check_length(settings, body.product.text_length(), "a field of the product")
    product = body.product.to_product()
    records = store.add(
        [
            FeedbackRecord(
                product_id=product.id,
                title=product.title,
                description=product.description,
                attributes=dict(product.attributes),
                tag=j.tag,
                action=j.action,
                score=j.score,
                user=body.user,
                comment=body.comment,
                index_fingerprint=engine.fingerprint,
            )
            for j in body.judgements
        ]
    )
    for r in records:
        request.app.state.metrics.feedback.labels(r.action).inc()
    live = learner(request.app)
    if live is not None:  # committed first: a crash from here on is made good by the start-up sync
        live.apply(records)
    return FeedbackResponse(stored=[FeedbackRow(**r.to_dict()) for r in records], total=store.count())


@router.get("/v1/feedback", response_model=FeedbackList)
def list_feedback(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    after_id: Annotated[int, Query(ge=0, le=MAX_INT, description="page on from this row id")] = 0,
    product_id: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
    tag: Annotated[str | None, Query(max_length=MAX_ID_CHARS)] = None,
) -> FeedbackList:
    """Stored feedback in the order it arrived (needs the API key: it holds catalog text)."""
    rows = store.records(limit=limit, product_id=product_id, tag=tag, after_id=after_id)
    return FeedbackList(rows=[FeedbackRow(**r.to_dict()) for r in rows], total=store.count())
