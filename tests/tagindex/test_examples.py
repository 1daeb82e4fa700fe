"""The quick-start files in data/examples/ and the commands the README runs on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagindex.io import load_products, load_tags

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
CATEGORIES = {"sweaters", "jackets", "shoes", "bags", "cookware", "headphones"}
# Written down before the first run: the category a shop assistant would give each product whose
# category is in the list (a t-shirt, a wallet, a coffee maker, a cutting board, a speaker and a
# power bank have no unambiguous one and are left out).
EXPECTED = {
    "sku-1001": "sweaters",
    "sku-1002": "jackets",
    "sku-1004": "jackets",
    "sku-1005": "shoes",
    "sku-1006": "shoes",
    "sku-1007": "shoes",
    "sku-1008": "shoes",
    "sku-1009": "bags",
    "sku-1011": "bags",
    "sku-1012": "bags",
    "sku-1013": "cookware",
    "sku-1014": "cookware",
    "sku-1017": "headphones",
    "sku-1018": "headphones",
}


def test_example_files_load() -> None:
    products = load_products(EXAMPLES / "products.csv")
    tags = load_tags(EXAMPLES / "tags.txt")
    assert len(products) == 20 and len({p.id for p in products}) == 20
    assert [t.id for t in tags] == [
        *("sweaters", "jackets", "shoes", "bags", "cookware", "headphones"),
        *("waterproof", "lightweight", "eco-friendly", "wireless"),
    ]


def test_product_column_options_reach_the_loader() -> None:
    from tagindex.cli import build_parser
    from tagindex.cli.common import product_columns

    args = build_parser().parse_args(
        ["tag", "--index", "i", "--products", "p.csv", "--out", "o", "--id-col", "Handle"]
        + ["--title-col", "Title", "--description-col", "Body (HTML)"]
    )
    assert product_columns(args) == {"id": "Handle", "title": "Title", "description": "Body (HTML)"}
    plain = build_parser().parse_args(["tag", "--index", "i", "--products", "p.csv", "--out", "o"])
    assert product_columns(plain) is None


@pytest.mark.slow
def test_quick_start_tags_the_example_shop(tmp_path: Path) -> None:
    from tagindex.cli import main

    index, run = tmp_path / "shop-index", tmp_path / "run.jsonl"
    assert main(["-q", "index", "--tags", str(EXAMPLES / "tags.txt"), "--out", str(index)]) == 0
    args = ["-q", "tag", "--index", str(index), "--products", str(EXAMPLES / "products.csv")]
    assert main([*args, "--out", str(run), "--top-k", "10"]) == 0
    rows = [json.loads(line) for line in run.read_text().splitlines()]
    assert len(rows) == 20
    best_category = {r["id"]: next(t["tag"] for t in r["tags"] if t["tag"] in CATEGORIES) for r in rows}
    wrong = {pid: (best_category[pid], want) for pid, want in EXPECTED.items() if best_category[pid] != want}
    # Found on the first run and left as measured (no tuning on this sample): with bare tag names the
    # packaged MiniLM ranks "Sweaters" above "Bags" for the roll-top commuter backpack.
    known_misses = {"sku-1011"}
    assert set(wrong) <= known_misses, wrong
