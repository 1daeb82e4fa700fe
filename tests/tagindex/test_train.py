"""Contrastive fine-tuning: pair building (unit), and a tiny real training run end to end (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tagindex.config import TextParams
from tagindex.devsplit import dev_split
from tagindex.schema import Product, Tag
from tagindex.train import PairBuilder, TrainParams

TAGS = [
    Tag("a", "Apparel"),
    Tag("a1", "Shirts", parent="a"),
    Tag("a2", "Trousers", parent="a"),
    Tag("e", "Electronics"),
    Tag("e1", "Phones", parent="e", synonyms=["mobiles"]),
    Tag("c", "Colour: red"),
]


def products() -> list[Product]:
    out = [Product(f"s{i}", f"cotton shirt model {i}", tags=["a", "a1", "c"]) for i in range(12)]
    out += [Product(f"t{i}", f"chino trousers {i}", tags=["a", "a2"]) for i in range(3)]
    out += [Product("p0", "Samsung phones bundle", tags=["e", "e1"])]
    return out


def test_rows_have_no_false_negatives_and_respect_the_tag_cap() -> None:
    params = TrainParams(max_per_tag=5, min_per_tag=4, product_pairs=1.0, ancestor_pairs=1.0)
    builder = PairBuilder(products(), TAGS, params, TextParams())
    builder.mine([t.id for t in TAGS], np.eye(len(TAGS), dtype=np.float32))
    rows = builder.epoch_rows(1)
    tag_text = builder.tag_texts
    # A row's own negative is never one of its anchor's tags, ancestors included.
    for r in rows:
        assert not (r.negative_keys & r.closure)
    # The head tag a1 (12 products) is capped at 5 anchors per epoch.
    a1_rows = [r for r in rows if r.positive == tag_text["a1"]]
    assert len(a1_rows) == 5
    # Multi-label: a shirt is also "Colour: red", so the c rows are never negatives for a shirt.
    assert "c" in builder.closures[0]
    # Rare tag e1 (one product) is topped up with augmented copies and pseudo-products from its text.
    e1_anchors = [r.anchor for r in rows if r.positive == tag_text["e1"]]
    assert len(e1_anchors) >= 4 and "Phones" in e1_anchors and "mobiles" in e1_anchors
    assert any("mobiles" in a and "bundle" in a for a in e1_anchors)  # synonym replacement
    # Ancestor positives carry the lower weight; product -> product pairs exist.
    assert {r.weight for r in rows if r.positive == tag_text["a"]} == {params.ancestor_weight}
    assert any(r.positive == "cotton shirt model 3" for r in rows)
    # Epochs are re-drawn from the seed: reproducible, and different across epochs.
    assert [r.anchor for r in builder.epoch_rows(1)] == [r.anchor for r in rows]
    assert [r.anchor for r in builder.epoch_rows(2)] != [r.anchor for r in rows]


def test_dev_split_is_seeded_stratified_and_order_free() -> None:
    ps = products()
    fit, dev = dev_split(ps, 0.25, seed=3)
    assert len(fit) + len(dev) == len(ps) and not {p.id for p in fit} & {p.id for p in dev}
    assert "p0" in {p.id for p in fit}  # a tag's only product stays in training
    fit2, dev2 = dev_split(list(reversed(ps)), 0.25, seed=3)
    assert {p.id for p in dev2} == {p.id for p in dev}
    assert {p.id for p in dev_split(ps, 0.25, seed=4)[1]} != {p.id for p in dev} or len(dev) == 0
    with pytest.raises(ValueError):
        dev_split(ps, 1.5)


def test_train_params_round_trip_and_reject_unknown_keys() -> None:
    p = TrainParams.fast()
    assert TrainParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="unknown"):
        TrainParams.from_dict({"epochz": 1})


@pytest.fixture(scope="module")
def tiny_mwpd(mwpd_dir: Path) -> tuple[list[Product], list[Tag]]:
    from tagindex.io import load_products, load_tags

    train = load_products(mwpd_dir / "train.jsonl")[:48]
    # Only the tags these products use: every dev evaluation re-encodes the whole vocabulary.
    used = {t for p in train for t in p.tags}
    return train, [t for t in load_tags(mwpd_dir / "tags.jsonl") if t.id in used]


TINY = TrainParams(
    epochs=2,
    patience=2,
    batch_size=8,
    max_per_tag=2,
    min_per_tag=1,
    pseudo_products=False,
    product_pairs=0.3,
    ancestor_pairs=0.2,
    dev_fraction=0.2,
    dev_exemplars=24,
    max_seq_length=32,
)


@pytest.mark.slow
def test_training_runs_end_to_end_reloads_and_is_deterministic(
    tmp_path: Path, tiny_mwpd, tiny_model: Path
) -> None:
    # Mechanics (epochs, manifest, reload, determinism, CLI) on the tiny model, in seconds; what
    # fine-tuning MiniLM is worth is measured by benchmarks/train_models.py (docs/training.md).
    from sentence_transformers import SentenceTransformer

    from tagindex.cli import main
    from tagindex.config import EncoderParams
    from tagindex.encoders import load_encoder
    from tagindex.io import write_jsonl
    from tagindex.train import read_training_manifest, train

    products, tags = tiny_mwpd
    report = train(products, tags, tmp_path / "m1", str(tiny_model), params=TINY)
    assert len(report.epochs) == 3 and report.epochs[0]["epoch"] == 0
    # Loss decreases: the last epoch's mean loss is below the first's on the same products.
    per_epoch = [e["train_loss"] for e in report.epochs[1:]]
    assert per_epoch[-1] < per_epoch[0]
    manifest = read_training_manifest(tmp_path / "m1")
    assert manifest["train_params"] == TINY.to_dict()
    assert manifest["data"]["n_fit"] + manifest["data"]["n_dev"] == len(products)
    assert len(manifest["data"]["products"]) == 64 and manifest["best_epoch"] == report.best_epoch

    texts = ["Sterling Silver Angel Charm", "HP Pavilion 23xi IPS Monitor"]
    direct = SentenceTransformer(str(tmp_path / "m1"), device="cpu").encode(texts, normalize_embeddings=True)
    via_tagindex = load_encoder(EncoderParams(model=str(tmp_path / "m1"))).encode(texts)
    np.testing.assert_allclose(via_tagindex, direct, atol=1e-5)

    # Same seed, same data -> the same model; this time through the CLI with --config.
    write_jsonl(tmp_path / "tags.jsonl", (t.to_dict() for t in tags))
    write_jsonl(tmp_path / "train.jsonl", (p.to_dict() for p in products))
    (tmp_path / "cfg.json").write_text(json.dumps(TINY.to_dict()))
    common = [
        "-q",
        "train",
        "--products",
        str(tmp_path / "train.jsonl"),
        "--tags",
        str(tmp_path / "tags.jsonl"),
        "--base",
        str(tiny_model),
    ]
    assert main([*common, "--out", str(tmp_path / "m2"), "--config", str(tmp_path / "cfg.json")]) == 0
    assert read_training_manifest(tmp_path / "m2")["train_params"] == TINY.to_dict()
    again = load_encoder(EncoderParams(model=str(tmp_path / "m2"))).encode(texts)
    np.testing.assert_allclose(again, via_tagindex, atol=1e-6)

    # The trained model indexes with --model, exemplars included; bad config -> exit 2.
    idx = ["-q", "index", "--tags", str(tmp_path / "tags.jsonl"), "--model", str(tmp_path / "m2")]
    assert main([*idx, "--products", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "idx")]) == 0
    assert main([*common, "--out", str(tmp_path / "bad"), "--config", str(tmp_path / "nope.json")]) == 2


def test_train_rejects_unknown_tags(tmp_path: Path) -> None:
    from tagindex.train import train

    with pytest.raises(ValueError, match="not in the vocabulary"):
        train([Product("1", "x", tags=["zzz"])], TAGS, tmp_path / "m")
    with pytest.raises(ValueError, match="no labelled products"):
        train([Product("1", "x")], TAGS, tmp_path / "m")
