"""node2vec's second-order biased random walk in pure torch (no pyg-lib / torch-cluster needed).

From the previous node ``t`` and the current node ``v`` the walk moves to a neighbour ``x`` of ``v`` with
probability proportional to ``alpha(t, x) * w(v, x)``, where ``alpha`` is ``1/p`` to return to ``t``,
``1`` for an ``x`` that is also a neighbour of ``t`` and ``1/q`` otherwise (Grover & Leskovec, 2016).
Sampling is exact: a neighbour is drawn in proportion to ``w`` and accepted with probability
``alpha / max(alpha)`` (rejection sampling), vectorised over all walkers at once.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch


def _searchsorted(sorted_seq: torch.Tensor, values: torch.Tensor, right: bool = False) -> torch.Tensor:
    # On CPU, numpy's bisection is ~10x faster than torch.searchsorted for small query batches
    # (torch's intra-op threading costs more than the work); same result, no copy either way.
    if sorted_seq.device.type == "cpu":
        side: Literal["left", "right"] = "right" if right else "left"
        return torch.from_numpy(np.searchsorted(sorted_seq.numpy(), values.numpy(), side=side))
    return torch.searchsorted(sorted_seq, values, right=right)


class BiasedWalker:
    """Random walks over a weighted, undirected graph in CSR form.

    Args:
        edge_index: (2, E) directed edges; give both directions for an undirected graph.
        num_nodes: Number of nodes.
        edge_weight: (E,) positive weights (default all 1). Duplicate edges should be merged first.
        p: Return parameter (small p: walks backtrack often).
        q: In-out parameter (q < 1: walks move outward, DFS-like; q > 1: stay local, BFS-like).
    """

    def __init__(
        self,
        edge_index: torch.Tensor,
        num_nodes: int,
        edge_weight: torch.Tensor | None = None,
        p: float = 1.0,
        q: float = 1.0,
    ) -> None:
        if p <= 0 or q <= 0:
            raise ValueError(f"p and q must be positive, got p={p}, q={q}")
        self.num_nodes = num_nodes
        self.p, self.q = float(p), float(q)
        row, col = edge_index[0].long(), edge_index[1].long()
        weight = torch.ones(row.numel(), dtype=torch.float64) if edge_weight is None else edge_weight.double()
        if (weight <= 0).any():
            raise ValueError("edge weights must be positive")
        key = row * num_nodes + col  # (E,) sorted keys let us test "is x a neighbour of t" by bisection
        order = torch.argsort(key)
        self.key = key[order]
        self.col = col[order]
        weight = weight[order]
        degree = torch.bincount(row, minlength=num_nodes)
        self.rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
        self.rowptr[1:] = torch.cumsum(degree, 0)
        self.cumw = torch.cumsum(weight, 0)  # (E,) float64: float32 loses resolution at ~10M edges
        start = self.rowptr[:-1]
        self.row_base = torch.where(start > 0, self.cumw[(start - 1).clamp(min=0)], torch.zeros(()).double())
        self.row_total = torch.zeros(num_nodes, dtype=torch.float64)
        has = degree > 0
        self.row_total[has] = self.cumw[self.rowptr[1:][has] - 1] - self.row_base[has]
        self.degree = degree

    def _neighbour(self, v: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One neighbour of each node in ``v`` drawn in proportion to edge weight (isolated: stays)."""
        u = (
            self.row_base[v]
            + torch.rand(v.numel(), dtype=torch.float64, generator=generator) * self.row_total[v]
        )
        idx = _searchsorted(self.cumw, u, right=True)
        lo, hi = self.rowptr[v], self.rowptr[v + 1] - 1
        idx = torch.minimum(torch.maximum(idx, lo), hi.clamp(min=0))
        out = self.col[idx.clamp(max=max(self.col.numel() - 1, 0))] if self.col.numel() else v.clone()
        return torch.where(self.degree[v] > 0, out, v)

    def is_edge(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Whether (a[i], b[i]) is an edge, for each i."""
        key = a * self.num_nodes + b
        pos = _searchsorted(self.key, key).clamp(max=max(self.key.numel() - 1, 0))
        return self.key[pos] == key if self.key.numel() else torch.zeros_like(a, dtype=torch.bool)

    def step(
        self, prev: torch.Tensor, cur: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Next node of each walker given its previous and current node (second-order, exact)."""
        alpha_max = max(1.0 / self.p, 1.0, 1.0 / self.q)
        out = cur.clone()
        todo = torch.nonzero(self.degree[cur] > 0).flatten()
        while todo.numel():
            x = self._neighbour(cur[todo], generator)
            t = prev[todo]
            alpha = torch.where(
                x == t,
                torch.full_like(x, 1.0 / self.p, dtype=torch.float64),
                torch.where(self.is_edge(t, x), 1.0, 1.0 / self.q).double(),
            )
            accept = torch.rand(todo.numel(), dtype=torch.float64, generator=generator) * alpha_max < alpha
            out[todo[accept]] = x[accept]
            todo = todo[~accept]
        return out

    def walk(
        self, start: torch.Tensor, walk_length: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Walks (n, walk_length + 1) starting at ``start``; walkers on isolated nodes stay put."""
        start = start.long()
        nodes = [start]
        if walk_length >= 1:
            nodes.append(self._neighbour(start, generator))
        for _ in range(walk_length - 1):
            nodes.append(self.step(nodes[-2], nodes[-1], generator))
        return torch.stack(nodes, dim=1)
