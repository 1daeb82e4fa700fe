"""Hubness correction: each tag's similarities are normalised by its distribution over the catalog.

A few generic tag texts sit close to everything ("hubs") and enter the top 5 of unrelated products.
Two per-tag normalisations, fitted on the unlabelled catalog and applied at query time:

- ``csls``: ``s - r_t`` with ``r_t`` the mean similarity of tag t to its k nearest catalog products
  (cross-domain similarity local scaling; the product's own term is constant per query and dropped);
- ``zscore``: ``(s - mean_t) / std_t`` over all catalog products.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 2048  # catalog rows per matrix product, bounding memory to chunk x tags floats


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


def k_occurrence(top_ids: list[list[str]], k: int = 5) -> dict[str, float]:
    """Share of products in whose top ``k`` each tag appears (hubs have high shares)."""
    counts: dict[str, int] = {}
    for row in top_ids:
        for tag in dict.fromkeys(row[:k]):
            counts[tag] = counts.get(tag, 0) + 1
    n = max(len(top_ids), 1)
    return {t: c / n for t, c in sorted(counts.items(), key=lambda x: -x[1])}
