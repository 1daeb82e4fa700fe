from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tagindex.io import DataError, check_gold_tags, load_products, load_tags, write_jsonl


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
    (tmp_path / "tags.txt").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        load_tags(tmp_path / "tags.txt")


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
