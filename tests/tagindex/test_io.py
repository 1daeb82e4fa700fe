from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tagindex.io import DataError, check_gold_tags, load_products, load_tags, write_jsonl
from tagindex.schema import LIMITS


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_products_in_all_three_formats_load_the_same(tmp_path: Path) -> None:
    rows = [
        {
            "id": "p1",
            "title": "Red shoe",
            "description": "Leather",
            "attributes": {"color": "red"},
            "tags": ["a"],
        },
        {"id": 2, "title": "Blue hat", "attributes": {"size": ["S", "M"]}, "tags": ["b", "c"]},
    ]
    jsonl = load_products(_jsonl(tmp_path / "p.jsonl", rows))
    pd.DataFrame([{**r, "id": str(r["id"])} for r in rows]).to_parquet(tmp_path / "p.parquet")
    parquet = load_products(tmp_path / "p.parquet")
    csv = tmp_path / "p.csv"
    csv.write_text(
        'id,title,description,attributes,tags\np1,Red shoe,Leather,"{""color"": ""red""}",a\n'
        '2,Blue hat,,"{""size"": [""S"", ""M""]}",b|c\n'
    )
    for products in (jsonl, parquet, load_products(csv)):
        assert [p.id for p in products] == ["p1", "2"]
        assert products[0].attributes == {"color": "red"}
        assert products[1].attributes == {"size": ["S", "M"]}
        assert products[1].tags == ["b", "c"]
        assert products[1].description == ""


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"title": "x"}, "missing required column 'id'"),
        ({"id": "1"}, "missing required column 'title'"),
        ({"id": "1", "title": "   "}, "column 'title' is empty"),
        ({"id": "1", "title": "x", "attributes": 5}, "attributes"),
        ({"id": "1", "title": "x", "tags": [{"no": 1}]}, "list of strings"),
        ('{"id": "1", "title": ', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_product_rows_name_file_and_line(tmp_path: Path, row: object, message: str) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"id": "ok", "title": "fine"}, row])
    with pytest.raises(DataError) as err:
        load_products(path)
    assert f"{path}:2:" in str(err.value)
    assert message in str(err.value)


def test_skip_mode_keeps_good_rows_and_counts_bad_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"id": "1", "title": "a"}, {"id": "2"}, {"id": "3", "title": "c"}])
    products = load_products(path, on_error="skip")
    assert [p.id for p in products] == ["1", "3"]
    assert "skipped 1 malformed product row" in caplog.text
    assert ":2:" in caplog.text


def test_duplicate_ids_are_reported_with_both_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"id": "1", "title": "a"}, {"id": "1", "title": "b"}])
    with pytest.raises(DataError, match=r"p.jsonl:2: duplicate id '1' \(first on line 1\)"):
        load_products(path)


def test_broken_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"id": "1", "title": "ok"}\n{"id": "2", "title": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: not valid UTF-8"):
        load_products(path)


def test_csv_row_with_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,name\na,Alpha\nb,Beta,extra\n")
    with pytest.raises(DataError, match=r"t.csv:3: more fields than the header"):
        load_tags(path)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_tags(tmp_path / "nope.jsonl")
    (tmp_path / "tags.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        load_tags(tmp_path / "tags.xlsx")


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no valid tag rows"):
        load_tags(tmp_path / "t.jsonl")


def test_tags_with_unknown_parent_or_cycle(tmp_path: Path) -> None:
    unknown = _jsonl(tmp_path / "u.jsonl", [{"id": "a", "name": "A", "parent": "zz"}])
    with pytest.raises(DataError, match="unknown parent: 'a' -> 'zz'"):
        load_tags(unknown)
    assert load_tags(unknown, on_error="skip")[0].parent is None
    cycle = _jsonl(
        tmp_path / "c.jsonl",
        [{"id": "a", "name": "A", "parent": "b"}, {"id": "b", "name": "B", "parent": "a"}],
    )
    with pytest.raises(DataError, match="cycle"):
        load_tags(cycle)


def test_tag_fields_default(tmp_path: Path) -> None:
    tags = load_tags(_jsonl(tmp_path / "t.jsonl", [{"id": 7, "name": "Seven", "synonyms": ["VII"]}]))
    assert (
        tags[0].id == "7" and tags[0].kind == "tag" and tags[0].synonyms == ["VII"] and tags[0].parent is None
    )


def test_unknown_gold_tags_are_reported() -> None:
    from tagindex.schema import Product

    with pytest.raises(DataError, match="1 gold tag id.*'nope'"):
        check_gold_tags([Product("1", "t", tags=["a", "nope"])], {"a"})


def test_write_jsonl_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "run.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert target.read_text() == '{"a": 1}\n'
    assert list(tmp_path.iterdir()) == [target]


# ---- hostile input: every refusal is one line naming the file -------------------------------------
def _one_line(err: pytest.ExceptionInfo[DataError], path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def test_deeply_nested_json_line_is_a_data_error_not_a_recursion_error(tmp_path: Path) -> None:
    deep = '{"id": "2", "title": "x", "attributes": ' + "[" * 200_000 + "]" * 200_000 + "}"
    path = _jsonl(tmp_path / "p.jsonl", [{"id": "1", "title": "ok"}, deep])
    with pytest.raises(DataError) as err:
        load_products(path)
    assert _one_line(err, path).startswith(f"{path}:2: invalid JSON (nested deeper than")
    moderately = '{"id": "2", "title": "x", "attributes": {"a": ' + "[" * 40 + "]" * 40 + "}}"
    with pytest.raises(DataError, match=r"p.jsonl:1: invalid JSON \(nested deeper than 16 levels\)"):
        load_products(_jsonl(path, [moderately]))


def test_csv_field_over_the_limit_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("id,title\n1,ok\n2," + "x" * (LIMITS.csv_field_chars + 10) + "\n")
    with pytest.raises(DataError) as err:
        load_products(path)
    assert "field larger than field limit" in _one_line(err, path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "1", "title": "x" * (LIMITS.title_chars + 1)}, "column 'title' is longer than 4,000"),
        ({"id": "i" * 300, "title": "x"}, "column 'id' is longer than 256"),
        ({"id": {"a": 1}, "title": "x"}, "column 'id' must be a non-empty string or integer, got dict"),
        ({"id": 10**5000, "title": "x"}, "invalid JSON (Exceeds the limit"),
        ({"id": 10**300, "title": "x"}, "column 'id' is longer than 256"),
        ({"id": "1", "title": "x", "description": "d" * 100_001}, "column 'description' is longer"),
        ({"id": "1", "title": "x", "tags": ["t"] * 1001}, "column 'tags' has 1,001 entries"),
        ({"id": "1", "title": "x", "attributes": {"k": "v" * 4001}}, "column 'attributes.k' is longer"),
    ],
)
def test_every_product_field_has_a_limit(tmp_path: Path, row: dict[str, object], message: str) -> None:
    path = tmp_path / "p.jsonl"
    if isinstance(row["id"], int) and row["id"] > 10**4000:
        path.write_text('{"id": 1' + "0" * 5000 + ', "title": "x"}\n')  # json.dumps cannot write it
    else:
        _jsonl(path, [row])
    with pytest.raises(DataError) as err:
        load_products(path)
    assert message in _one_line(err, path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "name": "n" * 1001}, "column 'name' is longer than 1,000"),
        ({"id": "a", "name": "   "}, "column 'name' is empty"),
        ({"id": "a", "name": "A", "kind": "k" * 900_000}, "column 'kind' is longer than 64"),
        ({"id": "a", "name": "A", "synonyms": ["s"] * 150_000}, "column 'synonyms' has 150,000 entries"),
        ({"id": "a", "name": "A", "synonyms": ["s" * 1001]}, "column 'synonyms' is longer than 1,000"),
        ({"id": "a", "name": "A", "description": "d" * 10_001}, "column 'description' is longer"),
        ({"id": "a", "name": "A", "parent": ["x"]}, "column 'parent' must be a non-empty string"),
    ],
)
def test_every_tag_field_has_a_limit(tmp_path: Path, row: dict[str, object], message: str) -> None:
    path = _jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(DataError) as err:
        load_tags(path)
    assert message in _one_line(err, path)


def test_many_bad_rows_make_one_line_that_counts_the_rest(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", [{"id": str(i)} for i in range(30)])
    with pytest.raises(DataError) as err:
        load_products(path)
    message = _one_line(err, path)
    assert message.startswith(f"{path}:1: missing required column 'title' (and 29 more malformed product")
    assert "at 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ...)" in message


# ---- own data -------------------------------------------------------------------------------------
def test_tags_from_a_plain_text_file(tmp_path: Path) -> None:
    path = tmp_path / "tags.txt"
    path.write_text("# my shop's tags\nEco-friendly\n\nWaterproof\nLightweight\n  Rain Jackets  \n")
    tags = load_tags(path)
    assert [(t.id, t.name) for t in tags] == [
        ("eco-friendly", "Eco-friendly"),
        ("waterproof", "Waterproof"),
        ("lightweight", "Lightweight"),
        ("rain-jackets", "Rain Jackets"),
    ]
    # Ids depend on the name, not on the line: reordering or adding names keeps them.
    path.write_text("Rain Jackets\nWaterproof\nWool socks\n")
    assert {t.name: t.id for t in load_tags(path)}["Rain Jackets"] == "rain-jackets"


def test_colliding_slugs_get_a_short_hash_and_repeats_are_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "tags.txt"
    path.write_text("T-Shirts\nT shirts\n连衣裙\n")
    ids = [t.id for t in load_tags(path)]
    assert ids[0].startswith("t-shirts-") and ids[1].startswith("t-shirts-") and ids[0] != ids[1]
    assert ids[2] == "连衣裙"
    path.write_text("Boots\nBoots\n")
    with pytest.raises(DataError, match=r"tags.txt:2: duplicate id 'boots' \(first on line 1\)"):
        load_tags(path)


def test_tags_csv_with_only_names_and_parents_by_name(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("name,parent\nClothing,\nShoes,Clothing\nRunning shoes,shoes\n")
    tags = load_tags(path)
    assert [(t.id, t.parent) for t in tags] == [
        ("clothing", None),
        ("shoes", "clothing"),
        ("running-shoes", "shoes"),
    ]
    only_names = tmp_path / "names.csv"
    only_names.write_text("name\nWaterproof\nLightweight\n")
    assert [t.id for t in load_tags(only_names)] == ["waterproof", "lightweight"]


SHOPIFY_EXPORT = (
    "Handle,Title,Body (HTML),Vendor,Variant SKU\n"
    'merino-crew,Merino crew sweater,"<p>Soft &amp; warm <strong>merino</strong></p><ul><li>Machine '
    'wash</li></ul>",Knitco,MC-S\n'
    "merino-crew,,,,MC-M\n"
    'steel-bottle,Insulated steel bottle,"<p>Keeps drinks cold for 24&nbsp;h.</p>",Hydro,SB-1\n'
)


def test_a_shopify_export_loads_with_a_column_map(tmp_path: Path) -> None:
    path = tmp_path / "products_export.csv"
    path.write_text(SHOPIFY_EXPORT)
    columns = {"id": "Handle", "title": "Title", "description": "Body (HTML)"}
    products = load_products(path, columns=columns)
    assert [(p.id, p.title, p.description) for p in products] == [
        ("merino-crew", "Merino crew sweater", "Soft & warm merino\nMachine wash"),
        ("steel-bottle", "Insulated steel bottle", "Keeps drinks cold for 24 h."),
    ]
    with pytest.raises(
        DataError, match=r"products_export.csv:2: missing column 'Name' \(mapped to 'title'\)"
    ):
        load_products(path, columns={"id": "Handle", "title": "Name"})
    from tagindex.errors import InputError

    with pytest.raises(InputError, match="unknown field 'handle'"):
        load_products(path, columns={"handle": "Handle"})


def test_dataframes_in_and_out() -> None:
    from tagindex.io import products_from_frame, results_to_frame, tags_from_frame
    from tagindex.schema import TagResult, TagScore

    frame = pd.DataFrame(
        {"sku": [101, 102], "name": ["Red shoe", "Blue hat"], "body": ["<b>Leather</b>", None]},
        index=["a", "b"],
    )
    products = products_from_frame(frame, columns={"id": "sku", "title": "name", "description": "body"})
    assert [(p.id, p.title, p.description) for p in products] == [
        ("101", "Red shoe", "Leather"),
        ("102", "Blue hat", ""),
    ]
    with pytest.raises(DataError, match=r"^DataFrame row 'b': column 'title' is empty"):
        products_from_frame(pd.DataFrame({"id": ["1", "2"], "title": ["ok", " "]}, index=["a", "b"]))
    tags = tags_from_frame(pd.DataFrame({"name": ["Hats", "Caps"], "parent": [None, "Hats"]}))
    assert [(t.id, t.parent) for t in tags] == [("hats", None), ("caps", "hats")]
    results = [TagResult("101", [TagScore("caps", 0.9, "Caps"), TagScore("hats", 0.9, "Hats", "caps")])]
    out = results_to_frame(results)
    assert out.drop(columns="ancestor_of").to_dict("records") == [
        {"id": "101", "rank": 1, "tag": "caps", "score": 0.9, "name": "Caps"},
        {"id": "101", "rank": 2, "tag": "hats", "score": 0.9, "name": "Hats"},
    ]
    assert out["ancestor_of"].isna().tolist() == [True, False] and out["ancestor_of"][1] == "caps"
    assert results_to_frame([]).columns.tolist() == ["id", "rank", "tag", "score", "name", "ancestor_of"]


SKOS = """@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix ex: <http://example.org/shop/> .
ex:clothing a skos:Concept ; skos:prefLabel "Clothing"@en, "Vêtements"@fr .
ex:outerwear a skos:Concept ; skos:prefLabel "Outerwear"@en ; skos:broader ex:clothing ;
    skos:altLabel "Coats"@en, "Jackets"@en ; skos:definition "Garments worn over other clothes."@en .
ex:rain a skos:Concept ; skos:prefLabel "Rain jackets" .
ex:outerwear skos:narrower ex:rain .
"""


def test_skos_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "vocab.ttl"
    path.write_text(SKOS)
    tags = {t.id: t for t in load_tags(path)}
    assert set(tags) == {"clothing", "outerwear", "rain"}
    assert tags["clothing"].name == "Clothing" and tags["clothing"].parent is None
    outerwear = tags["outerwear"]
    assert (outerwear.parent, outerwear.synonyms) == ("clothing", ["Coats", "Jackets"])
    assert outerwear.description == "Garments worn over other clothes."
    assert tags["rain"].parent == "outerwear"  # from skos:narrower
    assert {t.id: t.name for t in load_tags(path, language="fr")}["clothing"] == "Vêtements"
    path.write_text("@prefix broken")
    with pytest.raises(DataError) as err:
        load_tags(path)
    assert _one_line(err, path).startswith(f"{path}: cannot read SKOS")


def test_products_refuse_txt_and_skos(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("a title\n")
    with pytest.raises(DataError, match="products must be CSV, JSONL or Parquet"):
        load_products(tmp_path / "p.txt")


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "run.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
    assert (tmp_path / "run.jsonl").stat().st_mode & 0o777 == 0o644
