"""Static distillation from the packaged MiniLM: offline, unit vectors, meaningful, self-contained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagindex.backends.static import STATIC_DIM, distill_static
from tagindex.config import EncoderParams, TagIndexParams
from tagindex.encoders import load_encoder
from tagindex.index import TagIndex
from tagindex.schema import Product, Tag
from tagindex.store import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return distill_static("packaged:all-MiniLM-L6-v2", tmp_path_factory.mktemp("static") / "m")


def test_static_encoder_unit_vectors(static_dir: Path) -> None:
    enc = load_encoder(EncoderParams(backend="static", model=str(static_dir)))
    vectors = enc.encode(["leather handbag", "", "garden hose 20 m"])
    assert vectors.shape == (3, STATIC_DIM) and enc.dim == STATIC_DIM
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
