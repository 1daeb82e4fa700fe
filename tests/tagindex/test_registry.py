"""Registries: lazy names, one-line plug-ins (a reranker, a vector fusion), old manifests still load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rerank_helpers import HashEncoder, toy_products, toy_tags

from tagindex.candidates import Candidate, RankedCandidates, from_bi_encoder
from tagindex.config import TagIndexParams
from tagindex.index import TagIndex
from tagindex.interfaces import Reranker as RerankerProtocol
from tagindex.pipeline import TaggingPipeline, load_reranker
from tagindex.registry import ENCODERS, FUSIONS, RERANKERS, Registry, UnknownNameError
from tagindex.schema import Product, Tag
from tagindex.store import atomic_directory, read_manifest, resolve, write_manifest


@pytest.fixture(autouse=True)
def _restore_registries() -> Any:
    """Entries a test registers do not outlive it."""
    saved = [(r, dict(r._entries)) for r in (ENCODERS, RERANKERS, FUSIONS)]
    yield
    for registry, entries in saved:
        registry._entries = entries


def test_a_registry_resolves_lazily_and_names_the_known_entries() -> None:
    reg: Registry[Any] = Registry("widget", {"path": "os.path:join", "obj": len})
    assert reg.names() == ["path", "obj"] and "path" in reg
    assert reg.get("path") is os.path.join and reg.get("obj") is len
    with pytest.raises(UnknownNameError, match=r"unknown widget 'nope'; known: \['obj', 'path'\]"):
        reg.get("nope")


def test_listing_encoder_backends_imports_no_backend() -> None:
    code = (
        "import sys; from tagindex.registry import ENCODERS; names = ENCODERS.names(); "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'onnxruntime', 'tagindex.backends', "
        "'tagindex.encoders') if m in sys.modules]; "
        "assert not heavy, heavy; print(','.join(names))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().split(",")[:2] == ["sentence-transformers", "onnx"]


def test_every_registered_name_resolves() -> None:
    for registry in (ENCODERS, RERANKERS, FUSIONS):
        for name in registry.names():
            assert callable(registry.get(name)) or hasattr(registry.get(name), "load"), name


# ---- a new reranker: one class (here in the test module) + one registry line ------------------------
class ReverseReranker:
    """Reverses the bi-encoder order of the head (a stand-in for a new reranker type)."""

    type_name = "reverse"

    def __init__(self, depth: int = 3) -> None:
        self._depth = depth

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def fingerprint(self) -> str | None:
        return "reverse-1"

    def rerank(
        self,
        index: Any,
        products: Sequence[Product],
        candidates: Sequence[Any],
        depth: int | None = None,
        show_progress: bool = False,
    ) -> list[RankedCandidates]:
        depth = depth or self._depth
        ranked = [c if isinstance(c, RankedCandidates) else from_bi_encoder([c])[0] for c in candidates]
        out = []
        for r in ranked:
            head = [
                Candidate(c.tag, c.bi_score, -i, 1.0 - i / 10)
                for i, c in enumerate(r.candidates[:depth][::-1])
            ]
            out.append(RankedCandidates(r.id, head + r.candidates[depth:]))
        return out

    def mismatch(self, index: Any) -> str | None:
        return None

    def forget_tag_texts(self) -> None:
        pass

    def save(self, path: str | os.PathLike[str]) -> None:
        with atomic_directory(path) as tmp:
            (tmp / "model").mkdir()
            (tmp / "model" / "depth.json").write_text(json.dumps(self._depth))
            write_manifest(
                tmp,
                {"kind": "tagindex-reranker", "format_version": 1, "reranker_type": "reverse",
                 "params": {"depth": self._depth}},
            )  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> ReverseReranker:
        read_manifest(path, "tagindex-reranker", verify=verify)
        return cls(json.loads((Path(path) / "model" / "depth.json").read_text()))


def test_a_new_reranker_type_plugs_in_with_one_registry_line(tmp_path: Path) -> None:
    RERANKERS.register("reverse", f"{__name__}:ReverseReranker")  # the one line
    ReverseReranker(depth=3).save(tmp_path / "rr")
    reranker = load_reranker(tmp_path / "rr")
    assert isinstance(reranker, ReverseReranker) and isinstance(reranker, RerankerProtocol)
    index = TagIndex.build(toy_tags(), encoder=HashEncoder())
    products = toy_products()
    plain = TaggingPipeline(index).rank(products, 5)
    reranked = TaggingPipeline(index, reranker).rank(products, 5)
    assert [c.tag for c in reranked[0].candidates[:3]] == [c.tag for c in plain[0].candidates[:3]][::-1]


# ---- vector fusion: the manifest names its type -------------------------------------------------------
class OnesFusion:
    """Appends a constant unit part to every vector (a stand-in for a new fusion type)."""

    type_name = "ones"
    dim = 2

    def _fuse(self, vectors: np.ndarray) -> np.ndarray:
        extra = np.full((len(vectors), self.dim), np.sqrt(0.5), dtype=np.float32)
        return np.hstack([vectors * np.sqrt(0.5), extra * np.sqrt(0.5)]).astype(np.float32)

    def fuse_tags(
        self, tags: Sequence[Tag], text_vectors: np.ndarray, by_id: Mapping[str, Tag]
    ) -> np.ndarray:
        return self._fuse(text_vectors)

    def fuse_products(self, products: Sequence[Product], text_vectors: np.ndarray) -> np.ndarray:
        return self._fuse(text_vectors)

    def describe(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        (directory / "ones.json").write_text("{}")

    @classmethod
    def load(cls, directory: str | os.PathLike[str], verify: bool = True) -> OnesFusion:
        assert (Path(directory) / "ones.json").exists()
        return cls()


def _hash_params() -> TagIndexParams:
    ENCODERS.register("hash-test", lambda params: HashEncoder())
    params = TagIndexParams()
    params.encoder.backend = "hash-test"
    return params


def test_a_saved_index_loads_its_fusion_by_the_type_its_manifest_names(tmp_path: Path) -> None:
    FUSIONS.register("ones", f"{__name__}:OnesFusion.load")
    index = TagIndex.build(toy_tags(), _hash_params(), encoder=HashEncoder(), fusion=OnesFusion())
    index.save(tmp_path / "idx")
    live = resolve(tmp_path / "idx")[0]
    assert json.loads((live / "manifest.json").read_text())["fusion"] == {"type": "ones", "dim": 2}
    loaded = TagIndex.load(tmp_path / "idx")
    assert isinstance(loaded.fusion, OnesFusion) and loaded.vector_dim == index.vector_dim
    products = toy_products()
    assert [r.to_dict() for r in loaded.tag(products)] == [r.to_dict() for r in index.tag(products)]


def _plain_copy(index: TagIndex, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The index saved, then copied into the plain (unversioned) layout of older saves, with its manifest."""
    index.save(tmp_path / "saved")
    directory = tmp_path / "plain"
    shutil.copytree(resolve(tmp_path / "saved")[0], directory)
    return directory, json.loads((directory / "manifest.json").read_text())


def test_an_index_saved_before_fusion_types_loads_its_graph(tmp_path: Path, monkeypatch) -> None:
    """Older manifests carry ``"graph": {...}`` (no ``fusion``): the ``graph`` loader reads ``graph/``."""
    index = TagIndex.build(toy_tags(), _hash_params(), encoder=HashEncoder(), fusion=OnesFusion())
    directory, manifest = _plain_copy(index, tmp_path)
    (directory / "ones").rename(directory / "graph")
    manifest["graph"] = manifest.pop("fusion")
    write_manifest(directory, manifest)
    seen = []

    def graph_loader(path: Path, verify: bool = True) -> OnesFusion:
        seen.append(Path(path).name)
        return OnesFusion()

    monkeypatch.setitem(FUSIONS._entries, "graph", graph_loader)
    assert isinstance(TagIndex.load(directory).fusion, OnesFusion) and seen == ["graph"]


def test_an_unknown_fusion_type_is_a_clear_format_error(tmp_path: Path) -> None:
    from tagindex.store import IndexFormatError

    FUSIONS.register("ones", f"{__name__}:OnesFusion.load")
    index = TagIndex.build(toy_tags(), _hash_params(), encoder=HashEncoder(), fusion=OnesFusion())
    directory, manifest = _plain_copy(index, tmp_path)
    manifest["fusion"]["type"] = "no-such-fusion"
    write_manifest(directory, manifest)
    with pytest.raises(IndexFormatError, match="unknown fusion type 'no-such-fusion'"):
        TagIndex.load(directory)
