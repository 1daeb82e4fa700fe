"""Which sentence-transformers pooling configs the ONNX export accepts (both config formats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagindex.backends.common import check_mean_pooling
from tagindex.encoders import EncoderError


def model_dir(tmp_path: Path, pooling: dict) -> Path:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (tmp_path / "tokenizer.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize(
    "pooling",
    [
        {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True},  # sentence-transformers < 6
        {"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": True},  # >= 6 (fine-tuned)
    ],
)
def test_mean_pooling_is_accepted_in_both_formats(tmp_path: Path, pooling: dict) -> None:
    check_mean_pooling(model_dir(tmp_path, pooling))


@pytest.mark.parametrize(
    "pooling",
    [
        {"pooling_mode": "cls"},
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
        {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
    ],
)
def test_other_pooling_is_refused(tmp_path: Path, pooling: dict) -> None:
    with pytest.raises(EncoderError, match="only mean-pooling"):
        check_mean_pooling(model_dir(tmp_path, pooling))
