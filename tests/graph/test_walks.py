"""The pure-torch node2vec walk against node2vec's exact transition probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tagindex.graph.walks import BiasedWalker

# Undirected weighted graph: 0-1, 1-2, 1-3, 2-3, 3-4, 1-5, 0-5. From t=0 to v=1, the neighbours of 1 are
# 0 (return), 5 and ... 5 is also a neighbour of 0 (distance 1), 2 and 3 are at distance 2 from 0.
EDGES = [(0, 1, 1.0), (1, 2, 2.0), (1, 3, 3.0), (2, 3, 1.0), (3, 4, 1.0), (1, 5, 0.5), (0, 5, 1.0)]


def _walker(p: float, q: float) -> BiasedWalker:
    src = [a for a, b, _ in EDGES] + [b for a, b, _ in EDGES]
    dst = [b for a, b, _ in EDGES] + [a for a, b, _ in EDGES]
    weight = [w for *_, w in EDGES] * 2
    return BiasedWalker(torch.tensor([src, dst]), 6, torch.tensor(weight), p=p, q=q)


def _exact(t: int, v: int, p: float, q: float) -> dict[int, float]:
    """node2vec (Grover & Leskovec 2016): P(x | t, v) ∝ alpha_pq(t, x) * w(v, x)."""
    adj: dict[int, dict[int, float]] = {}
    for a, b, w in EDGES:
        adj.setdefault(a, {})[b] = w
        adj.setdefault(b, {})[a] = w
    scores = {}
    for x, w in adj[v].items():
        alpha = 1 / p if x == t else 1.0 if x in adj[t] else 1 / q
        scores[x] = alpha * w
    total = sum(scores.values())
    return {x: s / total for x, s in scores.items()}


@pytest.mark.parametrize(("p", "q"), [(0.5, 0.25), (4.0, 0.5), (0.25, 4.0), (2.0, 2.0)])
def test_step_frequencies_match_node2vec_formula(p: float, q: float) -> None:
    walker = _walker(p, q)
    n = 200_000
    gen = torch.Generator().manual_seed(1)
    nxt = walker.step(torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long), gen).numpy()
    exact = _exact(0, 1, p, q)
    assert set(np.unique(nxt)) <= set(exact)
    for x, prob in exact.items():
        freq = float((nxt == x).mean())
        sigma = (prob * (1 - prob) / n) ** 0.5
        assert abs(freq - prob) < 5 * sigma + 1e-4, (x, freq, prob)


def test_whole_walk_transitions_follow_formula_for_q_below_one() -> None:
    """Second-order transitions counted along full walks (every (t, v) pair) match the formula."""
    p, q = 2.0, 0.3
    walker = _walker(p, q)
    walks = walker.walk(torch.arange(6).repeat(4000), 12, torch.Generator().manual_seed(2)).numpy()
    triples = np.stack([walks[:, :-2].ravel(), walks[:, 1:-1].ravel(), walks[:, 2:].ravel()], axis=1)
    checked = 0
    for t, v in {(int(a), int(b)) for a, b, _ in triples}:
        nxt = triples[(triples[:, 0] == t) & (triples[:, 1] == v)][:, 2]
        if len(nxt) < 2000:
            continue
        for x, prob in _exact(t, v, p, q).items():
            sigma = (prob * (1 - prob) / len(nxt)) ** 0.5
            assert abs(float((nxt == x).mean()) - prob) < 5 * sigma + 1e-3, (t, v, x)
        checked += 1
    assert checked >= 8


def test_first_step_is_weight_proportional_and_isolated_nodes_stay() -> None:
    walker = BiasedWalker(torch.tensor([[0, 0, 1, 2], [1, 2, 0, 0]]), 4, torch.tensor([1.0, 3.0, 1.0, 3.0]))
    first = walker.walk(torch.zeros(100_000, dtype=torch.long), 1, torch.Generator().manual_seed(3))[:, 1]
    assert abs(float((first == 2).float().mean()) - 0.75) < 0.01
    isolated = walker.walk(torch.tensor([3, 3]), 5)
    assert (isolated == 3).all()


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="positive"):
        _walker(0.0, 1.0)
