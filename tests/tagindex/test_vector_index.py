from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagindex.config import VectorIndexParams
from tagindex.encoders import normalize
from tagindex.vector_index import VectorIndex, exact_search


def _data(n: int = 2000, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Clustered vectors, like real tag embeddings, so approximate search is non-trivial.
    centers = rng.normal(size=(20, dim))
    vectors = normalize(centers[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, dim)))
    queries = normalize(centers[rng.integers(0, 20, 100)] + 0.5 * rng.normal(size=(100, dim)))
    return vectors, queries


def test_exact_search_matches_brute_force_sort() -> None:
    vectors, queries = _data(300)
    scores, idx = exact_search(queries, vectors, 7)
    full = queries @ vectors.T
    expected = np.argsort(-full, axis=1)[:, :7]
    assert np.array_equal(idx, expected)
    assert np.allclose(scores, np.take_along_axis(full, expected, 1), atol=1e-6)


def test_exact_search_pads_when_k_exceeds_vectors() -> None:
    vectors, queries = _data(3)
    scores, idx = exact_search(queries[:2], vectors, 5)
    assert idx.shape == (2, 5) and (idx[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


def test_faiss_exact_equals_numpy_oracle() -> None:
    vectors, queries = _data()
    index = VectorIndex(vectors.shape[1], VectorIndexParams(kind="exact"))
    index.add(np.arange(len(vectors)) + 1000, vectors)
    scores, ids = index.search(queries, 10)
    o_scores, o_idx = exact_search(queries, vectors, 10)
    assert np.array_equal(ids, o_idx + 1000)
    assert np.allclose(scores, o_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_search_recall_against_exact(kind: str) -> None:
    vectors, queries = _data()
    index = VectorIndex(vectors.shape[1], VectorIndexParams(kind=kind, ivf_nprobe=8))
    index.add(np.arange(len(vectors)), vectors)
    _, ids = index.search(queries, 10)
    _, truth = exact_search(queries, vectors, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.9, recall


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf"])
def test_remove_then_add_and_round_trip(kind: str, tmp_path: Path) -> None:
    vectors, queries = _data(600)
    params = VectorIndexParams(kind=kind, ivf_nprobe=64)
    index = VectorIndex(vectors.shape[1], params)
    index.add(np.arange(500), vectors[:500])
    removed = np.arange(0, 500, 3)
    index.remove(removed)
    assert index.ntotal == 500 - len(removed)
    _, ids = index.search(queries, 20)
    assert not np.isin(ids, removed).any()
    index.add(np.arange(500, 600), vectors[500:])
    path = tmp_path / "i.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, vectors.shape[1], params)
    assert loaded.ntotal == index.ntotal
    s1, i1 = index.search(queries, 5)
    s2, i2 = loaded.search(queries, 5)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)
    keep = np.setdiff1d(np.arange(600), removed)
    _, truth = exact_search(queries, vectors[keep], 5)
    if kind == "exact":
        assert np.array_equal(i2, keep[truth])


def test_search_on_empty_index_and_dimension_check() -> None:
    index = VectorIndex(8)
    scores, ids = index.search(np.zeros((2, 8), np.float32), 3)
    assert (ids == -1).all() and np.isneginf(scores).all()
    with pytest.raises(ValueError, match=r"shape \(n, 8\)"):
        index.add(np.arange(2), np.zeros((2, 4), np.float32))
