"""Hierarchy-aware decoding: a tag's score is aggregated along its path from the root.

``path(t) = w * s(t) + (1 - w) * mean(s(a) for a in ancestors(t))`` (roots keep their own score), so a
leaf needs its ancestors' support and abstract parent names still carry signal. Computed level by
level with parent indices, so it costs O(products x tags) without a tags x tags matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagindex.schema import Tag


def parent_rows(tags: Sequence[Tag]) -> np.ndarray:
    """Row of each tag's parent (-1 for roots and parents outside the vocabulary)."""
    row = {t.id: i for i, t in enumerate(tags)}
    return np.array([row.get(t.parent, -1) if t.parent is not None else -1 for t in tags], dtype=np.int64)


def depth_order(parents: np.ndarray) -> list[np.ndarray]:
    """Rows grouped by depth (0 = roots), so every parent is processed before its children.

    Raises:
        ValueError: The parent links form a cycle.
    """
    depth = np.full(len(parents), -1, dtype=np.int64)
    depth[parents < 0] = 0
    for _ in range(len(parents) + 1):
        todo = depth < 0
        if not todo.any():
            break
        ready = todo & (depth[np.maximum(parents, 0)] >= 0) & (parents >= 0)
        if not ready.any():
            raise ValueError("the tag hierarchy has a cycle")
        depth[ready] = depth[parents[ready]] + 1
    return [np.flatnonzero(depth == d) for d in range(int(depth.max(initial=0)) + 1)]


def leaves_mask(parents: np.ndarray) -> np.ndarray:
    """True for tags that no other tag names as its parent."""
    mask = np.ones(len(parents), dtype=bool)
    mask[parents[parents >= 0]] = False
    return mask


def fixed_depth(parents: np.ndarray, share: float = 0.95) -> bool:
    """Whether the vocabulary is a fixed-level classification (GS1's segment > family > class,
    UNSPSC): it has parent links and at least ``share`` of its leaves sit at one depth below the
    roots. There, products are classified at the bottom level, and an inner tag is a grouping rather
    than an answer. In a ragged taxonomy (Shopify's, Google's: leaves at depths 1 to 7) an inner
    category is itself a product type ("Hats" above "Top Hats") and a valid answer.
    """
    if not (parents >= 0).any():
        return False
    depth = np.zeros(len(parents), dtype=np.int64)
    for d, rows in enumerate(depth_order(parents)):
        depth[rows] = d
    leaf_depths = depth[leaves_mask(parents)]
    counts = np.bincount(leaf_depths)
    modal = int(counts.argmax())
    return bool(modal > 0 and counts[modal] >= share * len(leaf_depths))


def path_scores(scores: np.ndarray, parents: np.ndarray, weight: float) -> np.ndarray:
    """Aggregates scores (n, tags) along each tag's path; returns a new (n, tags) array."""
    if not (parents >= 0).any() or weight >= 1.0:
        return scores
    anc_sum = np.zeros_like(scores)
    anc_cnt = np.zeros(scores.shape[1], dtype=np.float32)
    for rows in depth_order(parents)[1:]:
        par = parents[rows]
        anc_sum[:, rows] = anc_sum[:, par] + scores[:, par]
        anc_cnt[rows] = anc_cnt[par] + 1
    out = scores.copy()
    has = anc_cnt > 0
    out[:, has] = weight * scores[:, has] + (1.0 - weight) * anc_sum[:, has] / anc_cnt[has]
    return out
