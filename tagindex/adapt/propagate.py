"""Label propagation over the catalog's mutual-kNN graph (Zhou et al. 2004, label spreading).

Confident pseudo-labels are spread to their neighbours: ``F <- alpha * S F + (1 - alpha) * Y`` with
``S = D^-1/2 W D^-1/2`` over mutual k-nearest-neighbour edges weighted by cosine similarity.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 2048


def mutual_knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour rows (n, k) and edge weights (n, k); weights are 0 where the edge is not mutual."""
    n = len(vectors)
    k = max(1, min(k, n - 1))
    nbrs = np.zeros((n, k), dtype=np.int64)
    sims = np.zeros((n, k), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        block = vectors[start : start + _CHUNK] @ vectors.T  # (chunk, n)
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # no self loops
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        nbrs[start : start + len(block)] = part
        sims[start : start + len(block)] = np.take_along_axis(block, part, axis=1)
    edges = set(zip(np.repeat(np.arange(n), k).tolist(), nbrs.ravel().tolist(), strict=True))
    mutual = np.array(
        [(j, i) in edges for i, j in zip(np.repeat(np.arange(n), k), nbrs.ravel(), strict=True)]
    )
    weights = np.where(mutual.reshape(n, k), np.maximum(sims, 0.0), 0.0).astype(np.float32)
    return nbrs, weights


def spread(
    nbrs: np.ndarray, weights: np.ndarray, seeds: np.ndarray, alpha: float, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Propagates seed labels; returns the label (-1: unreached) and its share of the mass per product.

    Args:
        nbrs: Neighbour rows (n, k).
        weights: Symmetric edge weights (n, k), 0 for no edge.
        seeds: Seed label per product, -1 for unlabelled.
        alpha: Weight of the neighbours against the seed (0..1).
        iterations: Propagation steps.
    """
    n = len(nbrs)
    used, compact = np.unique(seeds[seeds >= 0], return_inverse=True)
    y = np.zeros((n, len(used)), dtype=np.float32)
    y[np.flatnonzero(seeds >= 0), compact] = 1.0
    degree = weights.sum(axis=1)
    inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
    norm = weights * inv[:, None] * inv[nbrs]  # (n, k) entries of S
    f = y.copy()
    for _ in range(iterations):
        f = alpha * np.einsum("nk,nkl->nl", norm, f[nbrs]) + (1.0 - alpha) * y
    total = f.sum(axis=1)
    best = f.argmax(axis=1) if len(used) else np.zeros(n, dtype=np.int64)
    labels = np.where(total > 0, used[best] if len(used) else -1, -1).astype(np.int64)
    share = np.where(total > 0, f.max(axis=1, initial=0.0) / np.maximum(total, 1e-12), 0.0)
    return labels, share.astype(np.float32)
