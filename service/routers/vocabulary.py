"""The vocabulary: search, similar tags, one tag, adding and retiring tags (duplicates: ``duplicates``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from tagindex.service.engine import Engine
from tagindex.service.models import (
    MAX_ID_CHARS,
    MAX_INT,
    AddTagsRequest,
    ChangeResponse,
    ErrorBody,
    SimilarResponse,
    SimilarTextRequest,
    TagInfo,
)
from tagindex.service.routers.deps import (
    ERRORS,
    NOT_FOUND,
    WRITE_ERRORS,
    EngineDep,
    LangQuery,
    SettingsDep,
    check_count,
    check_length,
    check_top_k,
    require_key,
    scored,
)

from tagindex.schema import Tag

router = APIRouter(tags=["vocabulary"])

TagIdPath = Annotated[str, PathParam(max_length=MAX_ID_CHARS, description="tag id (may contain '/')")]


@router.get("/v1/tags", response_model=list[TagInfo], responses=ERRORS)
def search_tags(
    engine: EngineDep,
    q: Annotated[
        str, Query(max_length=500, description="words that must all occur in name, path or id")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    lang: LangQuery = None,
) -> list[TagInfo]:
    """Searches the vocabulary by words (case-insensitive); exact and prefix name matches first."""
    return [_info(engine, t, lang) for t in engine.search_vocabulary(q, limit)]


@router.post("/v1/tags/similar", response_model=SimilarResponse, responses=ERRORS)
def similar_to_text(
    body: SimilarTextRequest, engine: EngineDep, settings: SettingsDep, lang: LangQuery = None
) -> SimilarResponse:
    """Tags nearest a free text (a tag name you have in mind, a product, a search phrase)."""
    check_top_k(settings, body.top_k)
    check_length(settings, len(body.text), "text")
    return SimilarResponse(
        query=body.text, tags=scored(engine, engine.similar_to_text(body.text, body.top_k), lang)
    )


@router.get(
    "/v1/tags/{tag_id:path}/similar", response_model=SimilarResponse, responses={**ERRORS, **NOT_FOUND}
)
def similar_to_tag(
    engine: EngineDep,
    settings: SettingsDep,
    tag_id: TagIdPath,
    top_k: Annotated[int, Query(ge=1, le=MAX_INT, description="at most the service's max_top_k")] = 10,
    lang: LangQuery = None,
) -> SimilarResponse:
    """Tags nearest an existing tag (the tag itself excluded)."""
    check_top_k(settings, top_k)
    try:
        hits = engine.similar_to_tag(tag_id, top_k)
    except KeyError:
        raise HTTPException(404, f"unknown tag id '{tag_id}'") from None
    return SimilarResponse(query=tag_id, tags=scored(engine, hits, lang))


@router.get("/v1/tags/{tag_id:path}", response_model=TagInfo, responses=NOT_FOUND)
def get_tag(engine: EngineDep, tag_id: TagIdPath, lang: LangQuery = None) -> TagInfo:
    """One tag with its path."""
    try:
        return _info(engine, engine.get(tag_id), lang)
    except KeyError:
        raise HTTPException(404, f"unknown tag id '{tag_id}'") from None


@router.post(
    "/v1/tags",
    response_model=ChangeResponse,
    status_code=201,
    responses={**WRITE_ERRORS, 409: {"model": ErrorBody, "description": "id exists / unknown parent"}},
    dependencies=[Depends(require_key)],
)
def add_tags(
    body: AddTagsRequest, request: Request, engine: EngineDep, settings: SettingsDep
) -> ChangeResponse:
    """Adds tags without a restart: searchable when this returns, saved to the index directory."""
    check_count(len(body.tags), settings.max_new_tags, "request with tags")
    for i, t in enumerate(body.tags):
        check_length(settings, len(t.description), f"the description of tag {i}")
    try:
        added = engine.add_tags([t.to_tag() for t in body.tags])
    except ValueError as exc:  # an id that exists, an unknown parent (nothing was changed)
        raise HTTPException(409, str(exc)) from None
    request.app.state.metrics.tags.set(len(engine))
    return ChangeResponse(changed=added, n_tags=len(engine), index_version=engine.version)


@router.delete(
    "/v1/tags/{tag_id:path}",
    response_model=ChangeResponse,
    responses={
        **WRITE_ERRORS,
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "the tag has children and cascade is off"},
    },
    dependencies=[Depends(require_key)],
)
def retire_tag(
    request: Request,
    engine: EngineDep,
    tag_id: TagIdPath,
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


def _info(engine: Engine, tag: Tag, lang: str | None = None) -> TagInfo:
    return TagInfo(
        id=tag.id,
        name=tag.name_in(lang),
        path=engine.path(tag.id, lang),
        parent=tag.parent,
        kind=tag.kind,
        description=tag.description,
        synonyms=list(tag.synonyms),
    )
