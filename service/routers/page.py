"""The merchandiser page (``/``), its assets (``/static``) and the API docs (``/docs``), all local.

Swagger UI comes from the ``fastapi-offline`` package's copy (Swagger UI 5, which reads OpenAPI 3.1),
so ``/docs`` works on a machine without internet access; the page that starts it is a static file
with no inline script, so the strict Content-Security-Policy holds there too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/docs")
async def docs() -> FileResponse:
    return FileResponse(STATIC / "docs.html")


def swagger_assets() -> Path | None:
    """The folder holding swagger-ui-bundle.js and swagger-ui.css, if the package is installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def mount(app: FastAPI) -> None:
    """Mounts the page's assets and, when available, Swagger UI's (mounts do not travel in routers)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    assets = swagger_assets()
    if assets is None:
        logger.warning("/docs has no Swagger UI: install tagindex[service] (fastapi-offline)")
        return
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
