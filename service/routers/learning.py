"""Learning: the review queue, undoing feedback, and switching index versions without downtime.

Feedback posted to ``/v1/feedback`` is learned by the live index at once (the feedback router calls
:func:`learner`); ``DELETE /v1/feedback/{id}`` deletes a judgement and undoes its effect;
``GET /v1/review/next`` walks the active-learning queue over the catalog in ``TAGINDEX_REVIEW_POOL``;
``POST /v1/admin/reload`` loads another index directory (e.g. from ``tagindex retrain``) beside the
running one and swaps it in between requests, ``POST /v1/admin/rollback`` swaps the previous one back.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from tagindex.service.engine import Engine
from tagindex.service.feedback import FeedbackStore
from tagindex.service.learning import LiveLearner, ReviewPool
from tagindex.service.models import MAX_INT
from tagindex.service.routers.deps import WRITE_ERRORS, EngineDep, SettingsDep, require_key
from tagindex.service.settings import Settings

from tagindex.errors import TagindexError
from tagindex.store import read_manifest

logger = logging.getLogger(__name__)

router = APIRouter(tags=["learning"], dependencies=[Depends(require_key)], responses=WRITE_ERRORS)
_switch_lock = threading.Lock()


class ReviewProduct(BaseModel):
    id: str
    title: str
    description: str = ""


class ReviewTag(BaseModel):
    tag: str
    score: float
    name: str
    path: list[str]


class ReviewItem(BaseModel):
    product: ReviewProduct
    tags: list[ReviewTag]
    reason: str = Field(description="why this product was chosen")
    kind: str = Field(description="coverage (unseen/tail tag), typical (uncovered group) or uncertain")


class ReviewQueue(BaseModel):
    items: list[ReviewItem]
    pool: int = Field(description="products in the review pool")
    index_version: int


class Deleted(BaseModel):
    deleted: list[int]
    index_version: int


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index_dir: str = Field(
        min_length=1,
        max_length=4096,
        pattern=r"^[^\x00]+$",  # a NUL cannot be in a path: os.stat raises ValueError (was a 500)
        description="a saved index beside the served one (same parent folder)",
    )


class Switched(BaseModel):
    index_dir: str
    index_version: int
    previous: str | None


def learner(app: FastAPI) -> LiveLearner | None:
    """The live learner, or None when ``TAGINDEX_LEARN`` is off."""
    return getattr(app.state, "learner", None)


def start(app: FastAPI, engine: Engine, store: FeedbackStore, settings: Settings) -> None:
    """Lifespan hook: the learner (synced with the feedback table) and the review pool."""
    app.state.previous_engine = None
    if settings.learn:
        app.state.learner = LiveLearner(engine, store)
        app.state.learner.sync()
    else:
        app.state.learner = None
    pool = settings.review_pool
    app.state.review_pool = ReviewPool(pool, Path(f"{settings.index_dir}.review-cache")) if pool else None


@router.get("/v1/review/next", response_model=ReviewQueue)
def review_next(
    request: Request,
    engine: EngineDep,
    n: Annotated[int, Query(ge=1, le=200, description="products to return")] = 20,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 13,
) -> ReviewQueue:
    """The products whose judgement teaches the index most (judged products are skipped)."""
    pool: ReviewPool | None = request.app.state.review_pool
    if pool is None:
        raise HTTPException(404, "no review pool configured (TAGINDEX_REVIEW_POOL: a products file)")
    store: FeedbackStore = request.app.state.feedback
    picks = pool.next(engine, store, n, seed)
    by_id = {p.id: p for p in pool.products}
    items = [
        ReviewItem(
            product=ReviewProduct(id=q.id, title=by_id[q.id].title, description=by_id[q.id].description),
            tags=[ReviewTag(tag=t.tag, score=t.score, name=t.name, path=engine.path(t.tag)) for t in q.tags],
            reason=q.reason,
            kind=q.kind,
        )
        for q in picks
    ]
    state = engine.index.learned
    return ReviewQueue(items=items, pool=len(pool.products), index_version=state.version if state else 0)


@router.delete("/v1/feedback/{feedback_id}", response_model=Deleted)
def delete_feedback(
    request: Request,
    engine: EngineDep,
    feedback_id: Annotated[int, PathParam(ge=1, le=MAX_INT, description="row id from GET /v1/feedback")],
) -> Deleted:
    """Deletes one judgement and undoes what the index learned from it."""
    live = learner(request.app)
    store: FeedbackStore = request.app.state.feedback
    deleted = live.delete([feedback_id]) if live is not None else store.delete([feedback_id])
    if not deleted:
        raise HTTPException(404, f"no feedback row {feedback_id}")
    state = engine.index.learned
    return Deleted(deleted=deleted, index_version=state.version if state else 0)


def _swap(app: FastAPI, new: Engine) -> Engine:
    """Makes ``new`` the served engine; requests already running finish on the old one."""
    from tagindex.service.explanations import make_decider, make_explainer

    old: Engine = app.state.engine
    explainer = make_explainer(app.state.explainer.name, new)
    decider = make_decider(app.state.decider.name, new)
    live = LiveLearner(new, app.state.feedback) if app.state.learner is not None else None
    if live is not None:
        live.sync()  # judgements made since that version was written
    app.state.engine, app.state.explainer, app.state.decider, app.state.learner = (
        new,
        explainer,
        decider,
        live,
    )
    app.state.metrics.tags.set(len(new))
    return old


@router.post("/v1/admin/reload", response_model=Switched)
def reload_index(body: ReloadRequest, request: Request, settings: SettingsDep) -> Switched:
    """Loads another index version and switches to it without downtime; the old one stays for rollback."""
    from tagindex.service.replicas import open_engine

    app = request.app
    target = Path(body.index_dir)
    served: Engine = app.state.engine
    try:
        beside = target.resolve().parent == served.index_dir.resolve().parent
    except (OSError, ValueError) as exc:  # a NUL byte, a name the file system refuses
        raise HTTPException(422, f"index_dir is not a usable path: {exc}") from None
    if not beside:
        raise HTTPException(422, "index_dir must be beside the served index (the same parent folder)")
    try:
        read_manifest(target, "tagindex")
        with _switch_lock:
            new = open_engine(settings, target)  # loads and warms up while the old engine serves
            old = _swap(app, new)
            previous = app.state.previous_engine
            app.state.previous_engine = old
        if previous is not None and previous is not new:
            previous.close()
    except TagindexError as exc:
        raise HTTPException(422, str(exc)) from None
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise HTTPException(422, f"{target}: {exc.strerror or exc}") from None
    logger.info("switched to %s (was %s)", target, old.index_dir)
    return Switched(index_dir=str(target), index_version=_version(new), previous=str(old.index_dir))


@router.post("/v1/admin/rollback", response_model=Switched)
def rollback(request: Request) -> Switched:
    """Switches back to the index served before the last reload (instant: it is still loaded)."""
    app = request.app
    with _switch_lock:
        previous: Engine | None = app.state.previous_engine
        if previous is None:
            raise HTTPException(409, "nothing to roll back to (no reload since start-up)")
        old = _swap(app, previous)
        app.state.previous_engine = old
    logger.info("rolled back to %s", previous.index_dir)
    return Switched(
        index_dir=str(previous.index_dir), index_version=_version(previous), previous=str(old.index_dir)
    )


def _version(engine: Engine) -> int:
    state = engine.index.learned
    return state.version if state is not None else 0


__all__: list[Any] = ["learner", "router", "start"]
