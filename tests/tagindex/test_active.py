"""Active learning queue: seeded determinism, diversity, tail coverage, reasons."""

from __future__ import annotations

import numpy as np
import pytest

from tagindex.active import QueueParams, _kmeans, _percentile_rank, random_queue, review_queue
from tagindex.config import TagIndexParams
from tagindex.index import TagIndex
from tagindex.learn import learn
from tagindex.schema import Product, Tag

TAGS = [
    Tag("jewellery", "Jewellery"),
    Tag("necklace", "Necklaces", parent="jewellery"),
    Tag("ring", "Rings", parent="jewellery"),
    Tag("tools", "Tools"),
    Tag("drill", "Power drills", parent="tools"),
    Tag("saw", "Hand saws", parent="tools"),
    Tag("garden", "Garden"),
    Tag("hose", "Garden hoses", parent="garden"),
    Tag("seeds", "Seeds and bulbs", parent="garden"),
]

TITLES = [
    "Sterling silver chain necklace",
    "Sterling silver chain necklace 18 inch",
    "Sterling silver chain necklace, 18 inch",
    "Gold locket pendant necklace",
    "Diamond solitaire engagement ring",
    "Men's tungsten wedding band",
    "18V cordless drill driver kit",
    "Hammer drill 800W with case",
    "Japanese pull saw for woodworking",
    "Hacksaw frame with blades",
    "Expandable garden hose 50ft",
    "Hose reel cart with wheels",
    "Heirloom tomato seeds",
    "Tulip bulbs mixed colours",
    "Wildflower seed mix for bees",
    "Pearl drop earrings",
    "Angle grinder 115 mm",
    "Watering can 10 litre",
]
POOL = [Product(f"p{i}", t) for i, t in enumerate(TITLES)]


@pytest.fixture(scope="module")
def index(encoder) -> TagIndex:
    idx = TagIndex.build(TAGS, TagIndexParams(), encoder=encoder)
    idx.add_exemplars([Product("l1", "Silver chain necklace", tags=["jewellery", "necklace"])])
    return idx


@pytest.fixture(scope="module")
def vectors(index: TagIndex) -> np.ndarray:
    return index.encode_products(POOL)


@pytest.mark.parametrize("method", ["typical", "margin"])
def test_same_seed_same_queue(index: TagIndex, vectors: np.ndarray, method: str) -> None:
    params = QueueParams(seed=3, method=method)
    a = [q.to_dict() for q in review_queue(index, POOL, 8, vectors=vectors, params=params)]
    b = [q.to_dict() for q in review_queue(index, POOL, 8, vectors=vectors, params=params)]
    assert a == b and len(a) == 8
    assert len({q["id"] for q in a}) == 8


def test_queue_has_no_near_duplicates_and_a_reason_per_pick(index: TagIndex, vectors: np.ndarray) -> None:
    params = QueueParams(seed=5, duplicate_cos=0.9)
    queue = review_queue(index, POOL, 10, vectors=vectors, params=params)
    rows = [int(q.id[1:]) for q in queue]
    sims = vectors[rows] @ vectors[rows].T
    np.fill_diagonal(sims, -1)
    assert float(sims.max()) < 0.9
    # The three near-identical necklace titles are not all in the queue.
    assert len({"p0", "p1", "p2"} & {q.id for q in queue}) <= 1
    for q in queue:
        assert q.reason and q.kind in ("coverage", "typical", "uncertain", "novel")
        assert 1 <= len(q.tags) <= params.suggestions


def test_unseen_tags_are_covered_first(index: TagIndex, vectors: np.ndarray) -> None:
    queue = review_queue(index, POOL, 6, vectors=vectors, params=QueueParams(coverage_share=0.5))
    cover = [q for q in queue if q.kind == "coverage"]
    assert 1 <= len(cover) <= 3 and queue[: len(cover)] == cover
    counts = [q.details["exemplars"] for q in cover]
    assert counts[0] == 0 and counts == sorted(counts)  # rarest tags first; "necklace" has one exemplar
    assert len({q.details["tag"] for q in cover}) == len(cover)  # one product per covered tag
    assert all(q.tags[0].tag == q.details["tag"] for q in cover)


def test_judged_products_leave_the_queue(encoder, vectors: np.ndarray) -> None:
    idx = TagIndex.build(TAGS, TagIndexParams(), encoder=encoder)
    first = review_queue(idx, POOL, 5, vectors=vectors)
    picked = {q.id for q in first}
    by_id = {p.id: p for p in POOL}
    learn(idx, [by_id[i] for i in picked], judgements=[(i, "seeds", "add") for i in picked])
    second = review_queue(idx, POOL, 5, vectors=vectors)
    assert not picked & {q.id for q in second}
    assert not {"p0"} & {q.id for q in review_queue(idx, POOL, 20, vectors=vectors, exclude={"p0"})}


def test_helpers() -> None:
    np.testing.assert_allclose(_percentile_rank(np.array([3.0, 1.0, 1.0, 2.0])), [1.0, 1 / 6, 1 / 6, 2 / 3])
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 0.05, (10, 4)) + [1, 0, 0, 0], rng.normal(0, 0.05, (10, 4)) + [0, 1, 0, 0]
    x = np.concatenate([a, b])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    groups = _kmeans(x.astype(np.float32), 2, 10, np.random.default_rng(1))
    assert len(set(groups[:10])) == 1 and len(set(groups[10:])) == 1 and groups[0] != groups[10]
    assert random_queue(POOL, 4, 7) == random_queue(POOL, 4, 7)
    assert len(set(random_queue(POOL, 40, 7))) == len(POOL)
