"""Fusion of text and graph vectors into one searchable vector per tag and per product.

A fused vector is ``[sqrt(1 - w) * text, sqrt(w) * graph]`` with both parts unit-length, so the inner
product of a product and a tag is ``(1 - w) * cos_text + w * cos_graph``: ``w`` (``weight``) is the share
of the score that comes from the graph, chosen on a dev split carved from the training products.

Tags take the vector of their graph node (or, for a tag added after the graph was built, of their
nearest ancestor that has one). Products are new, so their graph vector is inferred **inductively**:
the mean of the vectors of the keyword / attribute-value nodes they share with the graph, mixed with
the similarity-weighted mean graph vector of their nearest labelled products by text (the
"neighbour pool": the graph's products, or the tags themselves for a graph without products).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file
from tagindex.graph.build import GraphParams, product_features
from tagindex.graph.embed import NodeVectors

from tagindex.config import TextParams, _Params
from tagindex.encoders import Encoder, VectorCache
from tagindex.schema import Product, Tag
from tagindex.store import IndexFormatError, read_manifest, write_manifest
from tagindex.text import ancestors, product_text
from tagindex.version import __version__

logger = logging.getLogger(__name__)

KIND = "tagindex-graph-fusion"
FORMAT_VERSION = 1
_LOOKUP_TYPES = ("tag", "keyword", "value", "attribute")


@dataclass
class FusionParams(_Params):
    """How text and graph vectors are combined.

    Attributes:
        weight: Share of the score from the graph part, in [0, 1).
        neighbours: Labelled products (by text similarity) whose graph vectors a new product borrows.
        feature_share: Share of a product's graph vector taken from its own keyword / value nodes
            when it has any (the rest comes from its neighbours).
    """

    # 0.5: the best of 0..0.7 on a seeded 10% dev split of MWPD train (level-3 MRR, node2vec), see
    # benchmarks/graph_ablation.py; validation and test splits played no part in it.
    weight: float = 0.5
    neighbours: int = 10
    feature_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight < 1.0:
            raise ValueError(f"graph weight must be in [0, 1), got {self.weight}")
        if self.neighbours < 1:
            raise ValueError("neighbours must be >= 1")


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norm > 0, x / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


class GraphFusion:
    """Graph vectors for tags and (inductively) for products, and their fusion with text vectors
    (a :class:`tagindex.interfaces.VectorFusion`, registered as ``graph`` in
    :data:`tagindex.registry.FUSIONS`).

    Args:
        params: Fusion settings.
        node_ids: Ids of the graph nodes kept for lookup (tags, keywords, values, attributes).
        node_vectors: (n_nodes, graph_dim) their embeddings (normalised here).
        pool_text: (n_pool, text_dim) unit text vectors of the labelled neighbour pool.
        pool_graph: (n_pool, graph_dim) graph vectors of the same pool.
        graph_params: The graph's build parameters (to map product attributes onto nodes the same way).
        pool_from_tags: The pool is filled with the tags themselves as they are added (graphs
            without products, e.g. a bare taxonomy).
        source: Description of the embedding the vectors came from (stored in the manifest).
    """

    type_name = "graph"

    def __init__(
        self,
        params: FusionParams,
        node_ids: Sequence[str],
        node_vectors: np.ndarray,
        pool_text: np.ndarray,
        pool_graph: np.ndarray,
        graph_params: GraphParams | None = None,
        pool_from_tags: bool = False,
        source: dict[str, Any] | None = None,
    ) -> None:
        self.params = params
        self.node_ids = list(node_ids)
        self.node_vectors = _unit(np.asarray(node_vectors, dtype=np.float32))  # (n_nodes, graph_dim)
        self.row = {n: i for i, n in enumerate(self.node_ids)}
        self.pool_text = np.asarray(pool_text, dtype=np.float32)  # (n_pool, text_dim)
        self.pool_graph = _unit(np.asarray(pool_graph, dtype=np.float32).reshape(len(pool_text), self.dim))
        self.graph_params = graph_params or GraphParams()
        self.pool_from_tags = pool_from_tags
        self.source = source or {}

    @property
    def dim(self) -> int:
        return int(self.node_vectors.shape[1])

    @classmethod
    def build(
        cls,
        embeddings: NodeVectors,
        encoder: Encoder,
        products: Sequence[Product] | None = None,
        text_params: TextParams | None = None,
        params: FusionParams | None = None,
        graph_params: GraphParams | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
    ) -> GraphFusion:
        """Fusion from saved node embeddings; ``products`` (the graph's labelled products) form the pool.

        Products that are not nodes of the graph are ignored for the pool (they have no graph vector).
        Without products, the tags become the pool as they are added.
        """
        params = params or FusionParams()
        keep = [i for i, t in enumerate(embeddings.types) if t in _LOOKUP_TYPES]
        node_ids = [embeddings.ids[i] for i in keep]
        in_graph = [p for p in products or [] if f"product:{p.id}" in embeddings.row]
        if products and not in_graph:
            raise ValueError("none of the products is a node of the graph: pass the graph's training file")
        text_dim = encoder.dim
        if in_graph:
            texts = [product_text(p, text_params) for p in in_graph]
            start = time.perf_counter()
            if cache_dir is not None:
                pool_text = VectorCache(cache_dir, encoder).encode(texts, show_progress=show_progress)
            else:
                pool_text = encoder.encode(texts, show_progress=show_progress)
            logger.info("encoded %d pool products in %.1fs", len(texts), time.perf_counter() - start)
            rows = [embeddings.row[f"product:{p.id}"] for p in in_graph]
            pool_graph = embeddings.vectors[rows]
        else:
            pool_text = np.zeros((0, text_dim), dtype=np.float32)
            pool_graph = np.zeros((0, embeddings.dim), dtype=np.float32)
        source = {
            "method": embeddings.manifest.get("params", {}).get("method"),
            "n_nodes": len(embeddings.ids),
            "graph": embeddings.manifest.get("graph", {}).get("path"),
        }
        return cls(
            params,
            node_ids,
            embeddings.vectors[keep],
            pool_text,
            pool_graph,
            graph_params,
            pool_from_tags=not in_graph,
            source=source,
        )

    # ---- graph vectors ----------------------------------------------------------------------------
    def tag_graph_vectors(self, tags: Sequence[Tag], by_id: Mapping[str, Tag]) -> np.ndarray:
        """(n, graph_dim): the tag's node vector, else its nearest ancestor's, else zeros."""
        out = np.zeros((len(tags), self.dim), dtype=np.float32)
        missing = 0
        for i, tag in enumerate(tags):
            for candidate in [tag.id, *ancestors(tag.id, by_id)]:
                row = self.row.get(f"tag:{candidate}")
                if row is not None:
                    out[i] = self.node_vectors[row]
                    break
            else:
                missing += 1
        if missing:
            logger.warning(
                "%d of %d tags (and ancestors) are not in the graph: text only", missing, len(tags)
            )
        return out

    def product_graph_vectors(self, products: Sequence[Product], text_vectors: np.ndarray) -> np.ndarray:
        """(n, graph_dim) inductive graph vectors for products that need not be in the graph."""
        n = len(products)
        features = np.zeros((n, self.dim), dtype=np.float32)
        has_feature = np.zeros(n, dtype=bool)
        for i, p in enumerate(products):
            rows = [self.row[f] for f in product_features(p, self.graph_params) if f in self.row]
            if rows:
                features[i] = self.node_vectors[rows].mean(axis=0)
                has_feature[i] = True
        features = _unit(features)
        neighbours = self._neighbour_vectors(text_vectors)  # (n, graph_dim)
        share = np.where(has_feature, self.params.feature_share, 0.0)[:, None]
        if not len(self.pool_text):
            share = np.where(has_feature, 1.0, 0.0)[:, None]
        return _unit(share * features + (1.0 - share) * neighbours)

    def _neighbour_vectors(self, text_vectors: np.ndarray, chunk: int = 2048) -> np.ndarray:
        out = np.zeros((len(text_vectors), self.dim), dtype=np.float32)
        if not len(self.pool_text):
            return out
        k = min(self.params.neighbours, len(self.pool_text))
        for start in range(0, len(text_vectors), chunk):
            sims = text_vectors[start : start + chunk] @ self.pool_text.T  # (b, n_pool)
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (b, k)
            weights = np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None) + 1e-6  # (b, k)
            out[start : start + chunk] = np.einsum("bk,bkd->bd", weights, self.pool_graph[top]) / weights.sum(
                axis=1, keepdims=True
            )
        return _unit(out)

    # ---- fusion -----------------------------------------------------------------------------------
    def combine(self, text_vectors: np.ndarray, graph_vectors: np.ndarray) -> np.ndarray:
        """(n, text_dim + graph_dim): weighted concatenation; rows are unit-length where the graph part
        is non-zero (a row without a graph vector keeps only its text share of the score)."""
        w = self.params.weight
        return np.ascontiguousarray(
            np.concatenate([np.sqrt(1.0 - w) * text_vectors, np.sqrt(w) * _unit(graph_vectors)], axis=1),
            dtype=np.float32,
        )

    def fuse_tags(
        self, tags: Sequence[Tag], text_vectors: np.ndarray, by_id: Mapping[str, Tag]
    ) -> np.ndarray:
        graph_vectors = self.tag_graph_vectors(tags, by_id)
        if self.pool_from_tags:
            has = np.linalg.norm(graph_vectors, axis=1) > 0
            self.pool_text = np.concatenate([self.pool_text, text_vectors[has]])
            self.pool_graph = np.concatenate([self.pool_graph, graph_vectors[has]])
        return self.combine(text_vectors, graph_vectors)

    def fuse_products(self, products: Sequence[Product], text_vectors: np.ndarray) -> np.ndarray:
        return self.combine(text_vectors, self.product_graph_vectors(products, text_vectors))

    # ---- persistence ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "dim": self.dim,
            "n_nodes": len(self.node_ids),
            "n_pool": len(self.pool_text),
            "pool_from_tags": self.pool_from_tags,
            "source": self.source,
        }

    def save(self, directory: Path) -> None:
        """Writes into ``directory`` (a sub-directory of a saved index, created here)."""
        directory.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"id": self.node_ids}).to_parquet(directory / "nodes.parquet", index=False)
        save_file(
            {
                "node_vectors": np.ascontiguousarray(self.node_vectors),
                "pool_text": np.ascontiguousarray(self.pool_text),
                "pool_graph": np.ascontiguousarray(self.pool_graph),
            },
            str(directory / "fusion.safetensors"),
        )
        write_manifest(
            directory,
            {
                "kind": KIND,
                "format_version": FORMAT_VERSION,
                "tagindex_version": __version__,
                "graph_params": self.graph_params.to_dict(),
                **self.describe(),
            },
        )

    @classmethod
    def load(cls, directory: str | os.PathLike[str], verify: bool = True) -> GraphFusion:
        """Reads what :meth:`save` wrote.

        Raises:
            IndexFormatError: Missing, corrupted or incompatible files.
        """
        manifest = read_manifest(directory, KIND, verify=verify, format_version=FORMAT_VERSION)
        directory = manifest.root
        ids = pd.read_parquet(directory / "nodes.parquet")["id"].tolist()
        arrays = load_file(str(directory / "fusion.safetensors"))
        if len(ids) != len(arrays["node_vectors"]):
            raise IndexFormatError(f"{directory}: node ids and vectors disagree")
        return cls(
            FusionParams.from_dict(manifest["params"]),
            ids,
            arrays["node_vectors"],
            arrays["pool_text"],
            arrays["pool_graph"],
            GraphParams.from_dict(manifest["graph_params"]),
            pool_from_tags=bool(manifest["pool_from_tags"]),
            source=manifest.get("source"),
        )


def fusion_from_cli(args: Any, index_params: Any, encoder: Encoder) -> GraphFusion:
    """The fusion for ``tagindex index --graph EMB_DIR [--graph-products F] [--graph-weight W]``.

    The neighbour pool defaults to the products file the graph was built from (recorded in its
    manifest); a graph built without products (a bare taxonomy) uses the tags as the pool.
    """
    from tagindex.graph.embed import load_embeddings

    from tagindex.io import load_products

    embeddings = load_embeddings(args.graph)
    graph_dir = embeddings.manifest.get("graph", {}).get("path")
    graph_manifest: dict[str, Any] = {}
    if graph_dir and (Path(graph_dir) / "manifest.json").exists():
        graph_manifest = read_manifest(graph_dir, "tagindex-graph", verify=False)
    products_path = args.graph_products or graph_manifest.get("inputs", {}).get("products")
    products = None
    if products_path:
        if not Path(products_path).exists():
            raise ValueError(f"{products_path}: the graph's products file is gone; pass --graph-products")
        products = load_products(products_path)
    elif any(t == "product" for t in embeddings.types):
        raise ValueError("the graph has products but their file is unknown; pass --graph-products")
    params = FusionParams()
    if args.graph_weight is not None:
        params = FusionParams(weight=args.graph_weight, neighbours=params.neighbours)
    graph_params = GraphParams.from_dict(graph_manifest["params"]) if "params" in graph_manifest else None
    return GraphFusion.build(
        embeddings,
        encoder,
        products,
        index_params.text,
        params,
        graph_params,
        cache_dir=args.cache,
        show_progress=not args.quiet,
    )
