"""float16 / int8 scalar-quantised tag vectors and the matrix-product exact search."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from tagindex.config import VectorIndexParams
from tagindex.encoders import normalize
from tagindex.vector_index import VectorIndex, exact_search


def _data(n: int = 3000, dim: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(30, dim))
    vectors = normalize(centers[rng.integers(0, 30, n)] + 0.6 * rng.normal(size=(n, dim)))
    queries = normalize(centers[rng.integers(0, 30, 200)] + 0.6 * rng.normal(size=(200, dim)))
    return vectors, queries


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, found, strict=True)]))


@pytest.mark.parametrize(
    ("kind", "fmt", "min_recall"),
    [
        ("exact", "float16", 0.99),
        ("exact", "int8", 0.95),
        ("hnsw", "float16", 0.95),
        ("hnsw", "int8", 0.93),
        ("ivf", "int8", 0.85),
    ],
)
def test_quantised_index_recall_against_exact(kind: str, fmt: str, min_recall: float) -> None:
    vectors, queries = _data()
    ids = np.arange(len(vectors)) + 500
    _, truth = exact_search(queries, vectors, 10)
    params = VectorIndexParams(kind=kind, vector_format=fmt, ivf_nprobe=32)  # type: ignore[arg-type]
    index = VectorIndex(vectors.shape[1], params)
    index.add(ids, vectors)
    scores, found = index.search(queries, 10)
    assert _recall(truth + 500, found) >= min_recall
    # Scores stay cosine-like: decoded vectors are close to the originals.
    exact_scores = np.take_along_axis(queries @ vectors.T, found - 500, axis=1)
    assert np.abs(scores - exact_scores).max() < 0.05


def test_quantised_formats_use_less_memory() -> None:
    vectors, _ = _data(2000, 64)
    size = {}
    for fmt in ("float32", "float16", "int8"):
        index = VectorIndex(64, VectorIndexParams(vector_format=fmt))  # type: ignore[arg-type]
        index.add(np.arange(len(vectors)), vectors)
        size[fmt] = len(faiss.serialize_index(index._index)) / len(vectors)
    assert size["float16"] < size["float32"] / 1.8
    assert size["int8"] < size["float32"] / 3.3


def test_int8_round_trip_and_later_additions(tmp_path: Path) -> None:
    vectors, queries = _data()
    params = VectorIndexParams(vector_format="int8")
    index = VectorIndex(vectors.shape[1], params)
    index.add(np.arange(2000), vectors[:2000])
    index.add(np.arange(2000, len(vectors)), vectors[2000:])  # added after the quantiser was trained
    index.save(tmp_path / "x.faiss")
    loaded = VectorIndex.load(tmp_path / "x.faiss", vectors.shape[1], params)
    assert np.array_equal(loaded.search(queries, 5)[1], index.search(queries, 5)[1])
    _, truth = exact_search(queries, vectors, 10)
    assert _recall(truth, loaded.search(queries, 10)[1]) >= 0.95


def test_empty_int8_index_saves_nothing_and_searches_empty(tmp_path: Path) -> None:
    params = VectorIndexParams(vector_format="int8")
    VectorIndex(8, params).save(tmp_path / "x.faiss")
    loaded = VectorIndex.load(tmp_path / "x.faiss", 8, params)
    scores, ids = loaded.search(np.ones((2, 8), np.float32), 3)
    assert (ids == -1).all() and np.isneginf(scores).all()


def test_unknown_vector_format_is_refused() -> None:
    index = VectorIndex(4, VectorIndexParams(vector_format="int4"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vector format"):
        index.add(np.arange(3), np.eye(3, 4, dtype=np.float32))


def test_matmul_exact_search_maps_ids_after_removal_and_growth() -> None:
    vectors, queries = _data(500)
    index = VectorIndex(vectors.shape[1], VectorIndexParams(kind="exact"))
    ids = np.arange(len(vectors)) * 7 + 3  # sparse, non-contiguous ids
    index.add(ids, vectors)
    removed = ids[::5]
    index.remove(removed)
    extra = normalize(np.random.default_rng(1).normal(size=(20, vectors.shape[1])))
    index.add(np.arange(20) + 10_000, extra)
    keep = ~np.isin(ids, removed)
    all_vectors = np.concatenate([vectors[keep], extra])
    all_ids = np.concatenate([ids[keep], np.arange(20) + 10_000])
    want_scores, rows = exact_search(queries, all_vectors, 8)
    got_scores, got_ids = index.search(queries, 8)
    assert np.array_equal(got_ids, all_ids[rows])
    assert np.allclose(got_scores, want_scores, atol=1e-5)
    assert index._flat is not None  # the matrix-product path served it


def test_matmul_exact_search_in_query_blocks() -> None:
    vectors, queries = _data(300)
    index = VectorIndex(vectors.shape[1], VectorIndexParams(kind="exact"))
    index.add(np.arange(len(vectors)) + 9, vectors)
    flat = index._flat_view()
    assert flat is not None
    whole = VectorIndex._matmul_search(queries, flat, 4)
    blocked = VectorIndex._matmul_search(queries, flat, 4, max_scores=300 * 7)  # blocks of 7 queries
    assert np.array_equal(blocked[1], whole[1]) and np.allclose(blocked[0], whole[0])
    assert np.array_equal(whole[1], exact_search(queries, vectors, 4)[1] + 9)
