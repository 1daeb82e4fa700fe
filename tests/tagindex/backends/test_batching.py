"""Length-sorted batching, truncation and pooling used by the ONNX and static backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagindex.backends.batching import TokenBatcher, mean_pool
from tagindex.backends.static import pool_static
from tagindex.encoders import resolve_model_path


@pytest.fixture(scope="module")
def tokenizer_file() -> Path:
    return Path(resolve_model_path("packaged:all-MiniLM-L6-v2")) / "tokenizer.json"


TEXTS = [
    "steel water bottle",
    "a",
    "wireless noise cancelling over-ear headphones with microphone and a long battery life " * 4,
    "organic cotton t-shirt, blue, size M",
    "",
    "garden hose 20 m",
]


def test_batches_cover_every_text_once_sorted_and_tightly_padded(tokenizer_file: Path) -> None:
    batcher = TokenBatcher(tokenizer_file, max_seq_length=32, batch_size=2)
    ids = batcher.tokenize(TEXTS)
    seen: list[int] = []
    widths = []
    for batch in batcher.batches(TEXTS):
        seen.extend(batch.rows.tolist())
        lengths = batch.attention_mask.sum(axis=1)
        assert batch.input_ids.shape[1] == lengths.max()  # padded only to the batch's longest text
        for r, row in enumerate(batch.rows.tolist()):
            assert batch.input_ids[r, : lengths[r]].tolist() == ids[row]
            assert (batch.input_ids[r, lengths[r] :] == batcher.pad_id).all()
        widths.append(batch.input_ids.shape[1])
    assert sorted(seen) == list(range(len(TEXTS)))
    assert widths == sorted(widths, reverse=True)


def test_truncation_keeps_the_head_and_ends_with_sep(tokenizer_file: Path) -> None:
    batcher = TokenBatcher(tokenizer_file, max_seq_length=16, batch_size=8)
    ids = batcher.tokenize([TEXTS[2]])[0]
    tok = batcher.tokenizer
    assert len(ids) == 16
    assert ids[0] == tok.token_to_id("[CLS]") and ids[-1] == tok.token_to_id("[SEP]")
    assert tok.decode(ids).startswith("wireless noise cancelling")


def test_mean_pool_ignores_padding_and_normalises() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)  # (1, 3, 2)
    mask = np.array([[1, 1, 0]])
    pooled = mean_pool(hidden, mask)
    assert np.allclose(pooled, np.array([[2.0, 2.0]]) / np.sqrt(8.0))


def test_pool_static_means_rows_and_falls_back_for_empty_text() -> None:
    table = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]], dtype=np.float32)
    out = pool_static(table, [[0, 1], [], [0]], fallback_id=2)
    assert np.allclose(out, [[0.70710677, 0.70710677], [0.70710677, 0.70710677], [1.0, 0.0]])
    assert pool_static(table, [], 0).shape == (0, 2)
