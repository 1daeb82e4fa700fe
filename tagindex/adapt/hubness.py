"""Hubness correction: each tag's similarities are normalised by its distribution over the catalog.

A few generic tag texts sit close to everything ("hubs") and enter the top 5 of unrelated products.
Two per-tag normalisations, fitted on the unlabelled catalog and applied at query time:

- ``csls``: ``s - r_t`` with ``r_t`` the mean similarity of tag t to its k nearest catalog products
  (cross-domain similarity local scaling; the product's own term is constant per query and dropped);
- ``zscore``: ``(s - mean_t) / std_t`` over all catalog products.

A third, optional ingredient works on the final adapted scores (after the normalisation and the
hierarchy decoding): the k-occurrence cap (:func:`fit_occurrence_cap`), a per-tag additive penalty
so that no tag sits in the top k of more catalog products than its estimated prevalence allows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

_CHUNK = 2048  # catalog rows per matrix product, bounding memory to chunk x tags floats
_EPS_SHARE = 0.03  # see fit_occurrence_cap: 0.03 settled MWPD's catalog in ~30 steps, 0.001 in ~70


def fit_hubness(
    catalog: np.ndarray, tag_vectors: np.ndarray, method: str, k: int = 10, weight: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag ``(bias, scale)`` so that the adjusted score is ``(s - bias) / scale``.

    Args:
        catalog: Unit product vectors (n, dim).
        tag_vectors: Unit tag vectors (tags, dim).
        method: ``none``, ``csls`` or ``zscore``.
        k: Neighbours per tag for ``csls``.
        weight: Strength in [0, 1]: the CSLS penalty is ``weight * r_t``; for ``zscore`` the mean and
            the standard deviation are moved from (0, 1) toward their fitted values by ``weight``.
    """
    n_tags = len(tag_vectors)
    bias = np.zeros(n_tags, dtype=np.float32)
    scale = np.ones(n_tags, dtype=np.float32)
    if method == "none" or len(catalog) == 0:
        return bias, scale
    if method not in ("csls", "zscore"):
        raise ValueError(f"unknown hubness method '{method}'; known: none, csls, zscore")
    k = max(1, min(k, len(catalog)))
    total = np.zeros(n_tags, dtype=np.float64)
    total_sq = np.zeros(n_tags, dtype=np.float64)
    top = np.full((0, n_tags), -np.inf, dtype=np.float32)
    for start in range(0, len(catalog), _CHUNK):
        sims = catalog[start : start + _CHUNK] @ tag_vectors.T  # (chunk, tags)
        if method == "zscore":
            total += sims.sum(axis=0)
            total_sq += np.square(sims, dtype=np.float64).sum(axis=0)
        else:
            both = np.concatenate([top, sims])
            top = -np.partition(-both, k - 1, axis=0)[:k] if len(both) > k else both
    if method == "zscore":
        mean = total / len(catalog)
        std = np.sqrt(np.maximum(total_sq / len(catalog) - mean**2, 1e-12))
        std = np.maximum(std, 1e-3)
        return (weight * mean).astype(np.float32), (1.0 - weight + weight * std).astype(np.float32)
    return (weight * top.mean(axis=0)).astype(np.float32), scale


def fit_occurrence_cap(
    scores: Callable[[np.ndarray], np.ndarray],
    n_products: int,
    n_tags: int,
    k: int = 5,
    limit: float = 0.05,
    factor: float = 2.0,
    iterations: int = 100,
    candidates: int = 64,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-tag penalties capping how many catalog products have each tag in their top ``k``.

    A tag's cap is ``max(limit, factor * prevalence)`` of the catalog, its prevalence estimated
    without labels as its share of the catalog's top-1 answers before the cap: a tag that wins its
    own products may also be their runner-up now and then; a hub that is everybody's runner-up
    ("in every top 5, rarely first") may not.

    The penalties only rise, from 0, each step by what an offending tag needs to leave the top k of
    its surplus products (its smallest margins over the product's (k+1)-th tag) given the others'
    current penalties, plus a small epsilon that doubles while the tag stays over its cap (an
    auction's bidding increment). A tag's top-k count can only grow when other tags are penalised,
    so the steps stay close to the smallest penalties that satisfy every cap, and a tag that never
    exceeds its cap keeps penalty 0. Each product keeps its best ``k + candidates`` tags before the
    cap; rows whose (k+1)-th capped score falls below that floor are rescored in full (exact).

    Args:
        scores: Adapted scores (rows, n_tags) of the catalog products with the given row indices.
        n_products: Catalog size.
        n_tags: Number of rankable tags (columns of ``scores``).
        k: The top-k that is capped.
        limit: Share of the catalog every tag may reach whatever its prevalence (raised to twice
            the fair share ``2 k / n_tags`` when lower: only a tag above that is a hub).
        factor: Multiple of the estimated prevalence a tag may reach.
        iterations: Update steps at most (each one pass over the candidates).
        candidates: Tags kept per product beyond ``k``.
        groups: Group id (n_tags,) per tag whose prevalence a tag takes (e.g. its parent, so that
            siblings confused with each other share their family's share); None: each tag its own.

    Returns:
        Penalties (n_tags,) to subtract from the adapted scores, and a JSON-ready report.
    """
    penalty = np.zeros(n_tags, dtype=np.float32)
    report: dict[str, Any] = {"k": k, "limit": limit, "factor": factor, "n_catalog": n_products}
    if n_products == 0 or k >= n_tags:
        report["penalised_tags"] = 0
        return penalty, report
    m = min(n_tags, k + 1 + candidates)
    cand_rows = np.empty((n_products, m), dtype=np.int64)
    cand_vals = np.empty((n_products, m), dtype=np.float32)
    for start in range(0, n_products, _CHUNK):
        chunk = scores(np.arange(start, min(start + _CHUNK, n_products)))
        part = np.argpartition(-chunk, m - 1, axis=1)[:, :m] if m < n_tags else np.argsort(-chunk, axis=1)
        vals = np.take_along_axis(chunk, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        cand_rows[start : start + len(chunk)] = np.take_along_axis(part, order, axis=1)
        cand_vals[start : start + len(chunk)] = np.take_along_axis(vals, order, axis=1)
    # Every tag outside a product's candidates scores at most the last candidate's uncapped score.
    floor = cand_vals[:, -1] if m < n_tags else np.full(n_products, -np.inf, dtype=np.float32)
    prevalence: np.ndarray = np.bincount(cand_rows[:, 0], minlength=n_tags) / n_products
    if groups is not None:
        group = np.unique(groups, return_inverse=True)[1]
        prevalence = np.bincount(group, weights=prevalence)[group]
    if limit * n_tags < 2 * k:
        # A hub is a tag in more than twice its fair share (k / n_tags) of the top-k lists; a limit
        # below that would make ordinary tags of a small vocabulary offenders, and below k / n_tags
        # there would not be enough top-k places for all products.
        limit = min(2 * k / n_tags, 1.0)
        report["limit_raised_to"] = limit
    cap_share = np.minimum(np.maximum(limit, factor * prevalence), 1.0)
    # At least one product each: in a tiny catalog a share of it can round to none.
    cap = np.maximum(np.floor(cap_share * n_products + 1e-9), 1).astype(np.int64)
    # Each raise goes a little past the margin it needs (a share of the typical gap between a
    # product's best and (k+1)-th tag): ties break away from the penalised tag in float32, and tags
    # competing for the same products settle in a few steps instead of outbidding each other by
    # rounding errors (the epsilon of an auction).
    gap = float(np.median(cand_vals[:, 0] - cand_vals[:, k]))
    eps = max(_EPS_SHARE * gap, float(max(np.abs(cand_vals[:, 0]).max(), 1.0)) * 1e-5)

    def top_k1(pen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k tag rows, their capped scores and the (k+1)-th capped score of every product."""
        rows = np.empty((n_products, k + 1), dtype=np.int64)
        vals = np.empty((n_products, k + 1), dtype=np.float32)
        capped = cand_vals - pen[cand_rows]
        part = np.argpartition(-capped, k, axis=1)[:, : k + 1]
        rows[:] = np.take_along_axis(cand_rows, part, axis=1)
        vals[:] = np.take_along_axis(capped, part, axis=1)
        inexact = np.flatnonzero(vals.min(axis=1) < floor)
        for start in range(0, len(inexact), _CHUNK):
            sel = inexact[start : start + _CHUNK]
            full = scores(sel) - pen
            best = np.argpartition(-full, k, axis=1)[:, : k + 1]
            rows[sel] = best
            vals[sel] = np.take_along_axis(full, best, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        rows = np.take_along_axis(rows, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        return rows[:, :k], vals[:, :k], vals[:, k]

    pen = np.zeros(n_tags, dtype=np.float32)
    streak = np.zeros(n_tags, dtype=np.int64)
    rows, vals, next_best = top_k1(pen)
    start_counts = count = np.bincount(rows.ravel(), minlength=n_tags)
    steps = 0
    for _ in range(iterations):
        surplus = count - cap
        if (surplus <= 0).all():
            break
        steps += 1
        # For each offending tag: its margins over the (k+1)-th tag in the products whose top k it is
        # in; leaving its `surplus` smallest-margin products needs the surplus-th smallest margin.
        tag = rows.ravel()
        margin = (vals - next_best[:, None]).ravel()
        keep = surplus[tag] > 0
        tag, margin = tag[keep], margin[keep]
        order = np.lexsort((margin, tag))
        tag, margin = tag[order], margin[order]
        starts = np.flatnonzero(np.r_[True, tag[1:] != tag[:-1]])
        offenders = tag[starts]
        needed = margin[starts + surplus[offenders] - 1]
        # A tag over its cap step after step is in a bidding war with tags close to it (hubs near the
        # catalog's mean): its extra step doubles while it stays over (reset once it is under; never
        # resetting settles wars faster but overshot MWPD's catalog: 59 tags penalised instead of 41).
        streak[offenders] += 1
        streak[surplus <= 0] = 0
        pen[offenders] += needed + eps * np.exp2(np.minimum(streak[offenders] - 1, 30))
        rows, vals, next_best = top_k1(pen)
        count = np.bincount(rows.ravel(), minlength=n_tags)
    still = int((count > cap).sum())
    if still:
        logger.warning("occurrence cap: %d tag(s) still above their cap after %d steps", still, iterations)
    share = count / n_products
    before = start_counts / n_products
    report.update(
        {
            "steps": steps,
            "penalised_tags": int((pen > 0).sum()),
            "tags_over_cap_before": int((start_counts > cap).sum()),
            "tags_over_cap_after": still,
            "tags_over_limit_before": int((before > limit).sum()),
            "tags_over_limit_after": int((share > limit).sum()),
            "max_share_before": round(float(before.max()), 4),
            "max_share_after": round(float(share.max()), 4),
        }
    )
    return pen, report


def k_occurrence(top_ids: list[list[str]], k: int = 5) -> dict[str, float]:
    """Share of products in whose top ``k`` each tag appears (hubs have high shares)."""
    counts: dict[str, int] = {}
    for row in top_ids:
        for tag in dict.fromkeys(row[:k]):
            counts[tag] = counts.get(tag, 0) + 1
    n = max(len(top_ids), 1)
    return {t: c / n for t, c in sorted(counts.items(), key=lambda x: -x[1])}
