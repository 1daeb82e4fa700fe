"""The taxonomy tree for the page: a node's children with counts, and products assigned per node."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from tagindex.service.engine import Engine
from tagindex.service.models import MAX_ID_CHARS
from tagindex.service.routers.deps import ERRORS, NOT_FOUND, EngineDep

from tagindex.taxonomy import Tree, build_tree, products_per_node

router = APIRouter(tags=["vocabulary"])

MAX_ASSIGNMENTS = 20_000


class TreeNode(BaseModel):
    id: str
    name: str
    kind: str
    children: int = Field(description="direct children")
    tags: int = Field(description="tags in this subtree, the node included")


class TreeLevel(BaseModel):
    parent: str | None
    nodes: list[TreeNode]
    index_version: int


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    tag: str = Field(min_length=1, max_length=MAX_ID_CHARS)


class CountsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignments: list[Assignment] = Field(max_length=MAX_ASSIGNMENTS, description="accepted or added tags")


class CountsResponse(BaseModel):
    counts: dict[str, int] = Field(description="node id -> distinct products assigned to it or below")


def tree(request: Request, engine: Engine) -> Tree:
    """The tree of the served vocabulary, rebuilt when its version (or the engine) changes."""
    key = (id(engine), engine.version)
    cached: tuple[tuple[int, int], Tree] | None = getattr(request.app.state, "taxonomy_tree", None)
    if cached is None or cached[0] != key:
        cached = (key, build_tree(list(engine.by_id.values())))
        request.app.state.taxonomy_tree = cached
    return cached[1]


@router.get("/v1/taxonomy", response_model=TreeLevel, responses={**ERRORS, **NOT_FOUND})
def children(
    request: Request,
    engine: EngineDep,
    parent: Annotated[
        str | None, Query(max_length=MAX_ID_CHARS, description="node id; none: the roots")
    ] = None,
) -> TreeLevel:
    """One level of the taxonomy: the roots, or a node's children, each with its subtree's size."""
    t = tree(request, engine)
    by_id = engine.by_id
    if parent is not None and parent not in by_id:
        raise HTTPException(404, f"unknown tag id '{parent}'")
    nodes = [
        TreeNode(
            id=i,
            name=by_id[i].name,
            kind=by_id[i].kind,
            children=len(t.children.get(i, [])),
            tags=t.size[i],
        )
        for i in t.children.get(parent, [])
    ]
    return TreeLevel(parent=parent, nodes=nodes, index_version=engine.version)


@router.post("/v1/taxonomy/counts", response_model=CountsResponse, responses=ERRORS)
def counts(body: CountsRequest, request: Request, engine: EngineDep) -> CountsResponse:
    """Distinct products per node (the node or a tag below it) from the page's session decisions."""
    t = tree(request, engine)
    return CountsResponse(counts=products_per_node(t, ((a.product, a.tag) for a in body.assignments)))
