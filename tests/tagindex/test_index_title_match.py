"""`tagindex index --title-match` (and `--graft`): the product-type match on a plain index, no catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagindex import Product, TagIndex
from tagindex.adapt import AdaptParams, adapt
from tagindex.cli import main
from tagindex.convert import shopify_categories
from tagindex.store import read_manifest

HOODIE = "Northern Illinois Huskies Youth Basic Arch Pullover Hoodie - Cardinal"
OFF = {
    "hubness": "none",
    "hierarchy": False,
    "leaves_only": False,
    "enrich": False,
    "rounds": 0,
    "occurrence_cap": False,
}


@pytest.fixture(scope="module")
def apparel(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tags = [t for t in shopify_categories(shared_data / "shopify-taxonomy") if t.id.startswith("aa")][:400]
    out = tmp_path_factory.mktemp("apparel") / "tags.jsonl"
    out.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tags))
    return out


def test_index_title_match_is_adapt_with_only_the_match(apparel: Path, encoder, tmp_path: Path) -> None:
    assert main(["index", "--tags", str(apparel), "--out", str(tmp_path / "m"), "--title-match", "2"]) == 0
    assert main(["index", "--tags", str(apparel), "--out", str(tmp_path / "plain")]) == 0
    matched = TagIndex.load(tmp_path / "m", encoder=encoder)
    plain = TagIndex.load(tmp_path / "plain", encoder=encoder)
    queries = [Product("q1", HOODIE), Product("q2", "Cool Mist Humidifier 1.5 Gallon")]
    got = [r.to_dict() for r in matched.tag(queries, top_k=5)]
    assert matched.get(got[0]["tags"][0]["tag"]).name == "Hoodies"
    assert got != [r.to_dict() for r in plain.tag(queries, top_k=5)]
    # The same as `adapt` with every step but the match off (the ablation's "+lexical" row).
    from tagindex.io import load_tags

    adapted, _ = adapt(load_tags(apparel), [Product("c", "x")], AdaptParams(**OFF), encoder=encoder)
    want = [r.to_dict() for r in adapted.tag(queries, top_k=5)]
    assert [[t["tag"] for t in r["tags"]] for r in got] == [[t["tag"] for t in r["tags"]] for r in want]
    assert read_manifest(tmp_path / "m", "tagindex")["adapt"]["lexical"]["weight"] == 2.0


def test_index_title_match_options_are_checked(apparel: Path, tmp_path: Path, shared_data: Path) -> None:
    base = ["index", "--tags", str(apparel), "--out", str(tmp_path / "x")]
    assert main([*base, "--title-match", "0"]) == 2
    assert main([*base, "--title-match", "inf"]) == 2
    assert main([*base, "--graft", str(apparel)]) == 2  # --graft without --title-match
    assert main([*base, "--title-match", "2", "--products", str(apparel)]) == 2
    assert not (tmp_path / "x").exists()
