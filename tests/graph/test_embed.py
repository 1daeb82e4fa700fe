"""Embedding training (node2vec on our walks, GraphSAGE link prediction) and the saved format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tagindex.graph.build import build_graph, save_graph
from tagindex.graph.embed import EmbedParams, embed_graph, load_embeddings

from tagindex.schema import Product, Tag
from tagindex.store import IndexFormatError


def _two_communities(tmp_path: Path) -> Path:
    """Two tag trees whose products never mix: embeddings should keep them apart."""
    tags = [Tag("A", "A"), Tag("a1", "a1", parent="A"), Tag("B", "B"), Tag("b1", "b1", parent="B")]
    products = [
        Product(
            f"{side}{i}",
            "t",
            attributes={"breadcrumb": f"shop {side} > aisle {i % 3}"},
            tags=[side, f"{side.lower()}1"],
        )
        for side in "AB"
        for i in range(15)
    ]
    save_graph(build_graph(products, tags), tmp_path / "g")
    return tmp_path / "g"


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize(
    "params",
    [
        EmbedParams(
            method="node2vec",
            dim=16,
            epochs=15,
            batch_size=8,
            lr=0.05,
            walk_length=8,
            context_size=4,
            walks_per_node=4,
            p=0.5,
            q=2.0,
        ),
        EmbedParams(method="sage", dim=16, hidden=32, sage_steps=60, lr=0.02),
    ],
    ids=["node2vec", "sage"],
)
def test_training_gives_finite_vectors_that_reflect_structure(tmp_path: Path, params: EmbedParams) -> None:
    graph_dir = _two_communities(tmp_path)
    manifest = embed_graph(graph_dir, tmp_path / "emb", params)
    emb = load_embeddings(tmp_path / "emb")
    assert emb.vectors.shape == (manifest["n_nodes"], 16) and np.isfinite(emb.vectors).all()
    assert manifest["loss_history"][-1] < manifest["loss_history"][0]
    own = [
        _cos(emb.vectors[emb.row[f"product:{s}{i}"]], emb.vectors[emb.row[f"tag:{s}"]])
        for s in "AB"
        for i in range(15)
    ]
    other = [
        _cos(emb.vectors[emb.row[f"product:{s}{i}"]], emb.vectors[emb.row[f"tag:{t}"]])
        for s, t in ("AB", "BA")
        for i in range(15)
    ]
    assert np.mean(own) > np.mean(other) + 0.2


def test_embedding_directory_is_checked(tmp_path: Path) -> None:
    graph_dir = _two_communities(tmp_path)
    embed_graph(graph_dir, tmp_path / "emb", EmbedParams(dim=8, epochs=1, walk_length=4, context_size=2))
    (tmp_path / "emb" / "vectors.safetensors").write_bytes(b"x")
    with pytest.raises(IndexFormatError):
        load_embeddings(tmp_path / "emb")
    with pytest.raises(ValueError, match="unknown method"):
        embed_graph(graph_dir, tmp_path / "e2", EmbedParams(method="gcn"))
