"""`tagindex index --title-match` (and `--graft`): the product-type match on a plain index, no catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.adapt_ablation import ROWS
from tagindex import Product, TagIndex
from tagindex.adapt import AdaptParams, adapt
from tagindex.cli import main
from tagindex.convert import shopify_categories
from tagindex.index import read_saved_lent_names
from tagindex.store import read_manifest

DRESS = "Harpa Women Red & Blue Printed A-line Dress"
CROP_TOP = "Women's Slash Neck Long Sleeve Crop Top"


@pytest.fixture(scope="module")
def apparel(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tags = [t for t in shopify_categories(shared_data / "shopify-taxonomy") if t.id.startswith("aa")][:400]
    out = tmp_path_factory.mktemp("apparel") / "tags.jsonl"
    out.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tags))
    return out


def test_index_title_match_is_adapt_with_only_the_match(apparel: Path, encoder, tmp_path: Path) -> None:
    base = ["index", "--tags", str(apparel), "--backend", "sentence-transformers"]  # as `encoder`
    assert main([*base, "--out", str(tmp_path / "m"), "--title-match", "2"]) == 0
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    matched = TagIndex.load(tmp_path / "m", encoder=encoder)
    plain = TagIndex.load(tmp_path / "plain", encoder=encoder)
    queries = [Product("q1", DRESS), Product("q2", CROP_TOP)]
    got = [r.to_dict() for r in matched.tag(queries, top_k=5)]
    assert [matched.get(r["tags"][0]["tag"]).name for r in got] == ["Dresses", "Crop Tops"]
    # Plain cosine ranks other garments first ("Maternity Skirts", "Skirts").
    assert [plain.get(r.tags[0].tag).name for r in plain.tag(queries, top_k=5)] != ["Dresses", "Crop Tops"]
    # The same as `adapt` with every step but the match off (the ablation's "+lexical" row).
    from tagindex.io import load_tags

    match_only = AdaptParams(**ROWS["+lexical auto decoding"][1])
    adapted, _ = adapt(load_tags(apparel), [Product("c", "x")], match_only, encoder=encoder)
    want = [r.to_dict() for r in adapted.tag(queries, top_k=5)]
    assert [[t["tag"] for t in r["tags"]] for r in got] == [[t["tag"] for t in r["tags"]] for r in want]
    for mine, theirs in zip(got, want, strict=True):
        assert [t["score"] for t in mine["tags"]] == pytest.approx(
            [t["score"] for t in theirs["tags"]], abs=1e-5
        )
    assert read_manifest(tmp_path / "m", "tagindex")["adapt"]["lexical"]["weight"] == 2.0


def test_index_title_match_ranks_leaves_only_on_a_fixed_level_tree(
    apparel: Path, mwpd_dir: Path, encoder, tmp_path: Path
) -> None:
    # GS1 (every leaf a level-3 class): leaves only, path aggregation; Shopify's ragged tree: all tags.
    for tags, fixed in ((mwpd_dir / "tags.jsonl", True), (apparel, False)):
        out = tmp_path / ("gs1" if fixed else "shopify")
        args = ["index", "--tags", str(tags), "--backend", "sentence-transformers", "--title-match", "2"]
        assert main([*args, "--out", str(out)]) == 0
        described = read_manifest(out, "tagindex")["adapt"]
        assert described["leaves_only"] is fixed and (described["hierarchy_weight"] < 1.0) is fixed
        # As `adapt` does: the settings asked for (none) and, beside them, what was chosen.
        assert described["adapt_params"]["leaves_only"] is None
        assert described["decoding"] == {"hierarchy": fixed, "leaves_only": fixed}
        index = TagIndex.load(out, encoder=encoder)
        parents = {t.parent for t in index.tags}
        ranked = index.tag([Product("q", DRESS), Product("r", "Mens Team Fleece Jacket")], top_k=10)
        inner = [t.tag for r in ranked for t in r.tags if t.tag in parents]
        assert (not inner) if fixed else bool(inner)


def test_index_title_match_options_are_checked(apparel: Path, tmp_path: Path, shared_data: Path) -> None:
    base = ["index", "--tags", str(apparel), "--out", str(tmp_path / "x")]
    assert main([*base, "--title-match", "0"]) == 2
    assert main([*base, "--title-match", "inf"]) == 2
    assert main([*base, "--graft", str(apparel)]) == 2  # --graft without --title-match
    assert main([*base, "--title-match", "2", "--products", str(apparel)]) == 2
    assert not (tmp_path / "x").exists()


def test_index_graft_lends_names_without_a_catalog(mwpd_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    source = [t for t in shopify_categories(shared_data / "shopify-taxonomy") if t.id.startswith("aa")]
    graft = tmp_path / "shopify.jsonl"
    graft.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in source))
    out = tmp_path / "gs1"
    cmd = ["index", "--tags", str(mwpd_dir / "tags.jsonl"), "--out", str(out), "--title-match", "2"]
    assert main([*cmd, "--graft", str(graft)]) == 0
    assert "adapt/graft.json" in read_manifest(out, "tagindex")["files"]
    index = TagIndex.load(out)
    shirt = Product("q", "Chicago Bears Men's Sideline Legend Performance T-Shirt - Navy")
    assert index.get(index.tag([shirt], top_k=1)[0].tags[0].tag).name == "Upper Body Wear/Tops"
    # The review loop works the same without a catalog: excluding the categories that lend
    # "T-Shirts" (Shopify has several) removes that name, and a bad exclusion file is refused.
    lent = read_saved_lent_names(out)
    tshirts = [(s, t) for s, name, t in lent if name == "T-Shirts"]
    assert tshirts
    exclude = tmp_path / "exclude.tsv"
    exclude.write_text("".join(f"{s}\t{t}\n" for s, t in tshirts))
    reviewed = tmp_path / "gs1-reviewed"
    cmd[4] = str(reviewed)
    assert main([*cmd, "--graft", str(graft), "--graft-exclude", str(exclude)]) == 0
    after = read_saved_lent_names(reviewed)
    assert "T-Shirts" not in {name for _, name, _ in after} and len(after) < len(lent)
    exclude.write_text("\n\nnot-a-pair\n")
    assert main([*cmd, "--graft", str(graft), "--graft-exclude", str(exclude)]) == 2
