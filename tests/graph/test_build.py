"""Graph construction on real samples: node/edge counts per type, Shopify links, save/load."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
from tagindex.graph.build import (
    GraphParams,
    breadcrumb_keywords,
    build_graph,
    graph_counts,
    load_graph,
    load_graph_tables,
    save_graph,
    shopify_category_attributes,
)

from tagindex.io import DataError, load_products, load_tags
from tagindex.schema import Product, Tag
from tagindex.store import IndexFormatError


@pytest.fixture(scope="module")
def sample(mwpd_dir: Path) -> tuple[list[Product], list[Tag]]:
    return load_products(mwpd_dir / "train.jsonl")[:300], load_tags(mwpd_dir / "tags.jsonl")


def test_counts_per_type_on_real_mwpd_sample(sample: tuple[list[Product], list[Tag]]) -> None:
    products, tags = sample
    params = GraphParams(min_cooccurrence=2)
    g = build_graph(products, tags, params=params)
    counts = graph_counts(g)
    # Expected counts recomputed from the data independently of the builder.
    keywords = {k for p in products for k in breadcrumb_keywords(p.attributes.get("breadcrumb", ""))}
    pairs: dict[tuple[str, str], int] = {}
    for p in products:
        for pair in combinations(sorted(set(p.tags)), 2):
            pairs[pair] = pairs.get(pair, 0) + 1
    assert counts["nodes"] == {
        "product": 300,
        "tag": len(tags),
        "attribute": 0,
        "value": 0,
        "keyword": len(keywords),
    }
    assert counts["edges"]["product_tag"] == sum(len(set(p.tags)) for p in products)
    assert counts["edges"]["tag_parent"] == sum(t.parent is not None for t in tags)
    assert counts["edges"]["product_keyword"] == sum(
        len(breadcrumb_keywords(p.attributes.get("breadcrumb", ""))) for p in products
    )
    assert counts["edges"]["tag_cooccurrence"] == sum(n >= 2 for n in pairs.values())
    shared = [k for k in keywords if g.degree(f"keyword:{k}") >= 2]
    assert shared and all(len(k) <= 60 for k in keywords)  # breadcrumbs are shared between offers
    weights = [d["weight"] for *_, d in g.edges(data=True) if d["type"] == "tag_cooccurrence"]
    assert all(0 < w <= 1 for w in weights)


def test_attribute_values_and_breadcrumb_split() -> None:
    tags = [Tag("a", "A"), Tag("b", "B", parent="a")]
    products = [
        Product(
            "1", "red shirt", attributes={"Color": "Red", "breadcrumb": "Home > Men's  Shirts > "}, tags=["b"]
        ),
        Product("2", "red cap", attributes={"color": ["red", "Blue"]}, tags=["a", "b"]),
    ]
    g = build_graph(products, tags, params=GraphParams(min_cooccurrence=1))
    counts = graph_counts(g)
    assert counts["nodes"]["value"] == 2 and counts["nodes"]["attribute"] == 1
    assert g.has_edge("product:1", "value:color=red") and g.has_edge("product:2", "value:color=red")
    assert g.has_node("keyword:men's shirts") and g.has_node("keyword:home")
    assert counts["edges"]["product_keyword"] == 2 and counts["edges"]["tag_cooccurrence"] == 1
    # Parent and co-occurrence edges between the same two tags are both kept.
    assert g.number_of_edges("tag:a", "tag:b") == 2
    with pytest.raises(DataError, match="not in the vocabulary"):
        build_graph([Product("3", "x", tags=["zzz"])], tags)


def test_shopify_category_attribute_links(shared_data: Path) -> None:
    from tagindex.convert import shopify_categories

    src = shared_data / "shopify-taxonomy"
    links = shopify_category_attributes(src)
    categories = [t for t in shopify_categories(src) if t.id.startswith("aa")]  # Apparel & Accessories
    g = build_graph([], categories, links)
    expected = sum(len(set(links[t.id])) for t in categories if t.id in links)
    counts = graph_counts(g)
    assert counts["edges"]["category_attribute"] == expected > 0
    assert g.has_edge("tag:aa", "attribute:color")
    assert counts["nodes"]["attribute"] == len({a for t in categories for a in links.get(t.id, [])})


def test_save_load_round_trip_and_corruption(tmp_path: Path) -> None:
    tags = [Tag("a", "A"), Tag("b", "B", parent="a")]
    products = [Product("1", "t", attributes={"breadcrumb": "X > Y"}, tags=["b"])]
    g = build_graph(products, tags)
    manifest = save_graph(g, tmp_path / "g")
    assert manifest["counts"] == graph_counts(g)
    back = load_graph(tmp_path / "g")
    assert set(back.nodes) == set(g.nodes)
    assert graph_counts(back) == graph_counts(g)
    assert sorted(back.edges(data="weight")) == sorted(g.edges(data="weight"))
    (tmp_path / "g" / "edges.parquet").write_bytes(b"broken")
    with pytest.raises(IndexFormatError, match="checksum"):
        load_graph_tables(tmp_path / "g")
