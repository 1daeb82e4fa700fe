"""FastAPI application: tagging, similar and duplicate tags, vocabulary changes, feedback, web page.

Start it with ``tagindex serve --index DIR`` or
``uvicorn --factory tagindex.service.app:create_app`` (settings from ``TAGINDEX_*`` environment
variables, see :class:`tagindex.service.settings.Settings`).

``create_app`` only wires: settings, the lifespan (index, reranker stage, feedback store), middleware
and the feature routers of :mod:`tagindex.service.routers`. CPU-bound endpoints are plain ``def``:
FastAPI runs them in its thread pool, so the event loop keeps accepting requests while the encoder
works; concurrent encodes are merged by the engine's batcher.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from tagindex.service.engine import Engine
from tagindex.service.explanations import make_decider, make_explainer
from tagindex.service.feedback import FeedbackStore
from tagindex.service.feedback_pg import open_feedback_store
from tagindex.service.middleware import (
    AllowMiddleware,
    BodyLimitMiddleware,
    Metrics,
    MetricsMiddleware,
    RedactSecretsFilter,
    SecurityHeadersMiddleware,
)
from tagindex.service.replicas import open_engine
from tagindex.service.routers import ROUTERS, errors, learning, page
from tagindex.service.routers.deps import publish_limits
from tagindex.service.settings import Settings
from tagindex.service.stage import StageConfigError

from tagindex.encoders import Encoder

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Read endpoints are open; write endpoints (adding or retiring tags, feedback) need the "
    "`X-API-Key` header (a key in the query string is never accepted). Bodies over the size limit get "
    "413; batches, `top_k`, texts or tags over the limits get 422 with the reason (the limits are in "
    "this schema and at `/v1/info`). Errors always carry `detail`: 422 for a malformed request, 409 "
    "for a conflict with the vocabulary, 503 when the server's own index or models are unusable. The "
    "merchandiser page is at `/`."
)


def create_app(settings: Settings | None = None, encoder: Encoder | None = None) -> FastAPI:
    """Builds the app; the index and feedback store open once, in the lifespan handler.

    Args:
        settings: Service settings; default: read from the environment.
        encoder: An already loaded encoder to reuse (tests, several apps in one process); default:
            the one the index's manifest names.
    """
    settings = settings or Settings()  # index_dir comes from the environment
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    if not api_key:
        api_key = secrets.token_urlsafe(24)
        logger.warning("TAGINDEX_API_KEY is not set; write endpoints accept this generated key: %s", api_key)
    app = FastAPI(
        title="tagindex",
        version=_version(),
        summary="Product tag matching: tag products, find similar and duplicate tags, record feedback.",
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # served from local assets by the page router
        redoc_url=None,
        responses={422: {"description": "invalid request: the body says which field and why"}},
    )
    app.state.settings = settings
    app.state.encoder = encoder
    app.state.api_key = api_key.encode()
    app.state.metrics = Metrics()
    app.state.log_filter = RedactSecretsFilter([api_key])
    for router in ROUTERS:
        app.include_router(router)
    page.mount(app)
    errors.install(app)
    app.openapi = publish_limits(app, settings)  # type: ignore[method-assign]  # FastAPI's documented hook
    # Added innermost first: metrics see every answer, 413 and OPTIONS included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AllowMiddleware, routes=lambda: app.routes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine, store = await anyio.to_thread.run_sync(_start, settings, app.state.encoder)
    try:
        stage = engine.stage
        explainer = settings.explainer
        if explainer == "auto":
            explainer = "tagindex" if stage is not None else "similarity"
        decider = settings.decider
        if decider == "auto":
            decider = "calibrated" if stage is not None and stage.calibration is not None else "threshold"
        if decider == "calibrated" and (stage is None or stage.calibration is None):
            raise StageConfigError("the calibrated decider needs a calibration (TAGINDEX_CALIBRATION_FILE)")
        app.state.explainer = make_explainer(explainer, engine)
        app.state.decider = make_decider(decider, engine)
    except BaseException:
        engine.close()
        store.close()
        raise
    app.state.engine = engine
    app.state.feedback = store
    learning.start(app, engine, store, settings)
    app.state.metrics.tags.set(len(engine))
    access_log = logging.getLogger("uvicorn.access")
    access_log.addFilter(app.state.log_filter)  # here: uvicorn has configured its loggers by now
    logger.info("serving %d tags; feedback in %s", len(engine), store.path)
    try:
        yield
    finally:
        access_log.removeFilter(app.state.log_filter)
        engine.close()
        store.close()


def _start(settings: Settings, encoder: Encoder | None) -> tuple[Engine, FeedbackStore]:
    if settings.compute_threads is not None:
        _limit_threads(settings.compute_threads)
    engine = open_engine(settings, settings.index_dir, encoder)
    return engine, open_feedback_store(settings.feedback_url or settings.feedback_path())


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
