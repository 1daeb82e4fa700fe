"""Shared pieces of the rerank / calibration / explanation tests.

``HashEncoder`` and ``HashCrossEncoder`` are stand-ins that isolate the ranking and decision logic in
fast unit tests; the slow tests use the real packaged MiniLM.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagindex.config import EncoderParams
from tagindex.encoders import Encoder
from tagindex.schema import Product, Tag

ROOT = Path(__file__).resolve().parents[2]
MWPD = ROOT.parent / "shared" / "data" / "mwpd"


def _hash_vec(token: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha1(token.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(dim)


class HashEncoder(Encoder):
    """Bag of hashed lower-case words: similar texts get similar unit vectors."""

    def __init__(self, dim: int = 32) -> None:
        self.params = EncoderParams(backend="hash", model="hash")
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for tok in re.findall(r"\w+", text.lower()):
                out[i] += _hash_vec(tok, self._dim)
            out[i] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class HashCrossEncoder:
    """Scores a pair by shared words (a deterministic stand-in for CrossEncoder.predict)."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(
        self, pairs, batch_size=32, activation_fn=None, show_progress_bar=False, convert_to_numpy=True
    ):
        self.calls += 1
        out = []
        for a, b in pairs:
            wa, wb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
            out.append(
                len(wa & wb) - 0.01 * len(wb) + (int(hashlib.sha1(b.encode()).hexdigest()[:4], 16) % 7) * 1e-4
            )
        return np.array(out, dtype=np.float32)


def toy_tags() -> list[Tag]:
    return [
        Tag("food", "Food"),
        Tag("dairy", "Dairy", parent="food"),
        Tag("cheese", "Cheese", parent="dairy"),
        Tag("milk", "Milk", parent="dairy"),
        Tag("bakery", "Bakery", parent="food"),
        Tag("bread", "Bread", parent="bakery"),
        Tag("tech", "Electronics"),
        Tag("computers", "Computers", parent="tech"),
        Tag("laptop", "Laptop computers", parent="computers"),
        Tag("monitor", "Computer monitor screens", parent="computers"),
        Tag("audio", "Audio", parent="tech"),
        Tag("headphones", "Headphones", parent="audio"),
    ]


def toy_products() -> list[Product]:
    return [
        Product("p1", "Aged cheddar cheese 200g", tags=["cheese"]),
        Product("p2", "Whole milk 1 litre", tags=["milk"]),
        Product("p3", "Sourdough bread loaf", tags=["bread"]),
        Product("p4", "Gaming laptop 15 inch computers", tags=["laptop"]),
        Product("p5", "27 inch IPS monitor screen", tags=["monitor"]),
        Product("p6", "Wireless noise cancelling headphones", tags=["headphones"]),
    ]


def mwpd_sample(tmp_dir: Path, n_train: int = 60, n_val: int = 12):
    """Converted real MWPD: (tags, train sample, validation sample), or None without the data."""
    import random

    from tagindex.convert import convert
    from tagindex.io import load_products, load_tags

    if not (MWPD / "train.json").exists():
        return None
    out = tmp_dir / "mwpd"
    convert("mwpd", MWPD, out)
    rng = random.Random(7)
    train = rng.sample(load_products(out / "train.jsonl"), n_train)
    val = rng.sample(load_products(out / "validation.jsonl"), n_val)
    return load_tags(out / "tags.jsonl"), train, val
