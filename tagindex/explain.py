"""Explanations of tag decisions: score parts, nearest labelled products and the words that matter.

For every assigned tag (or, without a calibration, every top-ranked tag) an explanation gives:

- the score parts: bi-encoder (text) similarity and graph part (their contributions to the fused
  vector similarity; the graph part is ``None`` for an index without graph fusion), the first-stage
  score the candidate was ranked by, the cross-encoder logit, the rerank stage's logit (fused with
  the first-stage score when the reranker carries fusion weights) and its sigmoid, calibrated
  probability, rank among the candidates; for an index written by ``tagindex adapt`` that matches
  titles, the part of the score the product-type match added (``title_match``), the name lent by
  ``adapt --graft`` when that matched (``title_match_via``) and the product's own category when
  it, not the title, named the tag (``title_match_category``);
- the nearest labelled products carrying the tag (bi-encoder cosine between product vectors);
- the product words that matter most, by occlusion: the drop in the cross-encoder logit (or, without
  a reranker, the bi-encoder cosine) when one word is left out of the product text.

Everything is computed by deterministic inference and rounded, so the same input and models give
the same explanation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tagindex.calibration import Assigned, Calibration, Hierarchy
from tagindex.candidates import RankedCandidates, positives_of, sigmoid, tag_level
from tagindex.config import _Params
from tagindex.encoders import VectorCache
from tagindex.interfaces import PairScorer, Reranker
from tagindex.pipeline import TaggingPipeline
from tagindex.schema import Product
from tagindex.text import tag_path

if TYPE_CHECKING:
    from tagindex.index import TagIndex

logger = logging.getLogger(__name__)

_DIGITS = 5


@dataclass
class ExplainParams(_Params):
    """What an explanation holds.

    Attributes:
        top_k: Bi-encoder candidates per product.
        depth: Rerank depth (None: the reranker's default).
        untuned_tags: Tags explained per product when there is no calibration (the top-ranked ones).
        neighbours: Nearest labelled products shown per tag.
        words: Most important words shown per tag.
        max_words: Words of the product text tried by occlusion (the text's start: title first).
        max_carriers: Labelled products carrying a tag that are searched for its neighbours (the
            first ones in file order; bounds the encoding work for broad tags, use a cache dir to
            encode each labelled product once across runs).
        hierarchy: Decision hierarchy mode (see :meth:`Calibration.decide`).
    """

    top_k: int = 20
    depth: int | None = None
    untuned_tags: int = 3
    neighbours: int = 3
    words: int = 5
    max_words: int = 40
    max_carriers: int = 1000
    hierarchy: str = "close"


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), _DIGITS)


class Explainer:
    """Explains why tags are assigned to products: the explanation step over a
    :class:`tagindex.pipeline.TaggingPipeline` (which ranks, reranks and decides, and checks that
    index, reranker and calibration belong together).

    Example:
        >>> explainer = Explainer(index, reranker, calibration, labelled=train_products)
        >>> explainer.explain(products)[0]["assigned"][0]["words"]
    """

    def __init__(
        self,
        index: TagIndex,
        reranker: Reranker | None = None,
        calibration: Calibration | None = None,
        labelled: Sequence[Product] | None = None,
        params: ExplainParams | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        labelled_vectors: np.ndarray | None = None,
        encode: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        """
        Args:
            index: The tag index.
            reranker: Optional cross-encoder (reranker parts, word importance by its logit).
            calibration: Optional calibration (explain the assigned tags, calibrated probabilities).
            labelled: Labelled products searched for the nearest ones carrying a tag.
            params: What an explanation holds.
            cache_dir: Directory caching labelled product vectors.
            labelled_vectors: Vectors (n_labelled, dim) of ``labelled`` when already known (e.g. an
                index's exemplars), so they are not encoded again.
            encode: Text encoder to use instead of ``index.encoder.encode`` (e.g. a service's
                thread-safe batcher); must give the same vectors.
        """
        self.params = params or ExplainParams()
        self.pipeline = TaggingPipeline(
            index, reranker, calibration, depth=self.params.depth, hierarchy=_hierarchy(self.params.hierarchy)
        )
        self.index = index
        self.reranker = reranker
        self.calibration = calibration
        self.labelled = list(labelled or [])
        self.cache_dir = cache_dir
        self._encode = encode or index.encoder.encode
        self._labelled_vectors: dict[str, np.ndarray] = {}
        if labelled_vectors is not None:
            if len(labelled_vectors) != len(self.labelled):
                raise ValueError(
                    f"{len(labelled_vectors)} labelled vectors for {len(self.labelled)} products"
                )
            self._labelled_vectors = {p.id: v for p, v in zip(self.labelled, labelled_vectors, strict=True)}

    # ---- similarity parts -----------------------------------------------------------------------
    def _text_part(self, vector: np.ndarray) -> np.ndarray:
        """The unit text vector inside a (possibly graph-fused) product vector."""
        text = vector[: self.index.encoder.dim]
        return text / max(float(np.linalg.norm(text)), 1e-12)

    def _similarity_parts(self, vector: np.ndarray, tag_id: str) -> dict[str, float | None]:
        """Bi-encoder (text) and graph contributions to the vector similarity; they add up to it.

        With graph fusion (``tagindex.graph.fusion``) vectors are ``[sqrt(1-w) text, sqrt(w) graph]``, so the
        inner product splits into a text term and a graph term; without it the graph part is None.
        """
        tag_vector = self.index.tag_vector(tag_id)
        dim = self.index.encoder.dim
        text = float(vector[:dim] @ tag_vector[:dim])
        graph = float(vector[dim:] @ tag_vector[dim:]) if getattr(self.index, "fusion", None) else None
        return {"bi_encoder": _r(text), "graph": _r(graph)}

    # ---- neighbours -----------------------------------------------------------------------------
    def _carriers(self, tag_id: str) -> list[Product]:
        by_id = self.index.by_id
        return [p for p in self.labelled if tag_id in positives_of(p, by_id)]

    def _vectors_of(self, products: Sequence[Product]) -> np.ndarray:
        missing = [p for p in products if p.id not in self._labelled_vectors]
        if missing:
            texts = self.index.product_texts(missing)
            if self.cache_dir is not None:
                vecs = VectorCache(self.cache_dir, self.index.encoder).encode(texts)
            else:
                vecs = self._encode(texts)  # (n_missing, dim)
            for p, v in zip(missing, vecs, strict=True):
                self._labelled_vectors[p.id] = v
        return np.stack([self._labelled_vectors[p.id] for p in products]) if products else np.zeros((0, 0))

    def _neighbours(self, vector: np.ndarray, tag_id: str, exclude: str) -> list[dict[str, Any]]:
        if not self.labelled or self.params.neighbours <= 0:
            return []
        carriers = [p for p in self._carriers(tag_id) if p.id != exclude][: self.params.max_carriers]
        if not carriers:
            return []
        sims = self._vectors_of(carriers) @ self._text_part(vector)  # (n_carriers,)
        order = sorted(range(len(carriers)), key=lambda i: (-round(float(sims[i]), _DIGITS), carriers[i].id))
        return [
            {"id": carriers[i].id, "title": carriers[i].title, "similarity": _r(sims[i])}
            for i in order[: self.params.neighbours]
        ]

    # ---- occlusion ------------------------------------------------------------------------------
    def _occlusion(self, product: Product, vector: np.ndarray, tag_ids: list[str]) -> dict[str, list[dict]]:
        """Per tag, the words whose removal lowers the tag's score most."""
        if self.params.words <= 0 or not tag_ids:
            return {t: [] for t in tag_ids}
        scorer = self.reranker if isinstance(self.reranker, PairScorer) else None
        text = (scorer.product_texts([product]) if scorer else self.index.product_texts([product]))[0]
        words = text.split()
        n = min(len(words), self.params.max_words)
        variants = [text] + [" ".join(words[:i] + words[i + 1 :]) for i in range(n)]
        if scorer is not None:
            tag_texts = scorer.tag_texts(self.index, tag_ids)
            pairs = [(v, tt) for tt in tag_texts for v in variants]
            scores = scorer.score_pairs(pairs).reshape(len(tag_ids), len(variants))
        else:
            vecs = self._encode(variants)  # (1 + n, dim)
            dim = self.index.encoder.dim  # the text part of (possibly graph-fused) tag vectors
            tag_vecs = np.stack([self.index.tag_vector(t)[:dim] for t in tag_ids])  # (n_tags, dim)
            scores = (tag_vecs @ vecs.T).astype(np.float64)  # (n_tags, 1 + n)
        out: dict[str, list[dict]] = {}
        for row, tag_id in enumerate(tag_ids):
            effects = [round(float(scores[row, 0] - scores[row, i + 1]), 4) for i in range(n)]
            order = sorted(range(n), key=lambda i: (-effects[i], i))
            out[tag_id] = [
                {"word": words[i], "position": i, "effect": effects[i]}
                for i in order[: self.params.words]
                if effects[i] > 0
            ]
        return out

    # ---- main -----------------------------------------------------------------------------------
    def explain(self, products: Sequence[Product], show_progress: bool = False) -> list[dict[str, Any]]:
        """One explanation per product (plain JSON-ready dicts), in input order."""
        if not products:
            return []
        index = self.index
        vectors = index.encode_products(products, show_progress=show_progress)  # (n, dim)
        ranked = self.pipeline.rank(products, self.params.top_k, vectors=vectors)
        return [
            self.explain_ranked(product, vector, r, self._choose(r))
            for product, vector, r in zip(products, vectors, ranked, strict=True)
        ]

    def explain_ranked(
        self, product: Product, vector: np.ndarray, r: RankedCandidates, chosen: Sequence[Assigned]
    ) -> dict[str, Any]:
        """The explanation of one product already encoded (``vector`` (dim,)) and ranked (``r``), for
        the tags in ``chosen`` (e.g. the calibrated decision, or every tag a caller shows)."""
        index = self.index
        by_id = index.by_id
        by_tag = {c.tag: (i, c) for i, c in enumerate(r.candidates)}
        tag_ids = [a.tag for a in chosen]
        logits, cross_logits = self._logits(product, tag_ids, by_tag)
        words = self._occlusion(product, vector, tag_ids)
        title_match = index.title_match(vector[None, :], index.match_texts([product]))  # (1, tags) or None
        sources = index.title_match_sources(product) if title_match is not None else {}
        items = []
        for a in chosen:
            rank, cand = by_tag.get(a.tag, (None, None))
            found = sources.get(a.tag, {})
            logit = logits.get(a.tag)
            own_prob = None
            if self.calibration is not None:
                value = (
                    logit
                    if self.calibration.score == "rerank"
                    else (cand.bi_score if cand is not None else float(vector @ index.tag_vector(a.tag)))
                )
                if value is not None:
                    own_prob = float(
                        self.calibration.probabilities(np.array([value]), np.array([a.level]))[0]
                    )
            items.append(
                {
                    "tag": a.tag,
                    "name": by_id[a.tag].name,
                    "path": " > ".join(tag_path(by_id[a.tag], by_id)),
                    "probability": _r(a.probability) if self.calibration is not None else None,
                    "level": a.level,
                    **({"ancestor_of": a.ancestor_of} if a.ancestor_of else {}),
                    "parts": {
                        **self._similarity_parts(vector, a.tag),
                        "first_stage_score": _r(cand.bi_score) if cand is not None else None,
                        "cross_encoder_logit": _r(cross_logits.get(a.tag)),
                        "reranker_logit": _r(logit),
                        "reranker_probability": _r(float(sigmoid(np.array([logit]))[0]))
                        if logit is not None
                        else None,
                        "calibrated_probability": _r(own_prob),
                        "rank": None if rank is None else rank + 1,
                        "score": _r(cand.score) if cand is not None else None,
                        **(
                            {"title_match": _r(float(title_match[0, index.row(a.tag)]))}
                            if title_match is not None
                            else {}
                        ),
                    },
                    # the name lent by `adapt --graft` that matched, when that is the match, and the
                    # product's own category when it, not the title, named the tag
                    **({"title_match_via": found["lent"]} if "lent" in found else {}),
                    **({"title_match_category": found["category"]} if "category" in found else {}),
                    "neighbours": self._neighbours(vector, a.tag, exclude=product.id),
                    "words": words[a.tag],
                }
            )
        return {
            "id": product.id,
            "title": product.title,
            "scorer": "rerank" if self.reranker is not None else "bi_encoder",
            "decision": "calibrated" if self.calibration is not None else "top-ranked (no calibration)",
            "assigned": items,
        }

    def _choose(self, r: RankedCandidates) -> list[Assigned]:
        by_id = self.index.by_id
        if self.calibration is None:
            return [
                Assigned(c.tag, c.score, tag_level(c.tag, by_id))
                for c in r.candidates[: self.params.untuned_tags]
            ]
        decisions = self.pipeline.decide([r], by_id)
        return decisions[0] if decisions is not None else []

    def _logits(
        self, product: Product, tag_ids: list[str], by_tag: dict[str, Any]
    ) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """Rerank-stage logits and cross-encoder logits of the explained tags.

        Tags outside the reranked head are scored afresh by the cross-encoder; their stage logit is
        that score when the reranker ranks by the cross-encoder alone, and unknown (None) when it fuses
        the cross-encoder with first-stage scores that a tag outside the head does not have.
        """
        if self.reranker is None:
            return {t: None for t in tag_ids}, {t: None for t in tag_ids}
        stage: dict[str, float | None] = {}
        cross: dict[str, float | None] = {}
        todo = []
        for t in tag_ids:
            cand = by_tag.get(t, (None, None))[1]
            if cand is not None and cand.rerank_score is not None:
                stage[t], cross[t] = cand.rerank_score, cand.cross_score
            else:
                todo.append(t)
        scorer = self.reranker if isinstance(self.reranker, PairScorer) else None
        if todo and scorer is None:  # a reranker that cannot score single pairs: unknown
            stage.update({t: None for t in todo})
            cross.update({t: None for t in todo})
        elif todo and scorer is not None:
            fused = scorer.fusion_for(self.index) is not None
            text = scorer.product_texts([product])[0]
            scores = scorer.score_pairs([(text, tt) for tt in scorer.tag_texts(self.index, todo)])
            for t, value in zip(todo, scores.tolist(), strict=True):
                cross[t] = float(value)
                stage[t] = None if fused else float(value)
        return stage, cross


def _hierarchy(value: str) -> Hierarchy:
    if value not in ("close", "prune", "none"):
        raise ValueError(f"unknown hierarchy mode '{value}' (close, prune or none)")
    return value  # type: ignore[return-value]
