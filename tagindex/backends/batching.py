"""Tokenisation with a truncation policy, and length-sorted batches that waste no padding.

Used by the ONNX and static backends. ``tokenizers`` (Rust) tokenises a whole list at once, so
the exact token length of every text is known before any batch is formed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Batch:
    """One padded batch: ``rows`` are positions in the input list."""

    rows: np.ndarray  # (b,)
    input_ids: np.ndarray  # (b, length) int64
    attention_mask: np.ndarray  # (b, length) int64


class TokenBatcher:
    """Tokenises with the model's own ``tokenizer.json`` and groups texts of similar length.

    Truncation policy: a text longer than ``max_seq_length`` tokens keeps its first tokens (then
    ``[SEP]``), exactly as sentence-transformers does. ``product_text`` puts the title first, then
    attributes, then the (already character-clipped) description, so truncation only ever cuts
    the tail of the description.

    Args:
        tokenizer_file: Path to a Hugging Face ``tokenizer.json``.
        max_seq_length: Token cap per text, special tokens included.
        batch_size: Texts per batch.
        special_tokens: Add ``[CLS]``/``[SEP]`` (transformers) or not (static embeddings).
    """

    def __init__(
        self,
        tokenizer_file: str | Path,
        max_seq_length: int,
        batch_size: int,
        special_tokens: bool = True,
    ) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.max_seq_length = max_seq_length
        self.batch_size = max(1, batch_size)
        self.special_tokens = special_tokens
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated, without padding."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=self.special_tokens)
        return [e.ids for e in encodings]

    def batches(self, texts: Sequence[str]) -> Iterator[Batch]:
        """Padded batches, longest texts first, each padded only to its own longest text."""
        ids = self.tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        # Longest first: the first batch shows the worst-case memory at once, like sentence-transformers.
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(1, int(lengths[rows].max()))
            input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, row in enumerate(rows.tolist()):
                n = lengths[row]
                input_ids[r, :n] = ids[row]
                mask[r, :n] = 1
            yield Batch(rows, input_ids, mask)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of token vectors over the attention mask, then unit length (sentence-transformers' recipe).

    Args:
        hidden: (b, length, dim) token vectors.
        mask: (b, length) 1 for real tokens.

    Returns:
        (b, dim) float32 unit rows.
    """
    m = mask[..., None].astype(np.float32)  # (b, length, 1)
    summed = (hidden * m).sum(axis=1)  # (b, dim)
    pooled = summed / np.maximum(m.sum(axis=1), 1e-9)
    # sentence-transformers' Normalize uses F.normalize: x / max(||x||, 1e-12).
    return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)
