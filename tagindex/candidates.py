"""Candidate tags of one product with the score of each stage that saw them, and the run-file shape.

The first stage (the bi-encoder index) proposes candidates; a reranker may rescore the head of the
list; a calibration turns scores into decisions. :func:`with_ancestors` / :func:`insert_ancestors` is
the one place ancestor rows are inserted into a ranked list (the plain ``TagIndex.tag`` path uses it
too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tagindex.schema import Product, Tag, TagResult, TagScore
from tagindex.text import ancestors


@dataclass
class Candidate:
    """One candidate tag with the score of each stage that saw it.

    Attributes:
        tag: Tag id.
        bi_score: Bi-encoder cosine similarity.
        rerank_score: The rerank stage's logit: the cross-encoder logit, fused with the bi-encoder
            score when the reranker carries fusion weights; None beyond the rerank depth.
        score: The score the candidate is ranked by (sigmoid of ``rerank_score`` in the head; see
            :meth:`Reranker.rerank` for the tail).
        cross_score: The cross-encoder's own logit (None beyond the rerank depth).
    """

    tag: str
    bi_score: float
    rerank_score: float | None = None
    score: float = 0.0
    cross_score: float | None = None


@dataclass
class RankedCandidates:
    """All candidates of one product, best first."""

    id: str
    candidates: list[Candidate] = field(default_factory=list)

    def to_result(self, names: dict[str, str] | None = None) -> TagResult:
        names = names or {}
        return TagResult(self.id, [TagScore(c.tag, c.score, names.get(c.tag, "")) for c in self.candidates])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def from_bi_encoder(results: Sequence[TagResult]) -> list[RankedCandidates]:
    """Wraps bi-encoder results (no ancestor rows) as candidates ranked by the bi-encoder score."""
    out = []
    for r in results:
        out.append(
            RankedCandidates(
                r.id,
                [
                    Candidate(t.tag, float(t.score), None, float(t.score))
                    for t in r.tags
                    if t.ancestor_of is None
                ],
            )
        )
    return out


def scaled_tail(tail: list[Candidate], head: list[Candidate]) -> list[Candidate]:
    """Tail candidates in bi-encoder order, scores scaled into [0, lowest head score)."""
    if not tail:
        return []
    floor = min((c.score for c in head), default=1.0)
    top = max(tail[0].bi_score, 1e-9)
    out = []
    for c in tail:
        scaled = floor * min(max(c.bi_score / top, 0.0), 1.0) * 0.999
        out.append(Candidate(c.tag, c.bi_score, None, scaled))
    return out


def positives_of(product: Product, by_id: Mapping[str, Any]) -> set[str]:
    """A product's gold tags known to the index, with their ancestors (an ancestor is never a negative)."""
    out: set[str] = set()
    for t in product.tags:
        if t in by_id:
            out.add(t)
            out.update(ancestors(t, by_id))
    return out


def insert_ancestors(
    ranked: Iterable[tuple[str, float]],
    name: Callable[[str], str],
    by_id: Mapping[str, Tag] | None,
    threshold: float | None = None,
) -> list[TagScore]:
    """Run-file rows of a ranked list (best first): repeats dropped, and with ``by_id`` each tag's
    ancestors inserted right after it with its score (``ancestor_of`` set), unless already shown.

    Args:
        ranked: (tag id, score) pairs, best first.
        name: Tag id -> display name.
        by_id: Tag id -> Tag for the ancestor rows; None inserts none.
        threshold: Stop at the first score below it (the list is sorted by score).
    """
    out: list[TagScore] = []
    seen: set[str] = set()
    for tag_id, score in ranked:
        if threshold is not None and score < threshold:
            break
        if tag_id in seen:
            continue
        seen.add(tag_id)
        out.append(TagScore(tag_id, score, name(tag_id)))
        if by_id is not None:
            for anc in ancestors(tag_id, by_id):
                if anc not in seen:
                    seen.add(anc)
                    out.append(TagScore(anc, score, name(anc), ancestor_of=tag_id))
    return out


def with_ancestors(ranked: RankedCandidates, by_id: Mapping[str, Tag], names: Mapping[str, str]) -> TagResult:
    """Run-file result with each ranked tag's ancestors inserted right after it (as ``TagIndex.tag``)."""
    rows = insert_ancestors(((c.tag, c.score) for c in ranked.candidates), lambda t: names.get(t, ""), by_id)
    return TagResult(ranked.id, rows)


def scored_pairs(ranked: RankedCandidates, score: str) -> list[tuple[str, float]]:
    """(tag, score) pairs of a product's candidates carrying the score a calibration reads: only
    reranked candidates for ``rerank``, all for ``bi_encoder``."""
    if score == "rerank":
        return [(c.tag, c.rerank_score) for c in ranked.candidates if c.rerank_score is not None]
    return [(c.tag, c.bi_score) for c in ranked.candidates]


def tag_level(tag_id: str, by_id: Mapping[str, Tag]) -> int:
    """Depth of a tag in its hierarchy (0 for a root)."""
    return len(ancestors(tag_id, by_id))


def assign(
    ranked: Sequence[RankedCandidates], calibration: Any, by_id: Mapping[str, Tag], hierarchy: str = "close"
) -> list[list[Any]]:
    """Calibrated decisions (``Calibration.decide``) for many products' candidates."""
    return [calibration.decide(scored_pairs(r, calibration.score), by_id, hierarchy) for r in ranked]
