"""Compressed exemplar search (IVF-PQ, IVF-SQ8) against the exact search, on a small synthetic set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagindex.compressed_exemplars import (
    CompressedExemplarIndex,
    CompressedParams,
    ExactNeighbours,
    exact_neighbours,
    recall_at_k,
)
from tagindex.config import ExemplarParams
from tagindex.exemplars import ExemplarScorer, ExemplarSet
from tagindex.schema import Tag

DIM, TAGS, PER_TAG = 32, 20, 150


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> dict[str, object]:
    """20 leaf tags under 4 parents; 150 exemplars a tag scattered around its centre; 200 queries."""
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((TAGS, DIM)))
    tags = [Tag(f"p{j}", f"parent {j}") for j in range(4)]
    tags += [Tag(f"t{i}", f"tag {i}", parent=f"p{i % 4}") for i in range(TAGS)]
    labels = np.repeat(np.arange(TAGS), PER_TAG)
    vectors = _unit(centres[labels] + 0.35 * rng.standard_normal((len(labels), DIM)))
    queries = _unit(centres[rng.integers(0, TAGS, 200)] + 0.35 * rng.standard_normal((200, DIM)))
    tag_vectors = _unit(np.vstack([rng.standard_normal((4, DIM)), centres]))
    exemplars = ExemplarSet([f"e{i}" for i in range(len(labels))], [[f"t{t}"] for t in labels], vectors)
    return {"tags": tags, "tag_vectors": tag_vectors, "exemplars": exemplars, "queries": queries}


def _build(vectors: np.ndarray, params: CompressedParams) -> CompressedExemplarIndex:
    index = CompressedExemplarIndex(DIM, params)
    index.train(vectors)
    for start in range(0, len(vectors), 1000):  # arrives in chunks, as from encoding workers
        index.add(vectors[start : start + 1000])
    return index


@pytest.mark.parametrize(
    ("params", "min_recall", "min_agreement"),
    [  # PQ at 4 dimensions a byte is the coarser code: lower bounds, still far above chance
        (CompressedParams(kind="ivf-pq", pq_m=8, nlist=16, nprobe=8), 0.6, 0.8),
        (CompressedParams(kind="ivf-opq", pq_m=8, nlist=16, nprobe=8), 0.6, 0.8),
        (CompressedParams(kind="ivf-sq8", nlist=16, nprobe=8), 0.9, 0.95),
    ],
)
def test_compressed_search_finds_the_exact_neighbours_and_the_same_top_tag(
    data: dict[str, object],
    params: CompressedParams,
    min_recall: float,
    min_agreement: float,
    tmp_path: Path,
) -> None:
    exemplars, queries = data["exemplars"], data["queries"]
    assert isinstance(exemplars, ExemplarSet) and isinstance(queries, np.ndarray)
    index = _build(exemplars.vectors, params)
    assert index.ntotal == len(exemplars)
    _, exact = exact_neighbours(queries, exemplars.vectors, 10)
    sims, approx = index.search(queries, 10)
    recall = recall_at_k(approx, exact)
    assert min_recall <= recall <= 1.0
    assert recall_at_k(approx[:, ::-1], exact) == recall  # order-free
    # Random codes (an untrained-like baseline) must not pass: recall means something.
    shuffled = np.random.default_rng(1).permutation(approx.ravel()).reshape(approx.shape)
    assert recall_at_k(shuffled, exact) < 0.2
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first
    codes = params.pq_m if params.kind != "ivf-sq8" else DIM
    assert index.bytes_per_vector()["codes"] == codes < 4 * DIM
    # The scorer voting through the compressed neighbours ranks the same top tag as the exact one.
    tags, tag_vectors = data["tags"], data["tag_vectors"]
    assert isinstance(tags, list) and isinstance(tag_vectors, np.ndarray)
    exact_scorer = ExemplarScorer(tags, tag_vectors, exemplars, ExemplarParams(vote_weight=1.0))
    compressed = ExemplarScorer(tags, tag_vectors, exemplars, ExemplarParams(vote_weight=1.0), index)
    _, top_exact = exact_scorer.top(queries, 1)
    _, top_compressed = compressed.top(queries, 1)
    agreement = np.mean([a == b for a, b in zip(top_exact, top_compressed, strict=True)])
    assert agreement >= min_agreement
    # Leave-one-out: an excluded row is never its own neighbour.
    own = np.arange(50)
    _, rows = compressed.neighbours(exemplars.vectors[:50], own)
    assert not (rows == own[:, None]).any()
    # Saved and loaded: the same answers.
    index.save(tmp_path / "ex.faiss")
    again = CompressedExemplarIndex.load(tmp_path / "ex.faiss", params)
    assert np.array_equal(again.search(queries, 10)[1], approx)


def test_blocked_exact_search_equals_one_product_and_bad_settings_are_refused(
    data: dict[str, object],
) -> None:
    exemplars, queries = data["exemplars"], data["queries"]
    assert isinstance(exemplars, ExemplarSet) and isinstance(queries, np.ndarray)
    whole = exact_neighbours(queries, exemplars.vectors, 10, max_scores=1 << 30)
    blocked = ExactNeighbours(exemplars.vectors, max_scores=5 * len(exemplars)).search(queries, 10)
    assert np.array_equal(whole[1], blocked[1])
    with pytest.raises(ValueError, match="does not divide"):
        CompressedExemplarIndex(DIM, CompressedParams(pq_m=7))
    with pytest.raises(ValueError, match="train"):
        CompressedExemplarIndex(DIM).add(exemplars.vectors[:10])


def test_label_sums_merge_by_label_list_and_subtract(data: dict[str, object]) -> None:
    from tagindex.compressed_exemplars import LabelSums

    exemplars = data["exemplars"]
    assert isinstance(exemplars, ExemplarSet)
    labels, vectors = exemplars.labels, exemplars.vectors
    whole = LabelSums.of(labels, vectors)
    parts = LabelSums.of(labels[:700], vectors[:700]).merge(LabelSums.of(labels[700:], vectors[700:]))
    assert parts.labels == whole.labels and np.array_equal(parts.counts, whole.counts)
    assert np.allclose(parts.sums, whole.sums, atol=1e-4)
    # Taking rows out again leaves the sums of the rest.
    less = whole.merge(LabelSums.of(labels[:10], vectors[:10], sign=-1))
    rest = LabelSums.of(labels[10:], vectors[10:])
    assert np.array_equal(less.counts, rest.counts) and np.allclose(less.sums, rest.sums, atol=1e-4)
