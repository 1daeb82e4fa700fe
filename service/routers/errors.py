"""How errors become HTTP answers: one place, one JSON shape (``{"detail": ...}``).

``tagindex.errors`` subclasses map to a status by what caused them:

=====================  ======  ==============================================================
error                  status  why
=====================  ======  ==============================================================
InputError             422     the request is malformed in a way the schema cannot say
CompatibilityError     409     the request conflicts with what the service holds
ArtifactError          503     the service's own index or model files are unusable: not the
                               caller's fault, and retrying later (after a fix) can succeed
ModelError             503     the same, for a model that cannot run
other TagindexError    400     a user-caused error of a kind added later
=====================  ======  ==============================================================

Anything else is a bug: a JSON 500 naming the exception type, with the traceback in the log only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tagindex.errors import ArtifactError, CompatibilityError, InputError, ModelError, TagindexError

logger = logging.getLogger(__name__)

STATUS: tuple[tuple[type[TagindexError], int], ...] = (
    (InputError, 422),
    (CompatibilityError, 409),
    (ArtifactError, 503),
    (ModelError, 503),
    (TagindexError, 400),
)


def status_of(exc: TagindexError) -> int:
    """The HTTP status for a tagindex error (the first matching class of :data:`STATUS`)."""
    return next(code for cls, code in STATUS if isinstance(exc, cls))


def install(app: FastAPI) -> None:
    """Registers the exception handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(TagindexError, _tagindex_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Same shape as FastAPI's, minus echoing huge inputs back; a body that is not JSON says so.
    errors = []
    for e in exc.errors():
        item = {k: e[k] for k in ("type", "loc", "msg") if k in e}
        if e.get("type") == "json_invalid":
            reason = e.get("ctx", {}).get("error", "")
            item["msg"] = f"request body is not valid JSON: {reason}".rstrip(": ")
        errors.append(item)
    return JSONResponse({"detail": errors}, status_code=422)


async def _tagindex_error(request: Request, exc: TagindexError) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the service log"}, 500)
