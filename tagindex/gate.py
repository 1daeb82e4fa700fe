"""Fits how tags without labelled examples compete with tags that have them (the zero-shot gate).

With exemplars in an index, a seen tag scores through its prototype and its neighbour votes, an
unseen tag through its text alone; text cosines run lower, so unseen tags rarely make the top of a
ranking even for products that belong to them. :class:`~tagindex.exemplars.ExemplarScorer` has two
terms for this, ``unseen_offset`` and ``parent_vote_weight``. This module fits them on a zero-shot
split simulated inside the exemplars themselves (never on evaluation data):

1. a seeded share of the leaf tags that have siblings and at least two exemplars is "held out": all
   their exemplars leave the pool and become the *unseen* queries;
2. as many exemplars of the remaining tags leave the pool as *seen* queries;
3. every grid point is scored from one pass over the components, and the point that finds the most
   unseen tags (recall@1) while costing the seen ones at most ``gate_seen_budget`` of recall@1 wins.
   The budget states the trade-off a catalog team can accept: a prior-free criterion such as the
   harmonic mean of seen and unseen recall (the usual generalised zero-shot score, also reported)
   gives new tags so much room that a quarter of the known tags' top-1 answers were lost on MWPD.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tagindex.config import ExemplarParams
from tagindex.exemplars import ExemplarScorer, ExemplarSet, most_specific
from tagindex.schema import Tag

logger = logging.getLogger(__name__)

OFFSETS = tuple(round(0.025 * i, 3) for i in range(41))  # 0 .. 1.0
PARENT_WEIGHTS = (0.0, 0.1, 0.25, 0.5)
MIN_ELIGIBLE = 5  # fewer eligible tags cannot make a meaningful simulated split


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def fit_gate(
    tags: Sequence[Tag],
    tag_vectors: np.ndarray,  # (n_tags, dim), rows aligned with ``tags``
    exemplars: ExemplarSet,
    params: ExemplarParams,
    heldout_fraction: float = 0.2,
    max_queries: int = 1000,
    seed: int = 13,
) -> tuple[ExemplarParams, dict[str, Any]]:
    """Chooses ``unseen_offset`` and ``parent_vote_weight`` for ``exemplars`` (see module docstring).

    Returns:
        The params with the two fitted values (unchanged when the data is too small: fewer than
        ``MIN_ELIGIBLE`` eligible tags), and a report with the grid's best point and the simulated
        seen/unseen recall before and after.
    """
    by_id = {t.id: t for t in tags}
    has_child = {t.parent for t in tags if t.parent is not None}
    labels = [most_specific(lab, by_id, has_child) for lab in exemplars.labels]
    count: dict[str, int] = {}
    for lab in labels:
        for t in lab:
            count[t] = count.get(t, 0) + 1
    siblings: dict[str, int] = {}
    for t in count:
        parent = by_id[t].parent
        if parent is not None and t not in has_child:
            siblings[parent] = siblings.get(parent, 0) + 1
    eligible = sorted(
        t
        for t, n in count.items()
        if n >= 2 and t not in has_child and siblings.get(by_id[t].parent or "", 0) >= 2
    )
    if len(eligible) < MIN_ELIGIBLE:
        reason = (
            f"{len(eligible)} eligible tag(s) (leaves with siblings and >= 2 exemplars), need {MIN_ELIGIBLE}"
        )
        logger.info("zero-shot gate not fitted: %s", reason)
        return params, {"fitted": False, "reason": reason}

    rng = np.random.default_rng(seed)
    n_held = max(1, int(round(heldout_fraction * len(eligible))))
    heldout = set(rng.choice(eligible, size=n_held, replace=False).tolist())
    unseen_rows = [i for i, lab in enumerate(labels) if heldout & set(lab)]
    others = [i for i, lab in enumerate(labels) if lab and not heldout & set(lab)]
    if len(unseen_rows) > max_queries:
        unseen_rows = sorted(rng.choice(unseen_rows, size=max_queries, replace=False).tolist())
    n_seen = min(len(unseen_rows), len(others) // 2)
    if n_seen == 0:
        reason = "no exemplars of other tags left to act as seen queries"
        logger.info("zero-shot gate not fitted: %s", reason)
        return params, {"fitted": False, "reason": reason}
    seen_rows = sorted(rng.choice(others, size=n_seen, replace=False).tolist())
    removed = set(seen_rows) | {i for i, lab in enumerate(labels) if heldout & set(lab)}
    pool_rows = [i for i in range(len(labels)) if i not in removed]
    pool = ExemplarSet(
        [exemplars.ids[i] for i in pool_rows],
        [exemplars.labels[i] for i in pool_rows],
        exemplars.vectors[pool_rows],
    )
    # Scored as the index will score them: the regime follows the full exemplar count.
    regime = params.for_exemplars(len(exemplars))
    scorer = ExemplarScorer(tags, tag_vectors, pool, regime)
    col = {t: j for j, t in enumerate(scorer.targets)}

    def components(rows: list[int]) -> tuple[np.ndarray, ...]:
        q = exemplars.vectors[rows]  # (b, dim)
        lam = scorer.lam[None, :]
        base = (1.0 - lam) * (q @ scorer.target_vectors.T) + lam * (q @ scorer.prototypes.T)  # (b, n_targets)
        votes = scorer.votes(q) if scorer.n_rows and regime.k > 0 else np.zeros_like(base)
        return (
            base + regime.vote_weight * votes,
            np.broadcast_to(1.0 - lam, base.shape),
            scorer.sibling_votes(votes),
        )

    unseen = components(unseen_rows)
    seen = components(seen_rows)
    unseen_gold = [[col[t] for t in labels[i] if t in heldout] for i in unseen_rows]
    seen_gold = [[col[t] for t in labels[i] if t in col] for i in seen_rows]

    def recall(
        parts: tuple[np.ndarray, ...], gold: list[list[int]], offset: float, weight: float
    ) -> tuple[float, float]:
        base, text_share, sibling = parts
        scores = base + offset * text_share + weight * sibling
        top = np.argsort(-scores, axis=1, kind="stable")[:, :5]  # (b, 5)
        at1 = np.mean([bool(set(g) & {int(top[r, 0])}) for r, g in enumerate(gold)])
        at5 = np.mean([bool(set(g) & set(top[r].tolist())) for r, g in enumerate(gold)])
        return float(at1), float(at5)

    grid = []
    for weight in PARENT_WEIGHTS:
        for offset in OFFSETS:
            u1, u5 = recall(unseen, unseen_gold, offset, weight)
            s1, s5 = recall(seen, seen_gold, offset, weight)
            grid.append(
                {
                    "unseen_offset": offset,
                    "parent_vote_weight": weight,
                    "unseen_recall@1": u1,
                    "unseen_recall@5": u5,
                    "seen_recall@1": s1,
                    "seen_recall@5": s5,
                    "harmonic_recall@1": _harmonic(u1, s1),
                }
            )
    before = grid[0]
    floor = before["seen_recall@1"] - params.gate_seen_budget
    allowed = [g for g in grid if g["seen_recall@1"] >= floor - 1e-9]
    # Ties go to the smallest change from plain exemplar scoring (grid order: weight, then offset).
    best = max(allowed, key=lambda g: (g["unseen_recall@1"], g["unseen_recall@5"]))
    fitted = replace(
        params, unseen_offset=best["unseen_offset"], parent_vote_weight=best["parent_vote_weight"]
    )
    report = {
        "fitted": True,
        "criterion": "most unseen recall@1 within the seen recall@1 budget, simulated zero-shot split",
        "seen_budget": params.gate_seen_budget,
        "eligible_tags": len(eligible),
        "heldout_tags": n_held,
        "unseen_queries": len(unseen_rows),
        "seen_queries": len(seen_rows),
        "pool": len(pool_rows),
        "seed": seed,
        "before": before,
        "best": best,
    }
    logger.info(
        "zero-shot gate: offset %.3f, parent vote %.2f; simulated R@1 unseen %.3f -> %.3f, seen %.3f -> %.3f",
        best["unseen_offset"],
        best["parent_vote_weight"],
        before["unseen_recall@1"],
        best["unseen_recall@1"],
        before["seen_recall@1"],
        best["seen_recall@1"],
    )
    return fitted, report
