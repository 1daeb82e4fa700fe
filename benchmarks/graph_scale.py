"""Graph-embedding cost on a synthetic graph of 1M nodes / 10M undirected edges (20M directed).

Measured directly: CSR/walker construction, node2vec (our pure-torch biased walk + PyG skip-gram) time
per batch, extrapolated to one epoch (every node starts ``walks_per_node`` walks) by multiplying by the
number of batches. Full-batch GraphSAGE needs per-edge messages (E x hidden floats per layer), so it is
measured at smaller sizes of the same shape (10 edges per node) and extrapolated linearly in edges to
1M / 10M; ``--sage-full`` also tries the full size (it needs tens of GB). The JSON records every
measured point next to each extrapolation so the reader can judge it.

Usage: ``python -m benchmarks.graph_scale [--nodes 1000000 --edges 10000000] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tagindex.graph.embed import EmbedParams, WalkNode2Vec, _SageLinkModel
from tagindex.graph.walks import BiasedWalker

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class PeakSampler:
    """Highest resident set size seen while the block runs (sampled every 5 ms in a thread)."""

    def __enter__(self) -> PeakSampler:
        import threading

        self.base = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def peak_mb() -> float:
    from tagindex.graph.build import peak_rss_mb

    return peak_rss_mb()


def synthetic(n: int, m: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """m undirected edges; one endpoint uniform, the other skewed toward low ids (hub nodes, like tags)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, m)
    b = (n * rng.random(m) ** 3).astype(np.int64)
    keep = a != b
    a, b = a[keep], b[keep]
    edge_index = torch.from_numpy(np.stack([np.concatenate([a, b]), np.concatenate([b, a])]))
    weight = torch.from_numpy(np.concatenate([np.ones(len(a)), np.ones(len(a))]))
    return edge_index, weight


def node2vec_cost(n: int, m: int, params: EmbedParams, batches: int) -> dict[str, float]:
    t0 = time.perf_counter()
    edge_index, weight = synthetic(n, m)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    walker = BiasedWalker(edge_index, n, weight, p=params.p, q=params.q)
    csr_s = time.perf_counter() - t0
    del edge_index, weight
    model = WalkNode2Vec(walker, params)
    opt = torch.optim.SparseAdam(list(model.parameters()), lr=params.lr)
    starts = torch.randperm(n)[: batches * params.batch_size].view(batches, -1)
    walk_s = step_s = 0.0
    for batch in starts:
        t0 = time.perf_counter()
        pos, neg = model.sample(batch)
        walk_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model.loss(pos, neg)
        loss.backward()
        opt.step()
        step_s += time.perf_counter() - t0
    per_batch = (walk_s + step_s) / batches
    n_batches = math.ceil(n / params.batch_size)
    return {
        "nodes": n,
        "edges_undirected": m,
        "generate_s": round(gen_s, 2),
        "csr_build_s": round(csr_s, 2),
        "batches_measured": batches,
        "walk_s_per_batch": round(walk_s / batches, 4),
        "skipgram_step_s_per_batch": round(step_s / batches, 4),
        "batches_per_epoch": n_batches,
        "epoch_s_extrapolated": round(per_batch * n_batches, 1),
        "rss_mb_after": round(rss_mb(), 1),
        "peak_rss_mb": round(peak_mb(), 1),
        "final_loss": round(float(loss), 4),
    }


def sage_cost(n: int, m: int, params: EmbedParams, steps: int) -> dict[str, float]:
    from torch_geometric.utils import negative_sampling

    edge_index, _ = synthetic(n, m)
    base = rss_mb()
    model = _SageLinkModel(n, params)
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    batch = min(edge_index.size(1), max(params.batch_size * 64, 4096))
    times = []
    sampler = PeakSampler().__enter__()
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        z = model(edge_index)
        pos = edge_index[:, torch.randint(edge_index.size(1), (batch,))]
        neg = negative_sampling(edge_index, num_nodes=n, num_neg_samples=batch)
        s = torch.cat([(z[pos[0]] * z[pos[1]]).sum(-1), (z[neg[0]] * z[neg[1]]).sum(-1)])
        y = torch.cat([torch.ones(batch), torch.zeros(neg.size(1))])
        torch.nn.functional.binary_cross_entropy_with_logits(s, y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    sampler.__exit__()
    return {
        "nodes": n,
        "edges_undirected": m,
        "steps_measured": steps,
        "step_s": round(float(np.median(times)), 3),
        "rss_growth_mb": round(sampler.peak - base, 1),
        "peak_rss_mb": round(peak_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=10_000_000)
    ap.add_argument("--batches", type=int, default=20, help="node2vec batches to time")
    ap.add_argument("--sage-sizes", default="25000,50000,100000", help="node counts for SAGE (10 edges/node)")
    ap.add_argument("--sage-steps", type=int, default=3)
    ap.add_argument("--sage-full", action="store_true", help="also try SAGE at the full size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "graph_scale.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = EmbedParams()
    result: dict[str, object] = {
        "machine": {
            "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
            "cpus": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "node2vec_params": {
            k: getattr(params, k)
            for k in ("dim", "batch_size", "walk_length", "context_size", "walks_per_node", "p", "q")
        },
    }
    n2v = node2vec_cost(args.nodes, args.edges, params, args.batches)
    result["node2vec"] = n2v
    print(json.dumps({"node2vec": n2v}, indent=1), flush=True)
    ratio = args.edges / args.nodes
    points = []
    for n in [int(x) for x in args.sage_sizes.split(",")]:
        points.append(sage_cost(n, int(n * ratio), params, args.sage_steps))
        print(json.dumps(points[-1]), flush=True)
    # Linear fit of step time and memory growth in the number of edges, evaluated at the full size.
    e = np.array([p["edges_undirected"] for p in points], dtype=float)
    t = np.array([p["step_s"] for p in points])
    mem = np.array([p["rss_growth_mb"] for p in points])
    slope_t, icpt_t = np.polyfit(e, t, 1)
    slope_m, icpt_m = np.polyfit(e, mem, 1)
    sage = {
        "measured": points,
        "extrapolated_full": {
            "nodes": args.nodes,
            "edges_undirected": args.edges,
            "step_s": round(float(slope_t * args.edges + icpt_t), 1),
            "memory_growth_mb": round(float(slope_m * args.edges + icpt_m), 0),
            "method": "least-squares line in edges through the measured points",
            "note": "one full-batch step = one epoch over all edges as message passing; the loss uses a "
            "sample of 16,384 edges and as many negatives",
        },
    }
    if args.sage_full:
        try:
            sage["full"] = sage_cost(args.nodes, args.edges, params, 1)
        except RuntimeError as exc:  # out of memory
            sage["full"] = {"error": str(exc)[:200]}
    result["sage"] = sage
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(sage["extrapolated_full"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
