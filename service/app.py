"""FastAPI application: tagging, similar and duplicate tags, vocabulary changes, feedback, web page.

Start it with ``tagindex serve --index DIR`` or
``uvicorn --factory tagindex.service.app:create_app`` (settings from ``TAGINDEX_*`` environment
variables, see :class:`tagindex.service.settings.Settings`).

CPU-bound endpoints are plain ``def``: FastAPI runs them in its thread pool, so the event loop keeps
accepting requests while the encoder works; concurrent encodes are merged by the engine's batcher.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tagindex.service.engine import Engine
from tagindex.service.explanations import ExplainContext, make_decider, make_explainer
from tagindex.service.feedback import FeedbackRecord, FeedbackStore
from tagindex.service.feedback_pg import open_feedback_store
from tagindex.service.middleware import BodyLimitMiddleware, Metrics, MetricsMiddleware
from tagindex.service.models import (
    AddTagsRequest,
    AssignedTag,
    ChangeResponse,
    DuplicatePair,
    DuplicatesResponse,
    ErrorBody,
    Explanation,
    FeedbackList,
    FeedbackRequest,
    FeedbackResponse,
    FeedbackRow,
    Health,
    Info,
    ProductResult,
    ScoredTag,
    SimilarResponse,
    SimilarTextRequest,
    TagHit,
    TagInfo,
    TagRequest,
    TagResponse,
)
from tagindex.service.replicas import ReplicaEngine
from tagindex.service.settings import Settings
from tagindex.service.stage import RerankStage, ScoredResult, StageConfigError, StageRequestError

from tagindex.encoders import Encoder
from tagindex.schema import Tag, TagScore

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "unusable request (e.g. a limit exceeded)"},
    413: {"model": ErrorBody, "description": "request body larger than the limit"},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    401: {"model": ErrorBody, "description": "missing or wrong X-API-Key"},
}


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(_engine)]


def create_app(settings: Settings | None = None, encoder: Encoder | None = None) -> FastAPI:
    """Builds the app; the index and feedback store open once, in the lifespan handler.

    Args:
        settings: Service settings; default: read from the environment.
        encoder: An already loaded encoder to reuse (tests, several apps in one process); default:
            the one the index's manifest names.
    """
    settings = settings or Settings()  # type: ignore[call-arg]  # index_dir comes from the environment
    metrics = Metrics()
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    if not api_key:
        api_key = secrets.token_urlsafe(24)
        logger.warning("TAGINDEX_API_KEY is not set; write endpoints accept this generated key: %s", api_key)
    expected_key = api_key.encode()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        def start() -> tuple[Engine, FeedbackStore]:
            from tagindex.index import TagIndex

            if settings.compute_threads is not None:
                _limit_threads(settings.compute_threads)

            index = TagIndex.load(settings.index_dir, encoder=encoder)
            engine = ReplicaEngine(
                settings.index_dir,
                index,
                max_batch=settings.max_batch,
                poll_seconds=settings.index_poll_seconds,
            )
            engine.encode_products([])  # nothing to do, but proves the batcher is alive
            engine.similar_to_text("warm-up", 1)  # the first forward pass is slow; pay it before serving
            try:  # reranker and calibration: loaded once, refused when they do not belong together
                engine.stage = RerankStage.from_settings(settings, engine)
            except StageConfigError as exc:
                logger.error("cannot start: %s", exc)  # one line before uvicorn's traceback
                engine.close()
                raise
            except BaseException:
                engine.close()
                raise
            return engine, open_feedback_store(settings.feedback_url or settings.feedback_path())

        engine, store = await anyio.to_thread.run_sync(start)
        stage = engine.stage
        explainer = settings.explainer
        if explainer == "auto":
            explainer = "tagindex" if stage is not None else "similarity"
        decider = settings.decider
        if decider == "auto":
            decider = "calibrated" if stage is not None and stage.calibration is not None else "threshold"
        if decider == "calibrated" and (stage is None or stage.calibration is None):
            engine.close()
            store.close()
            raise StageConfigError("the calibrated decider needs a calibration (TAGINDEX_CALIBRATION_FILE)")
        app.state.engine = engine
        app.state.feedback = store
        app.state.explainer = make_explainer(explainer, engine)
        app.state.decider = make_decider(decider, engine)
        metrics.tags.set(len(engine))
        logger.info(
            "serving %d tags from %s; feedback in %s",
            len(engine),
            settings.index_dir,
            store.path,
        )
        try:
            yield
        finally:
            engine.close()
            store.close()

    app = FastAPI(
        title="tagindex",
        version=_version(),
        summary="Product tag matching: tag products, find similar and duplicate tags, record feedback.",
        description=(
            "Read endpoints are open; write endpoints (adding or retiring tags, feedback) need the "
            "`X-API-Key` header. Bodies over the size limit get 413, batches or `top_k` over the limits "
            "get 422 with the reason. The merchandiser page is at `/`."
        ),
        lifespan=lifespan,
        responses={422: {"description": "invalid request: the body says which field and why"}},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts the 413s too

    def require_key(key: Annotated[str | None, Depends(_KEY_HEADER)]) -> None:
        if key is None or not hmac.compare_digest(key.encode(), expected_key):
            raise HTTPException(401, "missing or wrong API key (send it in the X-API-Key header)")

    def check_top_k(top_k: int) -> None:
        if top_k > settings.max_top_k:
            raise HTTPException(422, f"top_k {top_k} exceeds the limit of {settings.max_top_k}")

    def check_length(n_chars: int, what: str) -> None:
        if n_chars > settings.max_text_chars:
            raise HTTPException(
                422, f"{what} has {n_chars} characters; the limit is {settings.max_text_chars}"
            )

    def scored(engine: Engine, hits: list[TagScore]) -> list[ScoredTag]:
        return [ScoredTag(tag=h.tag, name=h.name, score=h.score, path=engine.path(h.tag)) for h in hits]

    # ---- errors ---------------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Same shape as FastAPI's, minus echoing huge inputs back; a body that is not JSON says so.
        errors = []
        for e in exc.errors():
            item = {k: e[k] for k in ("type", "loc", "msg") if k in e}
            if e.get("type") == "json_invalid":
                item["msg"] = f"request body is not valid JSON: {e.get('ctx', {}).get('error', '')}".rstrip(
                    ": "
                )
            errors.append(item)
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the service log"}, 500)

    # ---- tagging --------------------------------------------------------------------------------
    @app.post("/v1/tag", response_model=TagResponse, responses=_ERRORS, tags=["tagging"])
    def tag_products(body: TagRequest, request: Request, engine: EngineDep) -> TagResponse:
        """Ranks tags for one product or a batch; optionally explains them and decides which to assign."""
        start = time.perf_counter()
        items = body.product_list()
        if len(items) > settings.max_batch:
            raise HTTPException(
                422, f"batch of {len(items)} products exceeds the limit of {settings.max_batch}"
            )
        check_top_k(body.top_k)
        for i, item in enumerate(items):
            check_length(item.text_length(), f"a field of product {i}")
        threshold = body.accept_threshold if body.accept_threshold is not None else settings.accept_threshold
        if body.decide and threshold is None and request.app.state.decider.needs_threshold:
            raise HTTPException(
                422, "decide needs accept_threshold (no default is configured: TAGINDEX_ACCEPT_THRESHOLD)"
            )
        stage: RerankStage | None = engine.stage
        try:
            if stage is None:
                if body.rerank or body.rerank_depth is not None:
                    raise StageRequestError(
                        "rerank was asked for but no reranker is configured "
                        "(TAGINDEX_RERANKER_DIR / tagindex serve --reranker)"
                    )
                rerank, depth = False, None
            else:
                rerank, depth = stage.resolve(body.rerank, body.rerank_depth)
        except StageRequestError as exc:
            raise HTTPException(422, str(exc)) from None
        products = [item.to_product() for item in items]
        try:
            if stage is not None and (rerank or stage.calibration is not None):
                texts, vectors = engine.encode_products(products)
                results: list[Any] = stage.rank(
                    products, vectors, body.top_k, rerank, depth, body.threshold, body.include_ancestors
                )
            else:
                results, texts, vectors = engine.tag(
                    products, body.top_k, body.threshold, body.include_ancestors
                )
        except LookupError as exc:  # every tag retired
            raise HTTPException(503, str(exc)) from None
        request.app.state.metrics.products.inc(len(products))
        out = []
        for product, result, text, vector in zip(products, results, texts, vectors, strict=True):
            try:
                explanations = (
                    request.app.state.explainer.explain(ExplainContext(product, text, vector, result))
                    if body.explain
                    else {}
                )
                decisions = request.app.state.decider.decide(result, threshold) if body.decide else {}
            except StageRequestError as exc:
                raise HTTPException(422, str(exc)) from None
            scored = result if isinstance(result, ScoredResult) else None
            hits = []
            for t in result.tags:
                decision, reason = decisions.get(t.tag, (None, None))
                explanation = explanations.get(t.tag)
                cand = scored.candidates.get(t.tag) if scored is not None and t.ancestor_of is None else None
                hits.append(
                    TagHit(
                        tag=t.tag,
                        name=t.name,
                        score=t.score,
                        path=engine.path(t.tag),
                        ancestor_of=t.ancestor_of,
                        decision=decision,
                        reason=reason,
                        explanation=Explanation(**explanation.to_dict()) if explanation else None,
                        bi_encoder_score=cand.bi_score if cand is not None else None,
                        rerank_score=cand.rerank_score if cand is not None else None,
                        cross_encoder_score=cand.cross_score if cand is not None else None,
                        probability=scored.probabilities.get(t.tag) if cand is not None and scored else None,
                    )
                )
            assigned = None
            if scored is not None and scored.assigned is not None:
                assigned = [
                    AssignedTag(
                        tag=a.tag,
                        name=engine.by_id[a.tag].name if a.tag in engine.by_id else "",
                        path=engine.path(a.tag),
                        probability=a.probability,
                        level=a.level,
                        ancestor_of=a.ancestor_of,
                    )
                    for a in scored.assigned
                ]
            out.append(
                ProductResult(
                    id=result.id, tags=hits, encoded_text=text if body.explain else None, assigned=assigned
                )
            )
        return TagResponse(
            results=out,
            index_version=engine.version,
            explainer=request.app.state.explainer.name if body.explain else None,
            decider=request.app.state.decider.name if body.decide else None,
            elapsed_ms=round((time.perf_counter() - start) * 1000, 3),
            reranked=rerank,
            rerank_depth=depth,
        )

    # ---- vocabulary -----------------------------------------------------------------------------
    @app.get("/v1/tags", response_model=list[TagInfo], responses=_ERRORS, tags=["vocabulary"])
    def search_tags(
        engine: EngineDep,
        q: Annotated[
            str, Query(max_length=500, description="words that must all occur in name, path or id")
        ] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[TagInfo]:
        """Searches the vocabulary by words (case-insensitive); exact and prefix name matches first."""
        return [_info(engine, t) for t in engine.search_vocabulary(q, limit)]

    @app.get("/v1/tags/duplicates", response_model=DuplicatesResponse, responses=_ERRORS, tags=["vocabulary"])
    def duplicate_tags(
        engine: EngineDep,
        min_score: Annotated[float, Query(ge=-1.0, le=1.0, description="lowest cosine similarity")] = 0.9,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> DuplicatesResponse:
        """Merge candidates: pairs of tags whose vectors are near-identical, most similar first."""
        pairs = engine.duplicates(min_score, settings.duplicate_neighbours)
        return DuplicatesResponse(
            min_score=min_score,
            total=len(pairs),
            pairs=[
                DuplicatePair(
                    a=a.id,
                    a_name=a.name,
                    a_path=engine.path(a.id),
                    b=b.id,
                    b_name=b.name,
                    b_path=engine.path(b.id),
                    score=s,
                )
                for a, b, s in pairs[:limit]
            ],
        )

    @app.post("/v1/tags/similar", response_model=SimilarResponse, responses=_ERRORS, tags=["vocabulary"])
    def similar_to_text(body: SimilarTextRequest, engine: EngineDep) -> SimilarResponse:
        """Tags nearest a free text (a tag name you have in mind, a product, a search phrase)."""
        check_top_k(body.top_k)
        check_length(len(body.text), "text")
        return SimilarResponse(
            query=body.text, tags=scored(engine, engine.similar_to_text(body.text, body.top_k))
        )

    @app.get(
        "/v1/tags/{tag_id:path}/similar",
        response_model=SimilarResponse,
        responses={**_ERRORS, 404: {"model": ErrorBody, "description": "unknown tag id"}},
        tags=["vocabulary"],
    )
    def similar_to_tag(
        engine: EngineDep,
        tag_id: Annotated[str, PathParam(description="tag id (may contain '/')")],
        top_k: Annotated[int, Query(ge=1)] = 10,
    ) -> SimilarResponse:
        """Tags nearest an existing tag (the tag itself excluded)."""
        check_top_k(top_k)
        try:
            hits = engine.similar_to_tag(tag_id, top_k)
        except KeyError:
            raise HTTPException(404, f"unknown tag id '{tag_id}'") from None
        return SimilarResponse(query=tag_id, tags=scored(engine, hits))

    @app.get(
        "/v1/tags/{tag_id:path}",
        response_model=TagInfo,
        responses={404: {"model": ErrorBody, "description": "unknown tag id"}},
        tags=["vocabulary"],
    )
    def get_tag(engine: EngineDep, tag_id: str) -> TagInfo:
        """One tag with its path."""
        try:
            return _info(engine, engine.get(tag_id))
        except KeyError:
            raise HTTPException(404, f"unknown tag id '{tag_id}'") from None

    @app.post(
        "/v1/tags",
        response_model=ChangeResponse,
        status_code=201,
        responses={**_WRITE_ERRORS, 409: {"model": ErrorBody, "description": "id exists / unknown parent"}},
        dependencies=[Depends(require_key)],
        tags=["vocabulary"],
    )
    def add_tags(body: AddTagsRequest, request: Request, engine: EngineDep) -> ChangeResponse:
        """Adds tags without a restart: searchable when this returns, saved to the index directory."""
        if len(body.tags) > settings.max_new_tags:
            raise HTTPException(422, f"{len(body.tags)} tags exceed the limit of {settings.max_new_tags}")
        for i, t in enumerate(body.tags):
            check_length(max(len(t.name), len(t.description)), f"a field of tag {i}")
        try:
            added = engine.add_tags([t.to_tag() for t in body.tags])
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        request.app.state.metrics.tags.set(len(engine))
        return ChangeResponse(changed=added, n_tags=len(engine), index_version=engine.version)

    @app.delete(
        "/v1/tags/{tag_id:path}",
        response_model=ChangeResponse,
        responses={
            **_WRITE_ERRORS,
            404: {"model": ErrorBody, "description": "unknown tag id"},
            409: {"model": ErrorBody, "description": "the tag has children and cascade is off"},
        },
        dependencies=[Depends(require_key)],
        tags=["vocabulary"],
    )
    def retire_tag(
        request: Request,
        engine: EngineDep,
        tag_id: str,
        cascade: Annotated[bool, Query(description="also retire the tag's descendants")] = False,
    ) -> ChangeResponse:
        """Retires a tag (and with ``cascade`` its descendants) without a restart; saved to disk."""
        try:
            removed = engine.remove_tags([tag_id], cascade=cascade)
        except KeyError:
            raise HTTPException(404, f"unknown tag id '{tag_id}'") from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        request.app.state.metrics.tags.set(len(engine))
        return ChangeResponse(changed=removed, n_tags=len(engine), index_version=engine.version)

    # ---- feedback -------------------------------------------------------------------------------
    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        status_code=201,
        responses=_WRITE_ERRORS,
        dependencies=[Depends(require_key)],
        tags=["feedback"],
    )
    def post_feedback(body: FeedbackRequest, request: Request, engine: EngineDep) -> FeedbackResponse:
        """Stores accept / reject / add judgements for one product durably (SQLite) for later training."""
        unknown = sorted({j.tag for j in body.judgements if j.tag not in engine.index})
        if unknown:
            raise HTTPException(422, f"unknown tag id(s): {unknown[:10]}")
        check_length(body.product.text_length(), "a field of the product")
        product = body.product.to_product()
        store: FeedbackStore = request.app.state.feedback
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
        return FeedbackResponse(stored=[FeedbackRow(**r.to_dict()) for r in records], total=store.count())

    @app.get(
        "/v1/feedback",
        response_model=FeedbackList,
        responses=_WRITE_ERRORS,
        dependencies=[Depends(require_key)],
        tags=["feedback"],
    )
    def list_feedback(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        after_id: Annotated[int, Query(ge=0, description="page on from this row id")] = 0,
        product_id: str | None = None,
        tag: str | None = None,
    ) -> FeedbackList:
        """Stored feedback in the order it arrived (needs the API key: it holds catalog text)."""
        store: FeedbackStore = request.app.state.feedback
        rows = store.records(limit=limit, product_id=product_id, tag=tag, after_id=after_id)
        return FeedbackList(rows=[FeedbackRow(**r.to_dict()) for r in rows], total=store.count())

    # ---- operations -----------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        """The process answers (liveness)."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": ErrorBody, "description": "not ready"}},
        tags=["operations"],
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

    @app.get("/v1/info", response_model=Info, tags=["operations"])
    def info(request: Request, engine: EngineDep) -> Info:
        """The served index, the limits and defaults (the web page reads this)."""
        return Info(
            index=engine.describe(),
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
            stage=engine.stage.describe() if engine.stage is not None else None,
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus text format: request counts and latency histograms by route, tags, feedback."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ---- web page -------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _info(engine: Engine, tag: Tag) -> TagInfo:
    return TagInfo(
        id=tag.id,
        name=tag.name,
        path=engine.path(tag.id),
        parent=tag.parent,
        kind=tag.kind,
        description=tag.description,
        synonyms=list(tag.synonyms),
    )


def _limit_threads(n: int) -> None:
    """Caps the thread pools of torch, FAISS and BLAS (process-wide: the service owns its process)."""
    import faiss
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)  # BLAS and OpenMP runtimes already loaded (numpy's OpenBLAS)
    faiss.omp_set_num_threads(n)
    try:
        import torch
    except ImportError:  # an encoder backend without torch
        return
    torch.set_num_threads(n)


def _version() -> str:
    import tagindex

    return tagindex.__version__
