"""The skew floor's oracle rankers: gold leaf first, then the fill each rule names."""

from __future__ import annotations

import numpy as np

from benchmarks.adapt_ablation import skew
from benchmarks.skew_floor import oracle_runs


def test_gold_first_then_siblings_nearest_first() -> None:
    leaves = ["a1", "a2", "a3", "b1", "b2", "b3"]
    parents = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "b2": "b", "b3": "b"}
    # a1's nearest leaves are b1, b2 (other parent), then a2, a3 (its siblings).
    vectors = np.array(
        [[1, 0, 0], [0.6, 0.8, 0], [0.5, 0, 0.866], [0.95, 0.31, 0], [0.9, 0, 0.44], [0, 1, 0]]
    )
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    runs = oracle_runs({"p": "a1"}, leaves, vectors, parents, seed=1)
    assert [t for t, _ in runs["nearest"]["p"]] == ["a1", "b1", "b2", "a2", "a3"]
    assert [t for t, _ in runs["siblings"]["p"]] == ["a1", "a2", "a3", "b1", "b2"]
    assert runs["random"]["p"][0][0] == "a1" and len({t for t, _ in runs["random"]["p"]}) == 5


def test_a_related_fill_makes_hubs_the_goal_counts() -> None:
    # 20 products of 4 gold classes in one family and a fifth class nobody has: the fifth is in every
    # related top 5 (a "hub" by the goal's count) although every top-1 answer is right.
    leaves = ["a1", "a2", "a3", "a4", "a5", "z1", "z2", "z3", "z4", "z5", "z6", "z7"]
    parents = {t: t[0] for t in leaves}
    rng = np.random.default_rng(0)
    vectors = np.vstack([np.eye(12)[i] + (0.5 if t[0] == "a" else 0) for i, t in enumerate(leaves)])
    vectors += rng.normal(0, 0.01, vectors.shape)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    gold_leaf = {f"p{i}": leaves[i % 4] for i in range(20)}
    gold = {pid: [parents[g], g] for pid, g in gold_leaf.items()}
    runs = oracle_runs(gold_leaf, leaves, vectors, parents, seed=1)
    related = skew(runs["siblings"], gold, limit=0.05, parents=parents)
    assert related["tags_over_5pct_not_gold"] == 1  # a5
    # ... and no hub outside its family: a5's parent is in every product's gold.
    assert related["tags_over_5pct_outside_family"] == 0
