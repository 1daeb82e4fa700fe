"""What every router shares: the engine, the settings, the API key check, limits and error docs.

The limits that come from the settings (text length, batch size, ``top_k``, rerank depth, tags per
request) are checked here with messages that name the setting, and :func:`publish_limits` writes the
same numbers into the OpenAPI document, so a request that the schema allows is one the service
accepts, and the other way round.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.security import APIKeyHeader
from tagindex.service.engine import Engine
from tagindex.service.models import ErrorBody, ScoredTag
from tagindex.service.settings import Settings

from tagindex.schema import TagScore

KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the service's API key")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "unusable request (e.g. a Content-Length that is not a number)"},
    413: {"model": ErrorBody, "description": "request body larger than the limit"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": ErrorBody, "description": "missing or wrong X-API-Key"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "unknown tag id"}}


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]
LangQuery = Annotated[
    str | None,
    Query(
        max_length=35,
        pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$",
        description="tag names (and paths) in this language where the vocabulary has them, e.g. zh-CN "
        "(`tagindex convert shopify --locale`); the default name otherwise",
    ),
]


def require_key(request: Request, key: Annotated[str | None, Depends(KEY_HEADER)]) -> None:
    """401 unless the X-API-Key header holds the service's key (compared in constant time).

    Only the header counts: a key in the query string would end up in access logs and browser history.
    """
    expected: bytes = request.app.state.api_key
    if key is None or not hmac.compare_digest(key.encode(), expected):
        raise HTTPException(401, "missing or wrong API key (send it in the X-API-Key header)")


def has_key(request: Request) -> bool:
    """Whether the request carries the right key (for answers that show more to the operator)."""
    key = request.headers.get("x-api-key")
    return key is not None and hmac.compare_digest(key.encode(), request.app.state.api_key)


def check_top_k(settings: Settings, top_k: int) -> None:
    if top_k > settings.max_top_k:
        raise HTTPException(422, f"top_k {top_k} exceeds the limit of {settings.max_top_k}")


def check_length(settings: Settings, n_chars: int, what: str) -> None:
    if n_chars > settings.max_text_chars:
        raise HTTPException(422, f"{what} has {n_chars} characters; the limit is {settings.max_text_chars}")


def check_count(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise HTTPException(422, f"{what} of {n} exceeds the limit of {limit}")


def scored(engine: Engine, hits: list[TagScore], lang: str | None = None) -> list[ScoredTag]:
    return [
        ScoredTag(
            tag=h.tag,
            name=engine.name(h.tag, lang) if lang else h.name,
            score=h.score,
            path=engine.path(h.tag, lang),
        )
        for h in hits
    ]


# ---- the limits in the OpenAPI document ---------------------------------------------------------
def publish_limits(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """An ``app.openapi`` that writes the configured limits into the schema and makes the example
    bodies name tags of the served vocabulary (so every documented example is accepted)."""

    def openapi() -> dict[str, Any]:
        engine: Engine | None = getattr(app.state, "engine", None)
        version = engine.version if engine is not None else -1
        cached: tuple[int, dict[str, Any]] | None = getattr(app.state, "openapi_cache", None)
        if cached is not None and cached[0] == version:
            return cached[1]
        # A deep copy: pydantic puts the models' example dicts into the schema as they are.
        spec = copy.deepcopy(
            get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
        )
        _write_limits(spec, settings)
        if engine is not None:
            _examples_from_vocabulary(spec, engine)
        app.state.openapi_cache = (version, spec)
        return spec

    return openapi


def _write_limits(spec: dict[str, Any], settings: Settings) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    text = {"maxLength": settings.max_text_chars}
    fields: dict[tuple[str, str], dict[str, Any]] = {
        ("TagRequest", "top_k"): {"maximum": settings.max_top_k},
        ("TagRequest", "products"): {"maxItems": settings.max_batch},
        ("TagRequest", "rerank_depth"): {"maximum": settings.max_rerank_depth},
        ("SimilarTextRequest", "top_k"): {"maximum": settings.max_top_k},
        ("SimilarTextRequest", "text"): text,
        ("ProductIn", "title"): text,
        ("ProductIn", "description"): text,
        ("ProductIn", "attributes"): text,  # every value string (str or list of str)
        ("TagIn", "description"): text,
        ("AddTagsRequest", "tags"): {"maxItems": settings.max_new_tags},
    }
    for (model, field), limits in fields.items():
        prop = schemas.get(model, {}).get("properties", {}).get(field)
        if prop is not None:
            _constrain(prop, limits)
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param.get("name") == "top_k":
                    _constrain(param["schema"], {"maximum": settings.max_top_k})


def _constrain(node: dict[str, Any], limits: dict[str, Any]) -> None:
    """Sets each limit on the schema nodes of the matching type (through anyOf, items, maps)."""
    kinds = {"maximum": "integer", "maxItems": "array", "maxLength": "string"}
    for branch in node.get("anyOf", []):
        _constrain(branch, limits)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _constrain(node[key], limits)
    for limit, value in limits.items():
        if node.get("type") == kinds[limit]:
            node[limit] = min(node.get(limit, value), value)


def _examples_from_vocabulary(spec: dict[str, Any], engine: Engine) -> None:
    """Judgement and parent examples name real tags; the example new tag gets a free id."""
    schemas = spec.get("components", {}).get("schemas", {})
    tags = list(engine.by_id)[:2]
    if not tags:
        return
    feedback = schemas.get("FeedbackRequest", {})
    for example in feedback.get("examples", []):
        for judgement, tag in zip(example.get("judgements", []), tags * 2, strict=False):
            judgement["tag"] = tag
    parent = tags[0]
    new_id = "example-new-tag"
    while new_id in engine.by_id:
        new_id += "-1"
    for name in ("AddTagsRequest", "TagIn"):
        for example in schemas.get(name, {}).get("examples", []):
            for item in example.get("tags", [example]):
                item["id"] = new_id
                if "parent" in item:
                    item["parent"] = parent
