"""ONNX Runtime backends: offline export, agreement with PyTorch, caching and self-contained indexes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="install tagindex[onnx]")

from tagindex.config import EncoderParams, TagIndexParams  # noqa: E402
from tagindex.encoders import EncoderError, load_encoder  # noqa: E402
from tagindex.index import TagIndex  # noqa: E402
from tagindex.io import load_products, load_tags  # noqa: E402
from tagindex.store import read_manifest
from tagindex.text import product_text  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tagindex-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("TAGINDEX_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def texts(mwpd_dir: Path) -> list[str]:
    products = load_products(mwpd_dir / "validation.jsonl")[:120]
    # Real product texts, plus one far over the 128-token cap to exercise truncation.
    return [product_text(p) for p in products] + [" ".join(p.title for p in products[:60])]


@pytest.fixture(scope="module")
def stock(encoder, texts: list[str]) -> np.ndarray:
    return encoder.encode(texts)


def test_fp32_matches_pytorch(cache: Path, texts: list[str], stock: np.ndarray) -> None:
    enc = load_encoder(EncoderParams(backend="onnx"))
    vectors = enc.encode(texts)
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * stock).sum(axis=1)
    assert cosine.min() > 1 - 1e-3
    assert Path(enc.params.model).is_relative_to(cache)  # model rewritten to the cached export
    manifest = json.loads((Path(enc.params.model) / "manifest.json").read_text())
    assert manifest["kind"] == "tagindex-onnx-encoder" and manifest["precision"] == "fp32"


def test_int8_is_close(cache: Path, texts: list[str], stock: np.ndarray) -> None:
    enc = load_encoder(EncoderParams(backend="onnx-int8"))
    vectors = enc.encode(texts)
    assert vectors.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * stock).sum(axis=1)
    assert cosine.mean() > 0.98 and cosine.min() > 0.9


def test_export_is_cached_and_order_is_kept(cache: Path, texts: list[str]) -> None:
    first = load_encoder(EncoderParams(backend="onnx"))
    model_file = Path(first.params.model) / "model.onnx"
    mtime = model_file.stat().st_mtime_ns
    second = load_encoder(EncoderParams(backend="onnx"))
    assert second.params.model == first.params.model and model_file.stat().st_mtime_ns == mtime
    assert first.fingerprint() == second.fingerprint()
    batch = second.encode(texts[:10])
    one_by_one = np.concatenate([second.encode([t]) for t in texts[:10]])
    assert np.allclose(batch, one_by_one, atol=1e-5)  # length sorting never reorders the output


def test_precision_mismatch_is_refused(cache: Path) -> None:
    fp32_dir = load_encoder(EncoderParams(backend="onnx")).params.model
    with pytest.raises(EncoderError, match="fp32 ONNX export"):
        load_encoder(EncoderParams(backend="onnx-int8", model=fp32_dir))


def test_saved_index_is_self_contained(cache: Path, mwpd_dir: Path, tmp_path: Path) -> None:
    tags = load_tags(mwpd_dir / "tags.jsonl")[:80]
    products = load_products(mwpd_dir / "validation.jsonl")[:20]
    params = TagIndexParams(encoder=EncoderParams(backend="onnx-int8"))
    params.index.vector_format = "float16"
    index = TagIndex.build(tags, params)
    before = index.tag(products, top_k=5)
    index.save(tmp_path / "idx")
    assert (read_manifest(tmp_path / "idx", "tagindex").root / "encoder" / "model.onnx").is_file()
    # Drop the cache: the saved index must not depend on it.
    moved = tmp_path / "moved-cache"
    shutil.move(str(cache), moved)
    try:
        loaded = TagIndex.load(tmp_path / "idx")
        assert loaded.params.encoder.backend == "onnx-int8"
        assert loaded.params.index.vector_format == "float16"
        after = loaded.tag(products, top_k=5)
    finally:
        shutil.move(str(moved), cache)
    assert [[s.tag for s in r.tags] for r in after] == [[s.tag for s in r.tags] for r in before]
    assert loaded.encoder.fingerprint() == index.encoder.fingerprint()


def test_missing_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAGINDEX_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(EncoderError, match=r"tagindex\[onnx\]"):
        load_encoder(EncoderParams(backend="onnx"))
