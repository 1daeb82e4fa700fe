"""Shared fixtures: offline switches, the real-data location and a session-wide encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TAGINDEX_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data (see README); tests that need it skip with the reason when it is absent."""
    if not (SHARED_DATA / "mwpd" / "train.json").exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (set TAGINDEX_DATA or run `make data`)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def encoder():
    from tagindex.encoders import load_encoder

    return load_encoder()


@pytest.fixture(scope="session")
def mwpd_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MWPD converted by the real converter: tags.jsonl, train.jsonl, validation.jsonl."""
    from tagindex.convert import convert

    out = tmp_path_factory.mktemp("mwpd")
    convert("mwpd", shared_data / "mwpd", out)
    return out


@pytest.fixture(scope="session")
def mwpd_sample(mwpd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 60 MWPD validation offers, written as a products file."""
    out = tmp_path_factory.mktemp("sample") / "products.jsonl"
    with (mwpd_dir / "validation.jsonl").open() as f:
        lines = [next(f) for _ in range(60)]
    out.write_text("".join(lines))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers directory: one BERT layer, 32 wide, seeded random weights, MiniLM's tokenizer.

    For tests of mechanics that train or distil a model (round trips, file formats, what is kept):
    it trains in a fraction of a second where MiniLM takes minutes on 2 cores. What training is worth
    is measured with the real model by the benchmarks, never with this one.
    """
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    from tagindex.encoders import resolve_model_path

    source = Path(resolve_model_path("packaged:all-MiniLM-L6-v2"))
    raw = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(raw)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy2(source / name, raw / name)
    out = tmp_path_factory.mktemp("tiny-model") / "model"
    SentenceTransformer(str(raw), device="cpu").save(str(out))  # adds mean pooling and the ST files
    return out
