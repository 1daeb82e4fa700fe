"""Fusion of text and graph vectors: inductive product vectors, the score identity, index round trips."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from tagindex.graph.embed import NodeVectors
from tagindex.graph.fusion import FusionParams, GraphFusion

from tagindex.config import EncoderParams
from tagindex.encoders import Encoder, normalize
from tagindex.index import TagIndex
from tagindex.schema import Product, Tag
from tagindex.store import read_manifest


class HashEncoder(Encoder):
    """Deterministic bag-of-words vectors: isolates fusion logic from a real model (unit tests only)."""

    params = EncoderParams(backend="hash")

    @property
    def dim(self) -> int:
        return 32

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), 32), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(">", " ").replace(".", " ").split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] += 1
        return normalize(out + 1e-3)

    def fingerprint(self) -> str:
        return "hash-32"


def _embeddings() -> NodeVectors:
    """Hand-made graph vectors: tag A and its products/keyword along e0, tag B along e1."""
    ids = ["tag:A", "tag:B", "tag:B1", "keyword:garden", "product:p1", "product:p2"]
    types = ["tag", "tag", "tag", "keyword", "product", "product"]
    e = np.eye(4, dtype=np.float32)
    vectors = np.stack([e[0], e[1], e[1] + 0.1 * e[2], e[0] + 0.2 * e[3], e[0], e[1]])
    return NodeVectors(ids, types, vectors, {"params": {"method": "test"}})


TAGS = [Tag("A", "garden tools"), Tag("B", "kitchen"), Tag("B1", "knives", parent="B"), Tag("C", "orphan")]
TRAIN = [Product("p1", "spade shovel", tags=["A"]), Product("p2", "chef knife", tags=["B", "B1"])]


def test_inductive_vectors_for_unseen_products() -> None:
    fusion = GraphFusion.build(
        _embeddings(), HashEncoder(), TRAIN, params=FusionParams(weight=0.5, neighbours=1)
    )
    new = [
        Product("n1", "spade shovel deluxe"),  # no graph features: borrows its text neighbour p1
        Product("n2", "chef knife set", attributes={"breadcrumb": "Garden"}),  # keyword + neighbour p2
        Product("n3", "zzz", attributes={"breadcrumb": "unknown aisle"}),
    ]
    g = fusion.product_graph_vectors(new, HashEncoder().encode([p.title for p in new]))
    assert g.shape == (3, 4) and np.isfinite(g).all()
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-5)
    assert g[0] @ fusion.node_vectors[fusion.row["tag:A"]] > 0.99
    assert g[1, 0] > 0.5 and g[1, 1] > 0.5  # half keyword (A side), half neighbour (B side)
    only_features = GraphFusion.build(
        _embeddings(), HashEncoder(), TRAIN, params=FusionParams(feature_share=1.0)
    )
    g2 = only_features.product_graph_vectors(new[1:2], HashEncoder().encode(["chef knife set"]))
    np.testing.assert_allclose(g2[0], fusion.node_vectors[fusion.row["keyword:garden"]], atol=1e-6)


def test_fused_score_is_weighted_sum_of_cosines_and_tags_fall_back_to_ancestors() -> None:
    w = 0.3
    fusion = GraphFusion.build(_embeddings(), HashEncoder(), TRAIN, params=FusionParams(weight=w))
    by_id = {t.id: t for t in TAGS}
    new_tag = Tag("B2", "forks", parent="B1")
    graph = fusion.tag_graph_vectors([*TAGS, new_tag], {**by_id, "B2": new_tag})
    np.testing.assert_allclose(graph[4], graph[2])  # B2 is not in the graph: its parent's vector
    assert not graph[3].any()  # C has neither a node nor an ancestor
    text = HashEncoder().encode(["garden tools", "spade"])
    g = np.eye(4, dtype=np.float32)[[0, 1]]
    fused = fusion.combine(text, g)
    expected = (1 - w) * float(text[0] @ text[1]) + w * float(g[0] @ g[1])
    assert fused.shape == (2, 36) and abs(float(fused[0] @ fused[1]) - expected) < 1e-6


def test_index_with_fusion_saves_loads_and_tags_the_same(tmp_path: Path) -> None:
    fusion = GraphFusion.build(_embeddings(), HashEncoder(), TRAIN, params=FusionParams(weight=0.4))
    index = TagIndex.build(TAGS, encoder=HashEncoder(), fusion=fusion)
    assert index.vector_dim == 36
    products = [Product("x", "shovel", attributes={"breadcrumb": "garden"}), Product("y", "knife block")]
    before = [r.to_dict() for r in index.tag(products, top_k=3)]
    index.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx", "tagindex", verify=False)
    assert manifest["vector_dim"] == 36 and manifest["fusion"]["type"] == "graph"
    assert manifest["fusion"]["params"]["weight"] == 0.4
    assert any(name.startswith("graph/") for name in manifest["files"])
    loaded = TagIndex.load(tmp_path / "idx", encoder=HashEncoder())
    assert [r.to_dict() for r in loaded.tag(products, top_k=3)] == before
    assert before[0]["tags"][0]["tag"] == "A"
    loaded.add_tags([Tag("B2", "forks", parent="B1")])  # added later: graph part from its parent
    assert "B2" in loaded and loaded.similar("B2", top_k=1)[0].tag in {"B1", "B"}


def test_pool_from_tags_when_graph_has_no_products() -> None:
    emb = _embeddings()
    keep = [i for i, t in enumerate(emb.types) if t == "tag"]
    tags_only = NodeVectors([emb.ids[i] for i in keep], ["tag"] * len(keep), emb.vectors[keep], {})
    fusion = GraphFusion.build(tags_only, HashEncoder(), None, params=FusionParams(neighbours=1))
    index = TagIndex.build(TAGS[:3], encoder=HashEncoder(), fusion=fusion)
    assert len(fusion.pool_text) == 3
    g = fusion.product_graph_vectors([Product("q", "knives")], HashEncoder().encode(["knives"]))
    assert g[0] @ fusion.node_vectors[fusion.row["tag:B1"]] > 0.99
    assert index.similar("knives", top_k=1)[0].tag == "B1"
    with pytest.raises(ValueError, match="in \\[0, 1\\)"):
        FusionParams(weight=1.0)


@pytest.mark.slow
def test_cli_graph_pipeline_on_real_sample(mwpd_dir: Path, tmp_path: Path) -> None:
    """graph build -> graph embed -> index --graph -> tag, through the real CLI and the real encoder."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join((mwpd_dir / "train.jsonl").read_text().splitlines(keepends=True)[:150]))
    val = tmp_path / "val.jsonl"
    val.write_text("".join((mwpd_dir / "validation.jsonl").read_text().splitlines(keepends=True)[:20]))
    tags = mwpd_dir / "tags.jsonl"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "tagindex.cli", "-q", *args], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done

    out = cli("graph", "build", "--products", str(train), "--tags", str(tags), "--out", str(tmp_path / "g"))
    assert "product                     150" in out.stdout and "product_tag" in out.stdout
    emb = cli(
        "graph",
        "embed",
        "--graph",
        str(tmp_path / "g"),
        "--out",
        str(tmp_path / "e"),
        "--epochs",
        "1",
        "--walks-per-node",
        "1",
        "--dim",
        "16",
    )
    assert json.loads(emb.stdout)["n_nodes"] > 150
    cli(
        "index",
        "--tags",
        str(tags),
        "--graph",
        str(tmp_path / "e"),
        "--graph-weight",
        "0.2",
        "--out",
        str(tmp_path / "idx"),
    )
    cli("tag", "--index", str(tmp_path / "idx"), "--products", str(val), "--out", str(tmp_path / "run.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and all(len(r["tags"]) == 10 for r in rows)
    assert all(r["tags"][0]["score"] >= r["tags"][-1]["score"] for r in rows)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "tagindex.cli",
            "graph",
            "embed",
            "--graph",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "error" in bad.stderr and "Traceback" not in bad.stderr
