"""The zero-shot gate: sibling votes, and fitting the unseen-tag terms on a simulated split."""

from __future__ import annotations

import numpy as np
import pytest

from tagindex.config import ExemplarParams
from tagindex.exemplars import ExemplarScorer, ExemplarSet
from tagindex.gate import fit_gate
from tagindex.schema import Tag

DIM = 32
PARENTS, LEAVES = 6, 4


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _world(seed: int = 0) -> tuple[list[Tag], np.ndarray, dict[str, np.ndarray], np.random.Generator]:
    """A two-level vocabulary whose products sit near their leaf and parent centres, while the tag
    texts are noisier views of the leaf centre (text cosines run lower than product cosines)."""
    rng = np.random.default_rng(seed)
    tags, vectors, centres = [], [], {}
    for p in range(PARENTS):
        parent_centre = rng.normal(size=DIM)
        tags.append(Tag(f"p{p}", f"Parent {p}"))
        vectors.append(_unit(parent_centre))
        for leaf in range(LEAVES):
            tid = f"p{p}-l{leaf}"
            centre = parent_centre + rng.normal(size=DIM)
            centres[tid] = centre
            tags.append(Tag(tid, f"Leaf {p}.{leaf}", parent=f"p{p}"))
            vectors.append(_unit(centre + 1.5 * rng.normal(size=DIM)))
    return tags, np.stack(vectors), centres, rng


def _products(centres: dict[str, np.ndarray], tag_ids: list[str], n: int, rng: np.random.Generator):
    ids, labels, rows = [], [], []
    for tid in tag_ids:
        for i in range(n):
            ids.append(f"{tid}#{i}")
            labels.append([tid.split("-")[0], tid])
            rows.append(_unit(centres[tid] + 0.8 * rng.normal(size=DIM)))
    return ExemplarSet(ids, labels, np.stack(rows))


def _recall_at_1(scorer: ExemplarScorer, queries: ExemplarSet) -> float:
    _, ids = scorer.top(queries.vectors, 1)
    return float(np.mean([row[0] == labels[-1] for row, labels in zip(ids, queries.labels, strict=True)]))


def test_sibling_votes_sum_the_votes_under_each_parent_and_are_zero_at_the_root() -> None:
    tags = [
        Tag("food", "Food"),
        Tag("fruit", "Fruit", parent="food"),
        Tag("veg", "Vegetables", parent="food"),
        Tag("tools", "Tools"),
    ]
    vectors = _unit(np.eye(4, dtype=np.float32))
    exemplars = ExemplarSet(["t"], [["tools"]], vectors[3:4])  # "tools" becomes a root-level target
    scorer = ExemplarScorer(tags, vectors, exemplars)
    assert scorer.targets == ["fruit", "veg", "tools"]
    votes = np.array([[0.2, 0.5, 0.3], [0.0, 0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(scorer.sibling_votes(votes), [[0.7, 0.7, 0.0], [0.0, 0.0, 0.0]])


def test_fitted_gate_finds_unseen_tags_without_giving_away_seen_ones() -> None:
    tags, tag_vectors, centres, rng = _world()
    leaves = [t.id for t in tags if t.parent is not None]
    unseen = leaves[:: LEAVES + 1][:3]  # one leaf in three parents: never has an exemplar
    seen = [t for t in leaves if t not in unseen]
    exemplars = _products(centres, seen, 12, rng)
    params = ExemplarParams(fit_gate=True)
    fitted, report = fit_gate(tags, tag_vectors, exemplars, params)
    assert report["fitted"] and report["heldout_tags"] >= 1
    assert report["best"]["harmonic_recall@1"] >= report["before"]["harmonic_recall@1"]
    assert fitted.unseen_offset > 0 or fitted.parent_vote_weight > 0

    # Fresh products, scored against an index whose unseen tags truly have no exemplar.
    unseen_q = _products(centres, unseen, 30, rng)
    seen_q = _products(centres, seen, 5, rng)
    plain = ExemplarScorer(tags, tag_vectors, exemplars, params)
    gated = ExemplarScorer(tags, tag_vectors, exemplars, fitted)
    assert _recall_at_1(gated, unseen_q) > _recall_at_1(plain, unseen_q) + 0.1
    assert _recall_at_1(gated, seen_q) >= _recall_at_1(plain, seen_q) - 0.1


def test_gate_is_deterministic_and_skips_data_too_small_to_simulate() -> None:
    tags, tag_vectors, centres, rng = _world(seed=1)
    leaves = [t.id for t in tags if t.parent is not None]
    exemplars = _products(centres, leaves, 6, rng)
    first = fit_gate(tags, tag_vectors, exemplars, ExemplarParams())
    again = fit_gate(tags, tag_vectors, exemplars, ExemplarParams())
    assert first == again

    few = _products(centres, leaves[:3], 6, rng)
    params = ExemplarParams(unseen_offset=0.0, parent_vote_weight=0.0)
    kept, report = fit_gate(tags, tag_vectors, few, params)
    assert kept == params and report["fitted"] is False
    assert "eligible" in report["reason"]


@pytest.mark.parametrize("fit", [True, False])
def test_index_fits_the_gate_only_when_asked(fit: bool, tmp_path) -> None:
    from rerank_helpers import HashEncoder

    from tagindex.config import TagIndexParams
    from tagindex.index import TagIndex
    from tagindex.schema import Product

    tags, _, centres, rng = _world(seed=2)
    leaves = [t.id for t in tags if t.parent is not None]
    exemplars = _products(centres, leaves, 6, rng)
    params = TagIndexParams()
    params.exemplars.fit_gate = fit
    index = TagIndex.build(tags, params, encoder=HashEncoder(DIM))
    products = [
        Product(pid, pid, tags=labels) for pid, labels in zip(exemplars.ids, exemplars.labels, strict=True)
    ]
    index.add_exemplars(products, vectors=exemplars.vectors)
    assert (index.gate_report is not None) == fit
    index.save(tmp_path / "idx")
    loaded = TagIndex.load(tmp_path / "idx", encoder=HashEncoder(DIM))
    assert loaded.gate_report == index.gate_report
    assert loaded.params.exemplars == index.params.exemplars
