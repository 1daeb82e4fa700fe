"""Self-training without labels: confident pseudo-labels move each tag's vector toward its products.

One round: score the catalog with the current tag vectors (hubness + hierarchy), take each product's
best tag as its pseudo-label, keep per tag the ``confident_share`` of its products with the largest
top-1 margin ("core" products, as TaxoClass's core classes), and set every tag's vector to

    v_t = normalise((1 - w_t) * text_t + w_t * centroid_t),   w_t = weight * n_t / (n_t + shrinkage)

where ``centroid_t`` averages the confident products of t and of its descendants. Rounds repeat until
the share of products keeping their pseudo-label reaches ``min_agreement``. Contrastive fine-tuning
of the encoder on the same pseudo-labels (tagindex.train) is done by :mod:`tagindex.adapt.pipeline`.
"""

from __future__ import annotations

import numpy as np

from tagindex.encoders import normalize

_CHUNK = 2048


def pseudo_labels(top_scores: np.ndarray, top_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best tag row per product and its margin over the second best (0 with a single candidate)."""
    labels = top_rows[:, 0].astype(np.int64)
    margin = top_scores[:, 0] - top_scores[:, 1] if top_scores.shape[1] > 1 else np.zeros(len(labels))
    return labels, margin.astype(np.float32)


def confident(labels: np.ndarray, strength: np.ndarray, share: float) -> np.ndarray:
    """Mask of the products among the top ``share`` by strength within their label (at least one)."""
    mask = np.zeros(len(labels), dtype=bool)
    order = np.lexsort((-strength, labels))
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if sorted_labels[s] < 0:
            continue
        keep = max(1, int(round(share * (e - s))))
        mask[order[s : s + keep]] = True
    return mask


def prototypes(
    text_vectors: np.ndarray,
    catalog: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
    parents: np.ndarray,
    weight: float,
    shrinkage: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Tag vectors mixed with the centroids of their confident products; also the count per tag.

    A product counts for its pseudo-label and every ancestor of it, so inner tags (used by the
    hierarchy-aware decoder) move with their subtree.
    """
    n_tags = len(text_vectors)
    sums = np.zeros_like(text_vectors)
    counts = np.zeros(n_tags, dtype=np.float32)
    rows = labels[mask]
    vecs = catalog[mask]
    current = rows.copy()
    for _ in range(n_tags):  # walk up the hierarchy, one level per pass
        valid = current >= 0
        if not valid.any():
            break
        np.add.at(sums, current[valid], vecs[valid])
        np.add.at(counts, current[valid], 1.0)
        current = np.where(valid, parents[np.maximum(current, 0)], -1)
    centroid = normalize(sums)
    w = (weight * counts / (counts + shrinkage)).astype(np.float32)[:, None] if shrinkage > 0 else None
    if w is None:
        w = np.where(counts > 0, weight, 0.0).astype(np.float32)[:, None]
    mixed = normalize((1.0 - w) * text_vectors + w * centroid)
    return np.where(counts[:, None] > 0, mixed, text_vectors).astype(np.float32), counts
