"""Static token-embedding encoders for very large catalogs: a distilled table lookup, no transformer.

``distill_static`` follows model2vec's recipe (the ``model2vec`` distiller itself could not be
installed here: its ``distill`` extra downgrades transformers): every vocabulary token is run
through the (possibly fine-tuned) encoder as ``[CLS] token [SEP]`` and mean-pooled, the table is
reduced with PCA and tokens are weighted by Zipf's law on their vocabulary rank. Encoding a text
is then the mean of its tokens' rows, normalised: tens of thousands of texts per second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagindex.backends.batching import TokenBatcher
from tagindex.backends.common import cache_root, check_mean_pooling, read_derived_manifest, source_digest
from tagindex.config import DEFAULT_MODEL, EncoderParams
from tagindex.encoders import Encoder, EncoderError, resolve_model_path
from tagindex.store import atomic_directory, library_versions, write_manifest

logger = logging.getLogger(__name__)

STATIC_KIND = "tagindex-static-encoder"
STATIC_FORMAT_VERSION = 1
STATIC_DIM = 256


def distill_static(
    source: str, out: str | Path, dim: int = STATIC_DIM, batch_size: int = 512, show_progress: bool = False
) -> Path:
    """Distils a sentence-transformers model into a static token table directory.

    Args:
        source: sentence-transformers model directory or ``packaged:`` name.
        out: Directory to write (replaced only on success).
        dim: Output dimension after PCA (at most the model's dimension).
        batch_size: Tokens per forward pass.
        show_progress: Progress bar over the vocabulary.

    Returns:
        The written directory.
    """
    import torch
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer
    from tqdm.auto import tqdm
    from transformers import AutoModel

    src = resolve_model_path(source)
    check_mean_pooling(src)
    tokenizer = Tokenizer.from_file(str(Path(src) / "tokenizer.json"))
    vocab_size = tokenizer.get_vocab_size()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise EncoderError(f"{src}: static distillation supports BERT-style [CLS]/[SEP] tokenizers only")
    model = AutoModel.from_pretrained(src, local_files_only=True).eval()
    table = np.zeros((vocab_size, model.config.hidden_size), dtype=np.float32)  # (vocab, hidden)
    with torch.inference_mode():
        for start in tqdm(range(0, vocab_size, batch_size), disable=not show_progress, desc="distil"):
            ids = torch.arange(start, min(start + batch_size, vocab_size))
            batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            table[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    dim = min(dim, table.shape[1])
    centred = table - table.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ components[:dim].T  # (vocab, dim)
    # Zipf weighting: frequent (low-rank) tokens carry less meaning; log(2 + rank) keeps rank 0 non-zero.
    reduced *= np.log(2.0 + np.arange(vocab_size, dtype=np.float32))[:, None]
    with atomic_directory(out) as tmp:
        save_file(
            {"embeddings": np.ascontiguousarray(reduced, dtype=np.float32)},
            str(tmp / "embeddings.safetensors"),
        )
        shutil.copy2(Path(src) / "tokenizer.json", tmp / "tokenizer.json")
        write_manifest(
            tmp,
            {
                "kind": STATIC_KIND,
                "format_version": STATIC_FORMAT_VERSION,
                "dim": int(dim),
                "method": "token [CLS] t [SEP] mean pool, PCA, Zipf log(2 + rank) weights",
                "source": src if source != DEFAULT_MODEL else DEFAULT_MODEL,
                "source_sha256": source_digest(src),
                "versions": library_versions("torch", "transformers"),
            },
        )
    return Path(out)


def cached_distill(source: str) -> Path:
    src = resolve_model_path(source)
    target = cache_root() / "static" / f"{STATIC_DIM}-{source_digest(src)[:20]}"
    if read_derived_manifest(target, STATIC_KIND, STATIC_FORMAT_VERSION) is None:
        logger.info("distilling %s into a static table, cached in %s", source, target)
        distill_static(source, target)
    return target


def pool_static(table: np.ndarray, ids: Sequence[Sequence[int]], fallback_id: int) -> np.ndarray:
    """Mean of token rows per text, unit length; an empty text gets the fallback token's row.

    Returns:
        (len(ids), dim) float32.
    """
    ids = [x if len(x) else [fallback_id] for x in ids]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    if not len(ids):
        return np.zeros((0, table.shape[1]), dtype=np.float32)
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sums = np.add.reduceat(table[flat], starts, axis=0)  # (n, dim)
    means = sums / lengths[:, None]
    return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class StaticEncoder(Encoder):
    """A distilled static table (``params.model``: a static directory or a model to distil from)."""

    def __init__(self, params: EncoderParams) -> None:
        from safetensors.numpy import load_file

        self.params = params
        manifest = read_derived_manifest(params.model, STATIC_KIND)
        if manifest is None:
            params.model = str(cached_distill(params.model))
            manifest = read_derived_manifest(params.model, STATIC_KIND)
            assert manifest is not None
        directory = Path(params.model)
        self.table = load_file(str(directory / "embeddings.safetensors"))["embeddings"]  # (vocab, dim)
        # Static vectors cost nothing per token, so the cap is only a guard against huge inputs.
        self.batcher = TokenBatcher(
            directory / "tokenizer.json", 512, params.batch_size, special_tokens=False
        )
        self.unk = self.batcher.tokenizer.token_to_id("[UNK]") or 0
        key = {**params.to_dict(), "model": manifest.get("files", {}), "device": None}
        self._fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return pool_static(self.table, self.batcher.tokenize(texts), self.unk)
