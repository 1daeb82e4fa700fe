from __future__ import annotations

import json
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


def _mwpd_row(i: int, **extra: object) -> str:
    row = {"ID": str(i), "Name": f"Offer {i}", "lvl1": "1_Food", "lvl2": "2_Fruit", "lvl3": "3_Apples"}
    return json.dumps({**row, **extra})


def _good_outputs(src: Path, out: Path) -> dict[str, str]:
    (src / "train.json").write_text("\n".join(_mwpd_row(i) for i in range(3)) + "\n")
    (src / "validation.json").write_text(_mwpd_row(9) + "\n")
    convert("mwpd", src, out)
    return {p.name: p.read_text() for p in out.iterdir()}


def test_empty_source_exits_without_touching_outputs(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    before = _good_outputs(src, out)
    assert set(before) == {"train.jsonl", "validation.jsonl", "tags.jsonl"}
    (src / "train.json").write_text("")
    with pytest.raises(DataError, match=r"train.json: no usable rows"):
        convert("mwpd", src, out)
    assert {p.name: p.read_text() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("not json", "validation.json:2: invalid JSON"),
        ("[" * 100_000 + "]" * 100_000, "validation.json:2: invalid JSON (nested deeper than"),
        (_mwpd_row(10, ID={"a": 1}), "validation.json:2: column 'ID' must be a non-empty string or integer"),
        (_mwpd_row(10, Name=["x"]), "validation.json:2: column 'Name' must be text"),
        (_mwpd_row(10, Name="n" * 5000), "validation.json:2: column 'Name' is longer than 4,000"),
        ('{"ID": 1' + "0" * 5000 + "}", "validation.json:2: invalid JSON (Exceeds the limit"),
    ],
)
def test_bad_later_file_leaves_every_output_untouched(tmp_path: Path, bad_line: str, message: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    before = _good_outputs(src, out)
    (src / "train.json").write_text(_mwpd_row(5) + "\n")  # would change train.jsonl
    (src / "validation.json").write_text(_mwpd_row(9) + "\n" + bad_line + "\n")
    with pytest.raises(DataError) as err:
        convert("mwpd", src, out)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(src)), err.value
    assert message in str(err.value)
    assert {p.name: p.read_text() for p in out.iterdir()} == before


def test_attribute_tags_accept_value_lists_and_value_score_objects(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rows = [
        {"input": "Red cotton shirt", "target_scores": {"Color": {"Red": 1}, "Material": {"n/a": 1}}},
        {"input": "Blue wool hat", "target_scores": {"Color": ["Blue"]}},
    ]
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    convert("attribute-tags", src, tmp_path / "out")
    assert [p.tags for p in load_products(tmp_path / "out" / "train.jsonl")] == [
        ["Color: Red"],
        ["Color: Blue"],
    ]
    (src / "train.jsonl").write_text(json.dumps({"input": "x", "target_scores": {"Color": "Red"}}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl:1: 'target_scores' must map attributes to values"):
        convert("attribute-tags", src, tmp_path / "out2")
