"""Tagging settings for a target precision, chosen on labelled products (as Annif's ``optimize``).

:func:`optimize` searches the settings ``tagindex tag`` takes (``--top-k``, ``--threshold``,
``--per-kind`` limits and thresholds, the category title weight) by coordinate ascent: from the
defaults, each setting in turn is set to the value that best meets the objective while the others
stay fixed, for a few rounds. The objective is the highest micro recall among settings whose micro
precision reaches the target, or (none reaching it) the highest precision.

Honesty: the settings are chosen on one set of products and measured on another (``report``),
never on the products they were chosen on alone; both measurements are returned.

A tag counts as right when it is one of the product's gold tags or an ancestor of one; recall is
over the gold tags and their ancestors. In a hierarchy, adding each kept tag's ancestors
(``--ancestors``) is one of the settings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from tagindex.candidates import RankedCandidates, insert_ancestors, positives_of
from tagindex.errors import InputError
from tagindex.kinds import DEFAULT_POOL, PATH_KINDS, KindPolicy, KindRule, RescoredKinds, rescore, title_texts
from tagindex.schema import Product, Tag

logger = logging.getLogger(__name__)

TOP_KS = (1, 2, 3, 4, 5, 7, 10)
KIND_LIMITS = (None, 0, 1, 2, 3, 5)
TITLE_WEIGHTS = (0.0, 0.5)
# Score quantiles tried as thresholds; the top ones let a high precision target cut deep.
QUANTILES = np.concatenate([np.linspace(0.05, 0.95, 19), [0.975, 0.99]])
ROUNDS = 3


@dataclass(frozen=True)
class Settings:
    """What ``tagindex tag`` reads: top-k, global threshold and the per-kind policy."""

    top_k: int = 10
    threshold: float | None = None
    rules: tuple[tuple[str, KindRule], ...] = ()
    title_weight: float = 0.0
    ancestors: bool = False

    def policy(self) -> KindPolicy | None:
        rules = {k: r for k, r in self.rules if r.limit is not None or r.threshold is not None}
        if not rules and self.title_weight == 0.0:
            return None
        return KindPolicy(rules, (), self.title_weight)

    def to_dict(self) -> dict[str, Any]:
        """The tagging settings saved with an index (the option names of ``tagindex tag``)."""
        out: dict[str, Any] = {"top_k": self.top_k, "threshold": self.threshold}
        if self.ancestors:
            out["ancestors"] = True
        policy = self.policy()
        if policy is not None:
            out["per_kind"] = policy.spec() or None
            out["category_title_weight"] = policy.title_weight or None
        return {k: v for k, v in out.items() if v is not None}

    def with_rule(self, kind: str, rule: KindRule) -> Settings:
        rules = dict(self.rules)
        rules[kind] = rule
        rules = {k: r for k, r in rules.items() if r.limit is not None or r.threshold is not None}
        return replace(self, rules=tuple(sorted(rules.items())))

    def rule(self, kind: str) -> KindRule:
        return dict(self.rules).get(kind, KindRule())


@dataclass(frozen=True)
class Measured:
    """Micro precision and recall of a setting on a set of products."""

    precision: float
    recall: float
    products: int
    assigned: int

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "products": self.products,
            "tags_per_product": round(self.assigned / max(self.products, 1), 3),
        }


@dataclass
class Prepared:
    """One set of products ranked once: candidates (the policy pool) and, per title weight, the
    exact category scores."""

    positives: list[set[str]]
    ranked: list[RankedCandidates]
    rescored: dict[float, RescoredKinds | None] = field(default_factory=dict)


@dataclass
class OptimizeResult:
    """The chosen settings with their measurements (``choose``: where chosen; ``report``: held out)."""

    settings: Settings
    target_precision: float
    choose: Measured
    report: Measured
    baseline_report: Measured
    reached: bool
    evaluations: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "target_precision": self.target_precision,
            "reached_on_choose": self.reached,
            "choose": self.choose.to_dict(),
            "report": self.report.to_dict(),
            "baseline_report": self.baseline_report.to_dict(),
            "evaluations": self.evaluations,
            "seconds": round(self.seconds, 1),
        }


def prepare(
    pipeline: Any, products: Sequence[Product], by_id: Mapping[str, Tag], weights: Sequence[float]
) -> Prepared:
    """Ranks ``products`` once through ``pipeline`` (a :class:`tagindex.pipeline.TaggingPipeline`)."""
    index = pipeline.index
    vectors = index.encode_products(products)
    pool = min(DEFAULT_POOL, len(index))
    ranked = pipeline.rank(products, pool, vectors=vectors)
    prepared = Prepared([positives_of(p, by_id) for p in products], ranked)
    titles = None
    for w in weights:
        if w == 0.0:
            prepared.rescored[w] = None
            continue
        if titles is None:
            titles = index.encoder.encode(title_texts(products, index.params.text))
            if index.fusion is not None:
                titles = index.fusion.fuse_products(products, titles)
        policy = KindPolicy({}, (), w)
        prepared.rescored[w] = rescore(policy, index.tags, index.tag_vectors_matrix, vectors, titles)
    return prepared


def measure(settings: Settings, prepared: Prepared, by_id: Mapping[str, Tag]) -> Measured:
    """Precision and recall of ``settings`` on prepared products (as ``tagindex tag`` would tag them)."""
    policy = settings.policy()
    if policy is None:
        kept = [r.candidates[: settings.top_k] for r in prepared.ranked]
    else:
        rescored = prepared.rescored.get(settings.title_weight)
        kept = [r.candidates for r in policy.select(prepared.ranked, by_id, settings.top_k, rescored)]
    right = assigned = gold = 0
    threshold, hierarchy = settings.threshold, by_id if settings.ancestors else None
    for cands, positives in zip(kept, prepared.positives, strict=True):
        # as TaggingPipeline.result: the threshold, then each kept tag's ancestors after it
        pairs = [(c.tag, c.score) for c in cands if threshold is None or c.score >= threshold]
        tags = [row.tag for row in insert_ancestors(pairs, _no_name, hierarchy)]
        assigned += len(tags)
        right += sum(t in positives for t in tags)
        gold += len(positives)
    return Measured(right / assigned if assigned else 0.0, right / gold if gold else 0.0, len(kept), assigned)


def _no_name(tag_id: str) -> str:
    return ""


def _kind_moves(b: Settings, kind: str, values: Sequence[float | None]) -> list[Settings]:
    return [b.with_rule(kind, KindRule(n, t)) for n in KIND_LIMITS for t in values]


def _key(m: Measured, target: float) -> tuple[int, float, float]:
    return (1, m.recall, m.precision) if m.precision >= target else (0, m.precision, m.recall)


def _quantiles(values: list[float]) -> list[float]:
    if not values:
        return []
    return sorted({round(float(v), 4) for v in np.quantile(np.array(values), QUANTILES)})


def optimize(
    pipeline: Any,
    choose: Sequence[Product],
    report: Sequence[Product],
    target_precision: float,
) -> OptimizeResult:
    """Chooses settings on ``choose`` for ``target_precision`` and measures them on ``report``.

    Args:
        pipeline: A :class:`tagindex.pipeline.TaggingPipeline` (its reranker, if any, is used).
        choose: Labelled products the settings are chosen on.
        report: Other labelled products the chosen settings are measured on.
        target_precision: Micro precision to reach, in (0, 1].

    Raises:
        InputError: No labelled product with a gold tag of this index in one of the two sets.
    """
    start = time.perf_counter()
    index = pipeline.index
    by_id = index.by_id
    for name, products in (("choose", choose), ("report", report)):
        if not any(positives_of(p, by_id) for p in products):
            raise InputError(f"no {name} product has a gold tag of this index: nothing to optimize on")
    kinds = sorted({t.kind for t in by_id.values()})
    rescorable = not (
        pipeline.reranker is not None or index.scorer() is not None or index.adjuster is not None
    )
    weights = TITLE_WEIGHTS if rescorable and PATH_KINDS & set(kinds) else (0.0,)
    chosen_set = prepare(pipeline, choose, by_id, weights)
    report_set = prepare(pipeline, report, by_id, weights)
    scores = [c.score for r in chosen_set.ranked for c in r.candidates[: max(TOP_KS)]]
    thresholds: list[float | None] = [None, *_quantiles(scores)]
    kind_thresholds: dict[str, list[float | None]] = {}
    for kind in kinds:
        kind_scores = [c.score for r in chosen_set.ranked for c in r.candidates if by_id[c.tag].kind == kind]
        kind_thresholds[kind] = [None, *_quantiles(kind_scores)[::2]]
    evaluations = 0
    cache: dict[Settings, Measured] = {}

    def score(s: Settings) -> Measured:
        nonlocal evaluations
        if s not in cache:
            cache[s] = measure(s, chosen_set, by_id)
            evaluations += 1
        return cache[s]

    # Kinds first: from the defaults (ten tags), a small top-k alone would reach a precision target by
    # leaving no room for a second kind, a local optimum the other moves cannot leave.
    hierarchical = any(t.parent is not None for t in by_id.values())
    moves: list[Callable[[Settings], list[Settings]]] = [
        lambda b: [replace(b, ancestors=a) for a in ((False, True) if hierarchical else (False,))]
    ]
    moves += [partial(_kind_moves, kind=kind, values=kind_thresholds[kind]) for kind in kinds]
    moves += [
        lambda b: [replace(b, title_weight=w) for w in weights],
        lambda b: [replace(b, top_k=k) for k in TOP_KS],
        lambda b: [replace(b, threshold=t) for t in thresholds],
    ]
    best = Settings()
    for _ in range(ROUNDS):
        before = best
        for move in moves:  # each setting in turn, the others as they are now
            best = max([best, *move(best)], key=lambda s: _key(score(s), target_precision))
        if best == before:
            break
    chosen = score(best)
    result = OptimizeResult(
        best,
        target_precision,
        chosen,
        measure(best, report_set, by_id),
        measure(Settings(), report_set, by_id),
        chosen.precision >= target_precision,
        evaluations,
        time.perf_counter() - start,
    )
    logger.debug("optimize: %s", result.to_dict())
    return result
