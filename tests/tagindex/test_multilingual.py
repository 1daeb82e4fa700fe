"""Chinese text normalisation, ``convert shopify --locale`` and tag names per language."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagindex.config import TextParams
from tagindex.convert import convert
from tagindex.io import DataError, load_tags
from tagindex.schema import Product, Tag
from tagindex.text import has_cjk, normalize_text, product_text, tag_text


# ---- text ----------------------------------------------------------------------------------------------
def test_full_width_forms_and_chinese_punctuation_become_ascii() -> None:
    assert normalize_text("ＡＢＣ，１２３：男装（新款）") == "ABC,123:男装(新款)"
    assert normalize_text("运动鞋。男装、女装《新款》") == '运动鞋. 男装, 女装"新款"'
    assert normalize_text("  Nike　运动鞋  ") == "Nike 运动鞋"  # ideographic space, mixed zh/en


def test_ascii_text_is_returned_unchanged() -> None:
    text = "Men's  boots, size 42 (EU)"
    assert normalize_text(text) is text


def test_traditional_chinese_becomes_simplified() -> None:
    pytest.importorskip("opencc", reason="needs opencc-python-reimplemented (extra zh)")
    assert normalize_text("運動鞋與男裝") == "运动鞋与男装"
    assert normalize_text("運動鞋", simplify=False) == "運動鞋"


def test_encoder_inputs_are_normalised() -> None:
    params = TextParams(description_chars=0, include_attributes=False)
    assert product_text(Product("p", "ＮＩＫＥ　运动鞋，黑色"), params) == "NIKE 运动鞋,黑色"
    assert tag_text(Tag("t", "运动鞋（男）"), {}, params) == "运动鞋(男)"
    assert has_cjk("Nike 鞋") and not has_cjk("Nike ｓｈｏｅ")


# ---- names per language ------------------------------------------------------------------------------
def test_name_in_picks_the_language_and_falls_back() -> None:
    tag = Tag("boots", "Boots", names={"en": "Boots", "zh-CN": "靴子"})
    assert tag.name_in("zh-CN") == "靴子"
    assert tag.name_in("zh-cn") == "靴子"
    assert tag.name_in("zh") == "靴子"  # primary language finds the regional name
    assert tag.name_in("fr") == "Boots"
    assert tag.name_in(None) == "Boots"
    assert Tag("x", "X").name_in("zh-CN") == "X"


def test_names_round_trip_through_files_and_single_language_files_are_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "tags.jsonl"
    tags = [Tag("boots", "靴子", names={"en": "Boots", "zh-CN": "靴子"}), Tag("hats", "Hats")]
    path.write_text("".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in tags))
    assert "names" not in path.read_text().splitlines()[1]
    assert load_tags(path) == tags
    csv = tmp_path / "tags.csv"
    csv.write_text('id,name,names\nboots,Boots,"{""zh-CN"": ""靴子""}"\nhats,Hats,\n')
    assert [t.names for t in load_tags(csv)] == [{"zh-CN": "靴子"}, {}]
    csv.write_text('id,name,names\nboots,Boots,"[1, 2]"\n')
    with pytest.raises(DataError, match=r"tags.csv:2: 'names' must map"):
        load_tags(csv)


def test_names_round_trip_through_a_saved_index_and_old_indexes_still_load(tmp_path: Path) -> None:
    from tagindex.index import TagIndex

    tags = [
        Tag("boots", "靴子", names={"en": "Boots", "zh-CN": "靴子"}),
        Tag("hats", "Hats"),
    ]
    index = TagIndex.build(tags)
    index.save(tmp_path / "ix")
    loaded = TagIndex.load(tmp_path / "ix")
    assert loaded.get("boots").names == {"en": "Boots", "zh-CN": "靴子"}
    assert loaded.get("hats").names == {}
    # An index written before names existed has no "names" column in its tag table.
    from tagindex.index import read_tag_rows

    old_rows = [{"id": "a", "name": "A", "description": "", "parent": None, "kind": "tag", "synonyms": []}]
    assert read_tag_rows(old_rows)[0].names == {}


# ---- convert shopify --locale -------------------------------------------------------------------------
def _mini_taxonomy(root: Path) -> Path:
    (root / "dist" / "en").mkdir(parents=True)
    (root / "dist" / "en" / "categories.txt").write_text(
        "gid://shopify/TaxonomyCategory/aa : Apparel & Accessories\n"
        "gid://shopify/TaxonomyCategory/aa-1 : Apparel & Accessories > Clothing\n"
        "gid://shopify/TaxonomyCategory/aa-2 : Apparel & Accessories > Capes\n"
    )
    attributes = {
        "attributes": [
            {
                "name": "Color",
                "handle": "color",
                "description": "Defines the primary color",
                "values": [{"name": "Black", "handle": "color__black"}],
            }
        ]
    }
    (root / "dist" / "en" / "attributes.json").write_text(json.dumps(attributes))
    (root / "data").mkdir()
    (root / "data" / "values.yml").write_text(
        "- id: 1\n  name: Black\n  friendly_id: color__black\n  handle: color__black\n"
    )
    loc = root / "data" / "localizations"
    for section, body in {
        "categories": {"en": {"aa": "Apparel & Accessories"}, "zh-CN": {"aa": "服饰与配饰", "aa-1": "服装"}},
        "attributes": {"en": {"color": "Color"}, "zh-CN": {"color": "颜色"}},
        "values": {"en": {"color__black": "Black"}, "zh-CN": {"color__black": "黑色"}},
    }.items():
        (loc / section).mkdir(parents=True)
        for locale, names in body.items():
            lines = [f"{locale}:", f"  {section}:"]
            for handle, name in names.items():
                lines += [f"    {handle}:", f"      name: {name}"]
                if section == "attributes":
                    lines.append(
                        f"      description: {'指定主要颜色' if locale == 'zh-CN' else 'Defines the color'}"
                    )
            (loc / section / f"{locale}.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_convert_shopify_locale_takes_names_from_the_localisations(tmp_path: Path) -> None:
    src = _mini_taxonomy(tmp_path / "taxonomy")
    report = convert("shopify", src, tmp_path / "out", locale="zh-CN")
    tags = {t.id: t for t in load_tags(tmp_path / "out" / "tags.jsonl")}
    assert tags["aa-1"].name == "服装" and tags["aa-1"].parent == "aa"
    assert tags["aa-1"].names == {"en": "Clothing", "zh-CN": "服装"}
    assert tags["color__black"].name == "颜色: 黑色"
    assert tags["color__black"].names["en"] == "Color: Black"
    assert tags["color__black"].description == "指定主要颜色"
    # No translation: the English name stays, and the report says so.
    assert tags["aa-2"].name == "Capes" and tags["aa-2"].names == {}
    assert report.skipped == {"no zh-CN name (English kept)": 1}
    english = convert("shopify", src, tmp_path / "en")
    assert english.skipped == {}
    assert load_tags(tmp_path / "en" / "tags.jsonl")[1].names == {}


def test_convert_locale_errors_are_clear(tmp_path: Path) -> None:
    src = _mini_taxonomy(tmp_path / "taxonomy")
    with pytest.raises(DataError, match=r"categories/fr\.yml: no 'fr' localisation"):
        convert("shopify", src, tmp_path / "out", locale="fr")
    (src / "data" / "localizations" / "values" / "zh-CN.yml").write_text("zh-CN: [1, 2\n")
    with pytest.raises(DataError, match=r"values/zh-CN\.yml: not valid YAML"):
        convert("shopify", src, tmp_path / "out", locale="zh-CN")
    with pytest.raises(DataError, match="--locale applies to the shopify source only"):
        convert("google", src, tmp_path / "out", locale="zh-CN")
    assert not (tmp_path / "out" / "tags.jsonl").exists()


def test_convert_locale_on_the_real_taxonomy(shared_data: Path, tmp_path: Path) -> None:
    convert("shopify", shared_data / "shopify-taxonomy", tmp_path, locale="zh-CN")
    tags = {t.id: t for t in load_tags(tmp_path / "tags.jsonl")}
    assert tags["aa-1"].name == "服装" and tags["aa-1"].name_in("en") == "Clothing"
    assert tags["color__black"].name == "颜色: 黑色"
    translated = sum(bool(t.names) for t in tags.values())
    assert translated / len(tags) > 0.95


# ---- command line ----------------------------------------------------------------------------------------
def test_cli_convert_locale_then_language_on_tag_show_and_similar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tagindex.cli import main

    src = _mini_taxonomy(tmp_path / "taxonomy")
    assert (
        main(
            [
                "-q",
                "convert",
                "shopify",
                "--src",
                str(src),
                "--out",
                str(tmp_path / "zh"),
                "--locale",
                "zh-CN",
            ]
        )
        == 0
    )
    assert (
        main(["-q", "index", "--tags", str(tmp_path / "zh" / "tags.jsonl"), "--out", str(tmp_path / "ix")])
        == 0
    )
    products = tmp_path / "products.jsonl"
    products.write_text('{"id": "p1", "title": "黑色服装"}\n', encoding="utf-8")
    run = tmp_path / "run.jsonl"
    args = ["-q", "tag", "--index", str(tmp_path / "ix"), "--products", str(products), "--out", str(run)]
    assert main([*args, "--top-k", "4", "--language", "en"]) == 0
    names = {h["tag"]: h["name"] for h in json.loads(run.read_text())["tags"]}
    assert names["aa-1"] == "Clothing" and names["color__black"] == "Color: Black"
    assert names["aa-2"] == "Capes"  # no translation either way: its only name
    assert main([*args, "--top-k", "4", "--language", "zh-CN"]) == 0
    assert {h["tag"]: h["name"] for h in json.loads(run.read_text())["tags"]}["aa-1"] == "服装"
    capsys.readouterr()
    show = ["-q", "show", "--run", str(run), "--products", str(products), "--index", str(tmp_path / "ix")]
    assert main([*show, "--language", "en"]) == 0
    assert "Apparel & Accessories > Clothing" in capsys.readouterr().out
    assert main(show) == 0
    assert "服饰与配饰 > 服装" in capsys.readouterr().out
    assert main(["-q", "similar", "--index", str(tmp_path / "ix"), "--language", "en", "aa-1"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {h["tag"]: h["name"] for h in hits}["aa"] == "Apparel & Accessories"


def test_cli_distill_writes_a_model_that_index_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tagindex.cli import main

    src = _mini_taxonomy(tmp_path / "taxonomy")
    out = tmp_path / "student"
    argv = ["-q", "distill", "--taxonomy", str(src), "--languages", "zh-CN", "--out", str(out)]
    assert main([*argv, "--dictionary", "none", "--batch-size", "4"]) == 0
    assert (out / "tagindex_distill.json").exists()
    tags = tmp_path / "tags.jsonl"
    tags.write_text('{"id": "b", "name": "靴子"}\n', encoding="utf-8")
    assert main(["-q", "index", "--tags", str(tags), "--out", str(tmp_path / "ix"), "--model", str(out)]) == 0
    capsys.readouterr()
    assert main([*argv, "--dictionary", str(tmp_path / "missing.txt")]) == 2
    assert "CC-CEDICT file not found" in capsys.readouterr().err
    assert main([*argv, "--dictionary", "none", "--sources", "value,recipes"]) == 2
    assert "unknown pair source(s) ['recipes']" in capsys.readouterr().err
