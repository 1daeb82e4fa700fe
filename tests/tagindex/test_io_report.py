"""read_products_report: the lenient reader that returns the rows it left out, for a person to read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagindex.io import DataError, read_products_report

SHOPIFY = "Handle,Title,Body (HTML)\na,Hoodie,<p>warm</p>\na,,\nb,,\nc,Boots,dry\nc,Again,x\n"
COLUMNS = {"id": "Handle", "title": "Title", "description": "Body (HTML)"}


def test_report_keeps_good_rows_and_names_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    path.write_text(SHOPIFY)
    report = read_products_report(path, columns=COLUMNS, source="shop.csv")
    assert [(p.id, p.description) for p in report.products] == [("a", "warm"), ("c", "dry")]
    # line 3 repeats a handle with an empty title (a Shopify variant row): skipped, not an error
    assert [w for w, _ in report.errors] == ["shop.csv:4", "shop.csv:6"]
    assert "duplicate id 'c' (first on line 5)" in report.errors[1][1]
    assert report.columns == ["Handle", "Title", "Body (HTML)"]


def test_report_parquet_and_format_checks(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "upload.parquet"
    pd.DataFrame({"id": ["1", "2"], "title": ["One", "Two"]}).to_parquet(path)
    assert len(read_products_report(path, source="p.parquet").products) == 2
    with pytest.raises(DataError, match="the file is stored as parquet, not csv"):
        read_products_report(path, source="p.csv", fmt="csv")
    with pytest.raises(DataError, match=r"^tags\.txt: products must be CSV, JSONL or Parquet"):
        read_products_report(path, source="tags.txt")


def test_no_usable_row_names_the_first_problem_and_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    path.write_text(SHOPIFY)
    with pytest.raises(DataError) as err:
        read_products_report(path, source="shop.csv")
    assert str(err.value) == (
        "shop.csv: no valid product rows (first: shop.csv:2: missing required column 'id'); "
        "columns: Handle, Title, Body (HTML)"
    )
    assert str(tmp_path) not in str(err.value)
