"""``POST /v1/tag``: rank tags for products, optionally rerank, explain and decide."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from tagindex.service.engine import Engine
from tagindex.service.explanations import ExplainContext
from tagindex.service.models import AssignedTag, Explanation, ProductResult, TagHit, TagRequest, TagResponse
from tagindex.service.routers.deps import (
    ERRORS,
    EngineDep,
    LangQuery,
    SettingsDep,
    check_count,
    check_length,
    check_top_k,
)
from tagindex.service.stage import RerankStage, ScoredResult, StageRequestError

from tagindex.kinds import KindPolicy
from tagindex.schema import Product, TagResult

router = APIRouter(tags=["tagging"])


@router.post("/v1/tag", response_model=TagResponse, responses=ERRORS)
def tag_products(
    body: TagRequest, request: Request, engine: EngineDep, settings: SettingsDep, lang: LangQuery = None
) -> TagResponse:
    """Ranks tags for one product or a batch; optionally explains them and decides which to assign."""
    start = time.perf_counter()
    items = body.product_list()
    check_count(len(items), settings.max_batch, "batch")
    check_top_k(settings, body.top_k)
    for i, item in enumerate(items):
        check_length(settings, item.text_length(), f"a field of product {i}")
    threshold = body.accept_threshold if body.accept_threshold is not None else settings.accept_threshold
    decider = request.app.state.decider
    explainer = request.app.state.explainer
    if body.decide and threshold is None and decider.needs_threshold:
        raise HTTPException(
            422, "decide needs accept_threshold (no default is configured: TAGINDEX_ACCEPT_THRESHOLD)"
        )
    rerank, depth = _resolve_rerank(engine.stage, body)
    policy = KindPolicy.parse(body.per_kind, body.kind_norm, body.category_title_weight, source="per_kind")
    if policy is not None:
        policy.check(engine.by_id, "per_kind")  # InputError: 422 with the reason
    products = [item.to_product() for item in items]
    if policy is None:
        results, texts, vectors = _rank(engine, products, body, rerank, depth)
    else:
        results, texts, vectors = _rank_kinds(engine, products, body, rerank, depth, policy)
    request.app.state.metrics.products.inc(len(products))
    out = []
    for product, result, text, vector in zip(products, results, texts, vectors, strict=True):
        explanations = (
            explainer.explain(ExplainContext(product, text, vector, result)) if body.explain else {}
        )
        decisions = decider.decide(result, threshold) if body.decide else {}
        out.append(
            _product_result(engine, result, text if body.explain else None, explanations, decisions, lang)
        )
    return TagResponse(
        results=out,
        index_version=engine.version,
        explainer=explainer.name if body.explain else None,
        decider=decider.name if body.decide else None,
        elapsed_ms=round((time.perf_counter() - start) * 1000, 3),
        reranked=rerank,
        rerank_depth=depth,
    )


def _resolve_rerank(stage: RerankStage | None, body: TagRequest) -> tuple[bool, int | None]:
    if stage is not None:
        return stage.resolve(body.rerank, body.rerank_depth)
    if body.rerank or body.rerank_depth is not None:
        raise StageRequestError(
            "rerank was asked for but no reranker is configured "
            "(TAGINDEX_RERANKER_DIR / tagindex serve --reranker)"
        )
    return False, None


def _rank(
    engine: Engine, products: list[Product], body: TagRequest, rerank: bool, depth: int | None
) -> tuple[list[Any], list[str], Any]:
    stage: RerankStage | None = engine.stage
    try:
        if stage is not None and (rerank or stage.calibration is not None):
            texts, vectors = engine.encode_products(products)
            results = stage.rank(
                products, vectors, body.top_k, rerank, depth, body.threshold, body.include_ancestors
            )
            return results, texts, vectors
        ranked, texts, vectors = engine.tag(products, body.top_k, body.threshold, body.include_ancestors)
        return list(ranked), texts, vectors
    except LookupError as exc:  # every tag retired
        raise HTTPException(503, str(exc)) from None


def _rank_kinds(
    engine: Engine,
    products: list[Product],
    body: TagRequest,
    rerank: bool,
    depth: int | None,
    policy: KindPolicy,
) -> tuple[list[Any], list[str], Any]:
    """:func:`_rank` with a per-kind policy: the tagging pipeline's ``rank_kinds`` (the stage's when it
    reranks or decides), encoding through the engine's shared batcher."""
    from tagindex.kinds import title_texts
    from tagindex.pipeline import TaggingPipeline

    stage: RerankStage | None = engine.stage
    texts, vectors = engine.encode_products(products)
    titles = (
        engine.encode(title_texts(products, engine.index.params.text)) if policy.title_weight > 0 else None
    )
    try:
        if stage is not None and (rerank or stage.calibration is not None):
            results = stage.rank(
                products,
                vectors,
                body.top_k,
                rerank,
                depth,
                body.threshold,
                body.include_ancestors,
                per_kind=policy,
                title_vectors=titles,
            )
            return list(results), texts, vectors
        with engine.reading():
            if not len(engine.index):
                raise LookupError("the index holds no tags")
            by_id = engine.by_id
            pipeline = TaggingPipeline(engine.index)
            ranked = pipeline.rank_kinds(
                policy, products, body.top_k, False, None, vectors, by_id=by_id, title_vectors=titles
            )
            plain = [pipeline.result(r, by_id, body.threshold, body.include_ancestors) for r in ranked]
        return plain, texts, vectors
    except LookupError as exc:  # every tag retired
        raise HTTPException(503, str(exc)) from None


def _product_result(
    engine: Engine,
    result: TagResult,
    encoded_text: str | None,
    explanations: dict[str, Any],
    decisions: dict[str, tuple[str, str]],
    lang: str | None = None,
) -> ProductResult:
    scored = result if isinstance(result, ScoredResult) else None
    hits = []
    for t in result.tags:
        decision, reason = decisions.get(t.tag, (None, None))
        explanation = explanations.get(t.tag)
        cand = scored.candidates.get(t.tag) if scored is not None and t.ancestor_of is None else None
        hits.append(
            TagHit(
                tag=t.tag,
                name=engine.name(t.tag, lang) if lang else t.name,
                score=t.score,
                path=engine.path(t.tag, lang),
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
                name=engine.name(a.tag, lang),
                path=engine.path(a.tag, lang),
                probability=a.probability,
                level=a.level,
                ancestor_of=a.ancestor_of,
            )
            for a in scored.assigned
        ]
    return ProductResult(id=result.id, tags=hits, encoded_text=encoded_text, assigned=assigned)
