"""Splits: same seed -> byte-identical files; the zero-shot split keeps held-out tags out of training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagindex.io import load_products, load_tags, write_jsonl
from tagindex.splits import cross_dataset, dev_split, mwpd_zeroshot, tag_similarity

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def _toy_mwpd(directory: Path) -> None:
    tags = [{"id": "r", "name": "Root"}]
    tags += [{"id": f"m{i}", "name": f"Mid {i}", "parent": "r"} for i in range(2)]
    tags += [{"id": f"l{i}", "name": f"Leaf {i}", "parent": f"m{i % 2}"} for i in range(20)]
    write_jsonl(directory / "tags.jsonl", tags)
    train = [
        {"id": f"t{i}-{j}", "title": f"item {i} {j}", "tags": ["r", f"m{i % 2}", f"l{i}"]}
        for i in range(20)
        for j in range(1 + i % 5)  # leaves 0, 5, 10, 15 have one product: not eligible
    ]
    write_jsonl(directory / "train.jsonl", train)
    val = [{"id": f"v{i}", "title": f"val {i}", "tags": ["r", f"m{i % 2}", f"l{i}"]} for i in range(20)]
    write_jsonl(directory / "validation.jsonl", val)


def test_mwpd_zeroshot_is_deterministic_and_holds_tags_out(tmp_path: Path) -> None:
    _toy_mwpd(tmp_path / "src")
    a = mwpd_zeroshot(tmp_path / "src", tmp_path / "a", seed=7)
    mwpd_zeroshot(tmp_path / "src", tmp_path / "b", seed=7)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    held = set(json.loads((tmp_path / "a" / "heldout_tags.json").read_text()))
    # 12 eligible leaves (3+ products: i % 5 >= 2), 20% of them held out.
    assert a["counts"]["eligible_tags"] == 12 and len(held) == 2
    assert all(int(t[1:]) % 5 >= 2 for t in held)
    train = load_products(tmp_path / "a" / "train.jsonl")
    assert not any(held & set(p.tags) for p in train)
    removed = load_products(tmp_path / "a" / "removed.jsonl")
    assert len(train) + len(removed) == len(load_products(tmp_path / "src" / "train.jsonl"))
    assert all(held & set(p.tags) for p in removed)
    heldout = load_products(tmp_path / "a" / "heldout.jsonl")
    assert {p.tags[-1] for p in heldout} == held
    other = mwpd_zeroshot(tmp_path / "src", tmp_path / "c", seed=8)
    assert other["outputs"] != a["outputs"]  # a different seed draws a different split
    with pytest.raises(ValueError, match="fraction"):
        mwpd_zeroshot(tmp_path / "src", tmp_path / "d", fraction=1.5)


def test_dev_split_is_deterministic_and_partitions(tmp_path: Path) -> None:
    _toy_mwpd(tmp_path / "src")
    src = tmp_path / "src" / "train.jsonl"
    m = dev_split(src, tmp_path / "a", seed=1, fraction=0.25)
    dev_split(src, tmp_path / "b", seed=1, fraction=0.25)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    train = {p.id for p in load_products(tmp_path / "a" / "train.jsonl")}
    dev = {p.id for p in load_products(tmp_path / "a" / "dev.jsonl")}
    assert not train & dev and train | dev == {p.id for p in load_products(src)}
    assert len(dev) == m["counts"]["dev_products"] == round(0.25 * 60)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tagindex.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_real_splits_via_cli_are_byte_identical(tmp_path: Path) -> None:
    if not (DATA / "mwpd" / "train.json").exists():
        pytest.skip("real data not found at ../shared/data")
    assert (
        _cli("convert", "mwpd", "--src", str(DATA / "mwpd"), "--out", str(tmp_path / "mwpd")).returncode == 0
    )
    for name in ("a", "b"):
        res = _cli("split", "mwpd-zeroshot", "--data", str(tmp_path / "mwpd"), "--out", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    manifest = json.loads((tmp_path / "a" / "split.json").read_text())
    assert manifest["counts"]["heldout_tags"] == round(0.2 * manifest["counts"]["eligible_tags"])
    res = _cli("split", "cross-dataset", "--data", str(tmp_path / "mwpd"), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "--other" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_cross_dataset_and_tag_similarity_on_real_data(tmp_path: Path) -> None:
    if not (DATA / "attribute-tags" / "oa-mine").exists():
        pytest.skip("real data not found at ../shared/data")
    from tagindex.convert import convert

    convert("attribute-tags", DATA / "attribute-tags" / "ae-110k", tmp_path / "ae-110k")
    convert("attribute-tags", DATA / "attribute-tags" / "oa-mine", tmp_path / "oa-mine")
    m = cross_dataset(tmp_path / "ae-110k", tmp_path / "oa-mine", tmp_path / "cross")
    assert m["counts"]["shared_categories"] == []
    both = tmp_path / "cross" / "ae-110k_to_oa-mine"
    tag_ids = {t.id for t in load_tags(both / "tags.jsonl")}
    assert all(set(p.tags) <= tag_ids for p in load_products(both / "test.jsonl"))
    convert("google", DATA / "shopify-taxonomy", tmp_path / "google")
    s = tag_similarity(
        DATA / "shopify-taxonomy" / "shopify_to_google_dev.jsonl",
        tmp_path / "google" / "tags.jsonl",
        tmp_path / "sim",
    )
    assert s["counts"] == {"queries": 2589, "tags": 5595}
    first = load_products(tmp_path / "sim" / "queries.jsonl")[0]
    assert first.title.startswith("Animals & Pet Supplies >") and first.tags[0].startswith("google:")
