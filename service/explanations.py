"""Why a tag was suggested, and whether to assign it: the seam where richer stages plug in.

The service asks an :class:`Explainer` for every suggested tag and a :class:`Decider` for a decision.
What ships here uses only what the core computes today:

- score parts: the bi-encoder cosine similarity (the only score the core has),
- the tag's path, and the words the product text and the tag text share,
- the tag's nearest neighbours in the vocabulary and how this product scores against them (how
  clearly the product prefers this tag over its closest alternatives),
- decisions by an operator-chosen similarity threshold (not a calibrated probability).

A reranker, calibrated probabilities or graph scores add their parts by registering another
explainer/decider (``register_explainer``, ``register_decider``) and naming it in the settings; the
response shapes (``parts`` is an open mapping) stay the same. :mod:`tagindex.service.stage` registers the
library's (``tagindex`` explainer, ``calibrated`` decider).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tagindex.interfaces import Decider
from tagindex.registry import DECIDERS, EXPLAINERS
from tagindex.schema import Product, TagResult
from tagindex.text import word_key

_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "this",
        "that",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "not",
        "but",
        "you",
        "your",
        "our",
        "its",
        "per",
        "all",
        "any",
        "can",
        "will",
        "into",
        "over",
        "more",
        "most",
        "other",
        "some",
        "such",
        "than",
        "too",
        "very",
        "one",
        "two",
        "new",
    ]
)


@dataclass
class ExplainContext:
    """What the explainer may read for one product."""

    product: Product
    text: str  # the encoder input built from the product
    vector: np.ndarray  # (dim,) unit product vector
    result: TagResult


@dataclass
class TagExplanation:
    """Evidence for one suggested tag; ``parts`` maps score names to values."""

    parts: dict[str, float]
    path: list[str] = field(default_factory=list)
    matched_terms: list[str] = field(default_factory=list)
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    inherited_from: str | None = None
    notes: list[str] = field(default_factory=list)
    words: list[dict[str, Any]] = field(default_factory=list)  # {word, position, effect} by occlusion
    examples: list[dict[str, Any]] = field(default_factory=list)  # nearest labelled products {id, title, ...}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "parts": {k: round(float(v), 6) for k, v in self.parts.items()},
            "path": self.path,
            "matched_terms": self.matched_terms,
            "neighbours": self.neighbours,
            "words": self.words,
            "examples": self.examples,
        }
        if self.inherited_from is not None:
            out["inherited_from"] = self.inherited_from
        if self.notes:
            out["notes"] = self.notes
        return out


class Explainer(Protocol):
    """Explains every tag of a product's result, keyed by tag id (the service's refinement of
    :class:`tagindex.interfaces.Explainer`)."""

    name: str

    def explain(self, ctx: ExplainContext) -> dict[str, TagExplanation]: ...


def terms(text: str) -> dict[str, str]:
    """Content words by their :func:`tagindex.text.word_key` ("rings" and "ring" share one, as do
    "accessories" and "accessory"), each with the first form the text writes, which is what is shown."""
    out: dict[str, str] = {}
    for w in _WORD.findall(text.casefold()):
        if len(w) < 3 or w in _STOP or w.isdigit():
            continue
        out.setdefault(word_key(w), w)
    return out


def shared_terms(product: dict[str, str], tag: dict[str, str]) -> list[str]:
    """The product's words (as it writes them) whose keys the tag text has too, sorted."""
    return sorted(product[key] for key in product.keys() & tag.keys())


class SimilarityExplainer:
    """Explanations from the bi-encoder alone (see the module docstring)."""

    name = "similarity"

    def __init__(self, engine: Any, neighbours: int = 3) -> None:
        self.engine = engine
        self.k = neighbours

    def explain(self, ctx: ExplainContext) -> dict[str, TagExplanation]:
        ranked = [t for t in ctx.result.tags if t.ancestor_of is None]
        near = self.engine.neighbours([t.tag for t in ranked], self.k, ctx.vector)
        matched = self.engine.title_match(ctx.product, ctx.vector, [t.tag for t in ranked])
        sources = self.engine.title_match_sources(ctx.product) if matched else {}
        product_terms = terms(ctx.text)
        out: dict[str, TagExplanation] = {}
        for t in ctx.result.tags:
            path = self.engine.path(t.tag)
            if t.ancestor_of is not None:
                out[t.tag] = TagExplanation(
                    parts={"bi_encoder_similarity": t.score},
                    path=path,
                    inherited_from=t.ancestor_of,
                    notes=[f"ancestor of '{t.ancestor_of}'; carries its score"],
                )
                continue
            shared = shared_terms(product_terms, terms(self.engine.tag_text(t.tag)))
            parts = {"bi_encoder_similarity": t.score}
            notes = []
            if t.tag in matched:  # an adapted index: the score includes the title match's share
                parts["title_match"] = matched[t.tag]
                found = sources.get(t.tag, {})
                where = f"the shop's category '{found['category']}'" if "category" in found else "the title"
                if "lent" in found:
                    lent = found["lent"]
                    notes.append(f"{where} names '{lent}', a kind of this tag lent by the grafted taxonomy")
                elif "category" in found:
                    notes.append(f"{where} names this tag's product type (the title names none)")
                elif matched[t.tag] > 0:
                    notes.append("the title names this tag's product type (head noun or attribute value)")
            out[t.tag] = TagExplanation(
                parts=parts,
                path=path,
                matched_terms=shared,
                notes=notes,
                neighbours=[
                    {
                        "tag": n.tag,
                        "name": n.name,
                        "tag_similarity": round(n.score, 6),
                        "product_similarity": round(product_sim, 6),
                        "margin": round(t.score - product_sim, 6),
                    }
                    for n, product_sim in near.get(t.tag, [])
                ],
            )
        return out


class ThresholdDecider:
    """Accept a tag whose bi-encoder similarity reaches the threshold; everything else goes to review.

    Ancestors carry their descendant's score, so an accepted tag's path is accepted with it.
    """

    name = "threshold"
    needs_threshold = True

    def __init__(self, engine: Any = None) -> None:
        """The engine is not needed: the decision reads the result alone."""

    def decide(self, result: TagResult, threshold: float | None) -> dict[str, tuple[str, str]]:
        if threshold is None:
            raise ValueError("the threshold decider needs an accept threshold")
        out: dict[str, tuple[str, str]] = {}
        for t in result.tags:
            if t.score >= threshold:
                out[t.tag] = ("accept", f"similarity {t.score:.3f} >= threshold {threshold:.3f}")
            elif t.tag not in out:
                out[t.tag] = ("review", f"similarity {t.score:.3f} < threshold {threshold:.3f}")
        return out


def register_explainer(name: str, factory: Callable[[Any], Explainer] | str) -> None:
    """Makes ``factory(engine)`` available as ``TAGINDEX_EXPLAINER=name`` (in
    :data:`tagindex.registry.EXPLAINERS`, which lists the built-in ones)."""
    EXPLAINERS.register(name, factory)


def register_decider(name: str, factory: Callable[[Any], Decider] | str) -> None:
    """Makes ``factory(engine)`` available as ``TAGINDEX_DECIDER=name`` (in
    :data:`tagindex.registry.DECIDERS`, which lists the built-in ones)."""
    DECIDERS.register(name, factory)


def make_explainer(name: str, engine: Any) -> Explainer:
    explainer: Explainer = EXPLAINERS.get(name)(engine)
    return explainer


def make_decider(name: str, engine: Any) -> Decider:
    decider: Decider = DECIDERS.get(name)(engine)
    return decider
