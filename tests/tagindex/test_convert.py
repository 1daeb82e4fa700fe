from __future__ import annotations

from pathlib import Path

import pytest

from tagindex.convert import convert
from tagindex.io import DataError, check_gold_tags, load_products, load_tags


def test_mwpd_converter_on_the_real_files(mwpd_dir: Path) -> None:
    tags = {t.id: t for t in load_tags(mwpd_dir / "tags.jsonl")}
    train = load_products(mwpd_dir / "train.jsonl")
    validation = load_products(mwpd_dir / "validation.jsonl")
    assert (len(train), len(validation)) == (10012, 3000)
    levels = {
        t.id: 1 if t.parent is None else 2 if tags[t.parent].parent is None else 3 for t in tags.values()
    }
    assert [sum(v == lvl for v in levels.values()) for lvl in (1, 2, 3)] == [37, 76, 281]
    assert tags["64010100_Jewellery"].parent == "64010000_Personal Accessories"
    assert all(len(p.tags) == 3 for p in train + validation)
    check_gold_tags(train + validation, set(tags))
    assert not any("\ufffd" in p.title + p.description for p in train)
    assert not any("\ufffd" in t.name for t in tags.values())  # ids keep the raw label, names are clean


def test_attribute_tags_converter(shared_data: Path, tmp_path: Path) -> None:
    report = convert("attribute-tags", shared_data / "attribute-tags" / "ae-110k", tmp_path)
    train, test = load_products(tmp_path / "train.jsonl"), load_products(tmp_path / "test.jsonl")
    assert (len(train), len(test)) == (1568, 524)
    assert report.skipped["n/a attribute values"] > 0
    first = train[0]
    assert first.attributes == {"category": "Lure"}
    assert "Brand Name: SEAPESCA" in first.tags
    check_gold_tags(train + test, {t.id for t in load_tags(tmp_path / "tags.jsonl")})


def test_shopify_and_google_converters(shared_data: Path, tmp_path: Path) -> None:
    convert("shopify", shared_data / "shopify-taxonomy", tmp_path / "s")
    shopify = {t.id: t for t in load_tags(tmp_path / "s" / "tags.jsonl")}
    categories = [t for t in shopify.values() if t.kind == "category"]
    assert len(categories) == 10595
    assert shopify["aa-1"].parent == "aa" and shopify["aa-1"].name == "Clothing"
    assert shopify["color__black"].name == "Color: Black" and shopify["color__black"].description
    convert("google", shared_data / "shopify-taxonomy", tmp_path / "g")
    google = {t.id: t for t in load_tags(tmp_path / "g" / "tags.jsonl")}
    assert len(google) == 5595 and google["google:3237"].parent == "google:1"


def test_converter_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        convert("mwpd", tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DataError, match="no split files"):
        convert("mwpd", tmp_path, tmp_path / "out")
    (tmp_path / "train.json").write_text('{"ID": "1", "Name": "x", "lvl1": "a"}\nnot json\n')
    with pytest.raises(DataError, match=r"train.json:2: invalid JSON"):
        convert("mwpd", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "tags.jsonl").exists()
