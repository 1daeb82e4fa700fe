"""Static distillation: offline, unit vectors, self-contained.

Distilling the packaged MiniLM runs all 30,522 vocabulary tokens through it (~1-2 minutes on 2
cores), so these tests distil ``tiny_model`` (one BERT layer, 32 wide, MiniLM's tokenizer, seeded
random weights; tests/conftest.py): the recipe (table, PCA, Zipf weights, pooling, saving) is the
same code. What the real distillation is worth is measured in ``benchmarks/speed.py``
(docs/results.md), not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagindex.backends.static import distill_static
from tagindex.config import EncoderParams, TagIndexParams
from tagindex.encoders import load_encoder
from tagindex.index import TagIndex
from tagindex.schema import Product, Tag
from tagindex.store import read_manifest

TINY_DIM = 32


@pytest.fixture(scope="module")
def static_dir(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return distill_static(str(tiny_model), tmp_path_factory.mktemp("static") / "m")


def test_static_encoder_unit_vectors(static_dir: Path) -> None:
    enc = load_encoder(EncoderParams(backend="static", model=str(static_dir)))
    vectors = enc.encode(["leather handbag", "", "garden hose 20 m"])
    assert vectors.shape == (3, TINY_DIM) and enc.dim == TINY_DIM  # PCA keeps at most the model's width
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    a, b, c = enc.encode(["women's leather handbag", "leather shoulder bag", "garden hose"])
    assert a @ b > a @ c


def test_static_index_round_trip(static_dir: Path, tmp_path: Path) -> None:
    tags = [Tag(id="bags", name="Handbags"), Tag(id="garden", name="Garden hoses"), Tag(id="tea", name="Tea")]
    params = TagIndexParams(encoder=EncoderParams(backend="static", model=str(static_dir)))
    index = TagIndex.build(tags, params)
    product = Product(id="p", title="black leather handbag with zip")
    assert index.tag_one(product, top_k=1).tags[0].tag == "bags"
    index.save(tmp_path / "idx")
    assert (read_manifest(tmp_path / "idx", "tagindex").root / "encoder" / "embeddings.safetensors").is_file()
    loaded = TagIndex.load(tmp_path / "idx")
    assert loaded.tag_one(product, top_k=3).tags == index.tag_one(product, top_k=3).tags
