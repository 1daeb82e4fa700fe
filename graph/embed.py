"""Graph embeddings: node2vec (PyG's skip-gram on our pure-torch biased walks) and GraphSAGE trained
full-batch with a link-prediction objective. Saved as a directory: ``vectors.safetensors`` (rows in
``nodes.parquet`` order) and ``manifest.json``.

PyG 2.8.1's ``Node2Vec`` refuses to start without pyg-lib (not on PyPI) and torch-cluster only builds
from source, so :class:`WalkNode2Vec` keeps PyG's skip-gram loss and sampling but swaps in
:class:`tagindex.graph.walks.BiasedWalker`. ``NeighborLoader`` needs compiled extensions too,
hence full-batch SAGE.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save_file
from tagindex.graph import METHODS
from tagindex.graph.build import load_graph_tables, peak_rss_mb
from tagindex.graph.walks import BiasedWalker

from tagindex.config import _Params
from tagindex.store import IndexFormatError, atomic_directory, library_versions, read_manifest, write_manifest
from tagindex.version import __version__

logger = logging.getLogger(__name__)

KIND = "tagindex-graph-embedding"
FORMAT_VERSION = 1

try:
    from torch_geometric.nn import GraphSAGE, Node2Vec
    from torch_geometric.utils import negative_sampling
except ImportError:  # pragma: no cover - exercised only without the extra
    GraphSAGE = Node2Vec = negative_sampling = None


def _require_pyg() -> None:
    if Node2Vec is None:
        # ValueError so that the CLI reports it as a one-line error, like other missing extras.
        raise ValueError("graph embeddings need torch-geometric: pip install 'tagindex[graph]'")


@dataclass
class EmbedParams(_Params):
    """Training settings for both methods (node2vec uses walk_*, p, q; sage uses hidden/layers)."""

    method: str = "node2vec"
    dim: int = 64
    epochs: int = 4  # as in the dev selection of benchmarks/graph_ablation.py
    lr: float = 0.01
    batch_size: int = 256
    seed: int = 0
    # node2vec
    walk_length: int = 20
    context_size: int = 10
    walks_per_node: int = 5
    p: float = 1.0
    q: float = 1.0
    num_negative_samples: int = 1
    # GraphSAGE (full batch, link prediction)
    hidden: int = 128
    layers: int = 2
    sage_steps: int = 200
    # torch intra-op threads while training (None: torch's default). On a shared 2-core machine one
    # thread measured ~3x faster per node2vec batch than two (thread contention costs more than it buys).
    threads: int | None = None


def homogeneous_edges(nodes: pd.DataFrame, edges: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One symmetric (2, E) edge index over all edge types, parallel edges merged (weights summed)."""
    position = pd.Series(np.arange(len(nodes)), index=nodes["id"].to_numpy())
    src = position.reindex(edges["source"].to_numpy()).to_numpy()
    dst = position.reindex(edges["target"].to_numpy()).to_numpy()
    if np.isnan(src).any() or np.isnan(dst).any():
        raise IndexFormatError("graph edges name nodes that are not in the node table")
    n = len(nodes)
    src, dst = src.astype(np.int64), dst.astype(np.int64)
    weight = edges["weight"].to_numpy(np.float64)
    keep = src != dst
    a = np.concatenate([src[keep], dst[keep]])
    b = np.concatenate([dst[keep], src[keep]])
    w = np.concatenate([weight[keep], weight[keep]])
    key, inverse = np.unique(a * n + b, return_inverse=True)
    merged = np.bincount(inverse, weights=w)
    edge_index = torch.from_numpy(np.stack([key // n, key % n]))
    return edge_index, torch.from_numpy(merged), n


class WalkNode2Vec(Node2Vec if Node2Vec is not None else torch.nn.Module):  # type: ignore[misc]
    """PyG's Node2Vec (skip-gram, negative sampling) fed by :class:`BiasedWalker` walks."""

    def __init__(self, walker: BiasedWalker, params: EmbedParams) -> None:
        _require_pyg()
        torch.nn.Module.__init__(self)  # Node2Vec.__init__ insists on pyg-lib; set its fields ourselves
        self.walker = walker
        self.random_walk_fn = lambda rowptr, col, start, length, p, q: walker.walk(start, length)
        self.num_nodes = walker.num_nodes
        self.EPS = 1e-15
        if params.walk_length < params.context_size:
            raise ValueError("walk_length must be >= context_size")
        self.embedding_dim = params.dim
        self.walk_length = params.walk_length - 1
        self.context_size = params.context_size
        self.walks_per_node = params.walks_per_node
        self.p, self.q = params.p, params.q
        self.num_negative_samples = params.num_negative_samples
        self.rowptr, self.col = walker.rowptr, walker.col
        self.embedding = torch.nn.Embedding(self.num_nodes, params.dim, sparse=True)
        self.reset_parameters()


def train_node2vec(
    edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int, params: EmbedParams
) -> tuple[np.ndarray, list[float]]:
    """node2vec vectors (num_nodes, dim) and the mean loss of each epoch."""
    walker = BiasedWalker(edge_index, num_nodes, edge_weight, p=params.p, q=params.q)
    model = WalkNode2Vec(walker, params)
    loader = model.loader(batch_size=params.batch_size, shuffle=True, num_workers=0)
    optimizer = torch.optim.SparseAdam(list(model.parameters()), lr=params.lr)
    history = []
    for epoch in range(params.epochs):
        total, batches = 0.0, 0
        for pos_rw, neg_rw in loader:
            optimizer.zero_grad()
            loss = model.loss(pos_rw, neg_rw)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        history.append(total / max(batches, 1))
        logger.info("node2vec epoch %d/%d: loss %.4f", epoch + 1, params.epochs, history[-1])
    return model.embedding.weight.detach().numpy().astype(np.float32), history


class _SageLinkModel(torch.nn.Module):
    """Learnable node features -> GraphSAGE -> dot-product link scores."""

    def __init__(self, num_nodes: int, params: EmbedParams) -> None:
        super().__init__()
        self.features = torch.nn.Embedding(num_nodes, params.dim)
        self.sage = GraphSAGE(params.dim, params.hidden, params.layers, out_channels=params.dim)

    def forward(self, edge_index: torch.Tensor) -> torch.Tensor:
        return self.sage(self.features.weight, edge_index)  # (n, dim)


def train_sage(
    edge_index: torch.Tensor, num_nodes: int, params: EmbedParams
) -> tuple[np.ndarray, list[float]]:
    """GraphSAGE vectors (num_nodes, dim) from full-batch link prediction; loss per logged step.

    Each step scores a batch of true edges against as many uniformly sampled non-edges (binary
    cross-entropy). SAGEConv has no edge weights, so weak keyword edges count like the others here.
    """
    _require_pyg()
    model = _SageLinkModel(num_nodes, params)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    n_edges = edge_index.size(1)
    batch = min(n_edges, max(params.batch_size * 64, 4096))
    history = []
    for step in range(params.sage_steps):
        model.train()
        optimizer.zero_grad()
        z = model(edge_index)
        pos = edge_index[:, torch.randint(n_edges, (batch,))]
        neg = negative_sampling(edge_index, num_nodes=num_nodes, num_neg_samples=batch)
        pos_score = (z[pos[0]] * z[pos[1]]).sum(-1)
        neg_score = (z[neg[0]] * z[neg[1]]).sum(-1)
        labels = torch.cat([torch.ones_like(pos_score), torch.zeros_like(neg_score)])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.cat([pos_score, neg_score]), labels)
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == params.sage_steps - 1:
            history.append(float(loss.detach()))
            logger.info("sage step %d/%d: loss %.4f", step + 1, params.sage_steps, float(loss.detach()))
    model.eval()
    with torch.no_grad():
        z = model(edge_index)
    return z.numpy().astype(np.float32), history


def embed_graph(
    graph_dir: str | os.PathLike[str], out: str | os.PathLike[str], params: EmbedParams | None = None
) -> dict[str, Any]:
    """Trains embeddings for every node of a saved graph and saves them; returns the manifest."""
    params = params or EmbedParams()
    if params.method not in METHODS:
        raise ValueError(f"unknown method '{params.method}'; known: {list(METHODS)}")
    torch.manual_seed(params.seed)
    previous_threads = torch.get_num_threads()
    if params.threads:
        torch.set_num_threads(params.threads)
    try:
        return _embed(graph_dir, out, params)
    finally:
        torch.set_num_threads(previous_threads)


def _embed(
    graph_dir: str | os.PathLike[str], out: str | os.PathLike[str], params: EmbedParams
) -> dict[str, Any]:
    nodes, edges = load_graph_tables(graph_dir)
    edge_index, weight, n = homogeneous_edges(nodes, edges)
    start = time.perf_counter()
    if params.method == "node2vec":
        vectors, history = train_node2vec(edge_index, weight, n, params)
    else:
        vectors, history = train_sage(edge_index, n, params)
    seconds = time.perf_counter() - start
    if not np.isfinite(vectors).all():
        raise RuntimeError("embedding training diverged (non-finite vectors); lower the learning rate")
    graph_manifest = read_manifest(graph_dir, "tagindex-graph", verify=False)
    with atomic_directory(out) as tmp:
        nodes[["id", "type"]].to_parquet(tmp / "nodes.parquet", index=False)
        save_file({"vectors": np.ascontiguousarray(vectors)}, str(tmp / "vectors.safetensors"))
        manifest = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "tagindex_version": __version__,
            "params": params.to_dict(),
            "n_nodes": n,
            "n_edges_directed": int(edge_index.size(1)),
            "dim": int(vectors.shape[1]),
            "graph": {"path": str(graph_dir), "counts": graph_manifest.get("counts")},
            "train_seconds": round(seconds, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "loss_history": [round(x, 5) for x in history],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": library_versions("torch", "torch-geometric", "numpy"),
        }
        write_manifest(tmp, manifest)
    logger.info("trained %s on %d nodes in %.1fs", params.method, n, seconds)
    return manifest


@dataclass
class NodeVectors:
    """Saved node embeddings: ``ids`` (node ids), ``types``, ``vectors`` (n, dim) and a row lookup."""

    ids: list[str]
    types: list[str]
    vectors: np.ndarray
    manifest: dict[str, Any]

    def __post_init__(self) -> None:
        self.row = {node: i for i, node in enumerate(self.ids)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def load_embeddings(path: str | os.PathLike[str], verify: bool = True) -> NodeVectors:
    """Reads a directory written by :func:`embed_graph`.

    Raises:
        IndexFormatError: Not a complete, intact embedding directory.
    """
    manifest = read_manifest(path, KIND, verify=verify, format_version=FORMAT_VERSION)
    directory = manifest.root
    table = pd.read_parquet(directory / "nodes.parquet")
    vectors = load_file(str(directory / "vectors.safetensors"))["vectors"]
    if len(table) != len(vectors):
        raise IndexFormatError(f"{directory}: node table and vectors disagree on the node count")
    return NodeVectors(table["id"].tolist(), table["type"].tolist(), vectors, manifest)
