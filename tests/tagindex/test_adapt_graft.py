"""Taxonomy grafting (tagindex.adapt.graft): the Shopify taxonomy's concrete names lent to GS1's
abstract tags, on the real names of both, and its place in the adapted index and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tagindex import Product, Tag, TagIndex
from tagindex.adapt import AdaptParams, adapt, adapt_vectors
from tagindex.adapt.graft import check_exclusions, place_source, read_exclusions
from tagindex.adapt.lexical import TypeLexicon
from tagindex.adapt.pipeline import graft_lexicon
from tagindex.cli import main
from tagindex.convert import shopify_categories
from tagindex.errors import InputError
from tagindex.explain import Explainer
from tagindex.io import load_products, load_tags
from tagindex.store import read_manifest

TEAM_SHIRT = "Chicago Bears Men's Sideline Legend Performance T-Shirt - Navy"


def _unit(rows: list[list[float]]) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _source() -> list[Tag]:
    return [
        Tag("aa", "Apparel & Accessories"),
        Tag("aa-1", "Clothing", parent="aa"),
        Tag("aa-1-1", "Clothing Tops", parent="aa-1"),
        Tag("aa-1-1-1", "T-Shirts", parent="aa-1-1"),
        Tag("aa-1-1-2", "Hoodies", parent="aa-1-1"),
        Tag("ap", "Animals & Pet Supplies"),
        Tag("ap-1", "Pet Supplies", parent="ap"),
        Tag("ap-1-1", "Bird Cages", parent="ap-1"),
    ]


# Real GS1 brick names from MWPD: an abstract clothing class, a sibling, a tag that shares a head noun
# with unrelated source names ("Supplies", "Bench-top").
TARGET = [
    "Upper Body Wear/Tops",
    "Sportswear",
    "Baking/Cooking Mixes/Supplies",
    "Power Tools Stationary/Bench-top",
]


def test_a_source_category_is_placed_only_where_name_and_vector_agree() -> None:
    lexicon = TypeLexicon(TARGET)
    # Target vectors on axes; "Clothing Tops" is nearest to Sportswear, then Upper Body Wear/Tops;
    # "Pet Supplies" is far from "Baking/Cooking Mixes/Supplies" although the names share "Supplies".
    target = np.eye(4, dtype=np.float32)
    source = _unit(
        [
            [1, 1, 0, 1],  # Apparel & Accessories (a root: never placed)
            [1, 1, 0, 0],  # Clothing (no target name matches)
            [0.6, 0.8, 0, 0.1],  # Clothing Tops: name -> Upper Body Wear/Tops, which is 2nd nearest
            [0.5, 0.5, 0, 0],  # T-Shirts: inherits
            [0.5, 0.5, 0, 0],  # Hoodies: inherits
            [0, 0, 0.2, 1],
            [0.2, 0.1, 0, 1],  # Pet Supplies: name -> Baking/.../Supplies, but it is 4th nearest
            [0, 0, 0, 1],
        ]
    )
    rows = np.arange(4)
    lent = place_source(_source(), source, target, lexicon, rows, top_k=3)
    assert lent.tolist() == [-1, -1, 0, 0, 0, -1, -1, -1]
    # Nearest-only agreement (top_k 1) rejects Clothing Tops: Sportswear is nearer.
    assert (place_source(_source(), source, target, lexicon, rows, top_k=1) < 0).all()
    # Tags outside the rankable rows never receive names.
    assert 0 not in place_source(_source(), source, target, lexicon, np.array([1, 2, 3]), top_k=3)


def test_a_merchandisers_exclusions_are_never_lent() -> None:
    lexicon = TypeLexicon([*TARGET, "Tops"])  # a 5th tag also named by "Clothing Tops"
    target = np.eye(5, dtype=np.float32)
    source = _unit(
        [
            [1, 1, 0, 1, 0],
            [1, 1, 0, 0, 0],
            [0.6, 0.8, 0, 0.1, 0.5],  # Clothing Tops: Upper Body Wear/Tops first, the 5th tag next
            [0.5, 0.5, 0, 0, 0],
            [0.5, 0.5, 0, 0, 0],
            [0, 0, 0.2, 1, 0],
            [0.2, 0.1, 0, 1, 0],
            [0, 0, 0, 1, 0],
        ]
    )
    rows = np.arange(5)
    assert place_source(_source(), source, target, lexicon, rows).tolist() == [-1, -1, 0, 0, 0, -1, -1, -1]
    # Rejecting the placement of "Clothing Tops" on row 0: the next tag both rules allow takes it,
    # and its kinds follow; without another allowed tag, nothing is lent in the subtree.
    assert place_source(_source(), source, target, lexicon, rows, exclude={(2, 0)}).tolist() == [
        -1, -1, 4, 4, 4, -1, -1, -1
    ]  # fmt: skip
    lone = TypeLexicon(TARGET)
    assert (place_source(_source(), source[:, :4], target[:4, :4], lone, np.arange(4), 2, {(2, 0)}) < 0).all()
    # Rejecting one inherited name drops that name alone.
    assert place_source(_source(), source, target, lexicon, rows, exclude={(4, 0)}).tolist() == [
        -1, -1, 0, 0, -1, -1, -1, -1
    ]  # fmt: skip


def test_exclusion_files_are_read_with_line_numbers(tmp_path: Path) -> None:
    tags = [Tag("u", "Upper Body Wear/Tops"), Tag("s", "Sportswear")]
    good = tmp_path / "exclude.tsv"
    good.write_text("# source_id\ttag_id\tlent name\ttag path\n\naa-1-1-2\tu\tHoodies\tClothing > Tops\n")
    assert read_exclusions(good) == [(3, "aa-1-1-2", "u")]  # a `show --lent` line, kept as it is
    bad = tmp_path / "bad.tsv"
    bad.write_text("aa-1-1-2 u\n")
    with pytest.raises(InputError, match=r"bad.tsv:1: expected"):
        read_exclusions(bad)
    with pytest.raises(InputError, match=r":1: 'zz' is no category"):
        check_exclusions("f", [(1, "zz", "u")], _source(), tags)
    with pytest.raises(InputError, match=r":2: 'x' is no tag"):
        check_exclusions("f", [(2, "aa-1-1-2", "x")], _source(), tags)
    assert check_exclusions("f", [(1, "aa-1-1-2", "u")], _source(), tags) == {("aa-1-1-2", "u")}


def test_lent_names_match_titles_like_the_tags_own() -> None:
    lexicon = TypeLexicon(TARGET)
    titles = [TEAM_SHIRT, "Gildan Heavy Blend Hooded Sweatshirt", "Blue Sportswear Tank Tops"]
    before = lexicon.scores(titles).toarray()
    assert before[0].max() == 0  # GS1 names no T-shirt
    lexicon.graft(["Clothing Tops", "T-Shirts", "Hoodies"], [0, 0, 0])
    after = lexicon.scores(titles).toarray()
    assert after[0, 0] == 1.0 and after[0, 1:].max() == 0
    assert after[2].tolist() == before[2].tolist()  # own matches are kept (the larger of the two)
    assert lexicon.lent_match(TEAM_SHIRT) == {0: "T-Shirts"}
    assert lexicon.lent_match("Blue Sportswear Tank Tops") == {}  # its own name matches as well
    lexicon.graft(["T-Shirts"], [0], strength=0.5)  # replaces the earlier grafts
    assert lexicon.scores([TEAM_SHIRT]).toarray()[0, 0] == 0.5
    with pytest.raises(ValueError, match="outside"):
        lexicon.graft(["T-Shirts"], [7])


def test_graft_needs_the_title_match() -> None:
    tags = [Tag(str(i), n) for i, n in enumerate(TARGET)]
    vectors = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="title match"):
        adapt_vectors(
            tags,
            TARGET,
            vectors,
            vectors,
            TARGET,
            AdaptParams(lexical_weight=0.0),
            lambda texts: np.eye(4, dtype=np.float32)[: len(texts)],
            (_source(), np.ones((len(_source()), 4), dtype=np.float32) / 2),
        )


@pytest.fixture(scope="module")
def clothing(mwpd_dir: Path) -> tuple[list[Tag], list[Product]]:
    """MWPD's clothing family (real GS1 tags) and 150 real clothing offers without labels."""
    tags = load_tags(mwpd_dir / "tags.jsonl")
    keep = {t.id for t in tags if t.id.startswith(("67000000", "67010000"))}
    family = [t for t in tags if t.id in keep or t.parent in keep]
    products = [
        Product(p.id, p.title) for p in load_products(mwpd_dir / "train.jsonl") if set(p.tags) & keep
    ][:150]
    return family, products


def test_real_shopify_names_graft_onto_real_gs1_clothing(
    encoder, shared_data: Path, clothing: tuple[list[Tag], list[Product]], tmp_path: Path
) -> None:
    tags, catalog = clothing
    source = [t for t in shopify_categories(shared_data / "shopify-taxonomy") if t.id.startswith("aa")]
    params = AdaptParams(rounds=1, enrich=False)
    index, report = adapt(tags, catalog, params, encoder=encoder, graft=source)
    graft = report["adapt"]["graft"]
    assert graft["source_categories"] == len(source) and 0 < graft["lent"] < len(source)
    by_name = {t.name: t for t in tags}
    lexicon = index.adjuster.lexicon
    lent = dict(zip(lexicon.grafted_names, lexicon.grafted_rows, strict=True))
    upper = index.tags.index(by_name["Upper Body Wear/Tops"])
    assert lent["T-Shirts"] == upper and lent["Hoodies"] == upper
    top = index.tag([Product("q", TEAM_SHIRT)], top_k=1)[0].tags[0].tag
    assert top == by_name["Upper Body Wear/Tops"].id
    # Explanations name the lent name the title matched.
    lent_name = index.title_match_sources(Product("q", TEAM_SHIRT))[top]["lent"]
    assert lent_name in {"T-Shirts", "Shirts"}
    explained = Explainer(index).explain([Product("q", TEAM_SHIRT)])[0]["assigned"][0]
    assert explained["tag"] == top and explained["title_match_via"] == lent_name
    assert "title_match_category" not in explained  # the title named it
    # The lent names are saved with the index and match the same after loading.
    index.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx", "tagindex")  # files live in the live version
    assert "adapt/graft.json" in manifest["files"]
    assert manifest["adapt"]["lexical"]["grafted_names"] == len(lexicon.grafted_names)
    loaded = TagIndex.load(tmp_path / "idx", encoder=encoder)
    queries = [Product(p.id, p.title) for p in catalog[:20]]
    assert [r.to_dict() for r in loaded.tag(queries, top_k=3)] == [
        r.to_dict() for r in index.tag(queries, top_k=3)
    ]
    # Without the graft the same title does not reach the abstract class.
    plain, _ = adapt(tags, catalog, params, encoder=encoder)
    assert plain.adjuster.lexicon.grafted_names == []


def test_cli_adapt_graft(
    shared_data: Path,
    clothing: tuple[list[Tag], list[Product]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tags, catalog = clothing
    tags_file, products_file, source_file = (
        tmp_path / "tags.jsonl",
        tmp_path / "p.jsonl",
        tmp_path / "src.jsonl",
    )
    tags_file.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tags))
    products_file.write_text("".join(json.dumps({"id": p.id, "title": p.title}) + "\n" for p in catalog[:60]))
    source = [t for t in shopify_categories(shared_data / "shopify-taxonomy") if t.id.startswith("aa")]
    source_file.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in source))
    config = tmp_path / "adapt.json"
    config.write_text(json.dumps({"rounds": 1, "enrich": False}))
    base = [
        "adapt",
        "--tags",
        str(tags_file),
        "--products",
        str(products_file),
        "--adapt-config",
        str(config),
    ]
    with caplog.at_level("INFO"):
        assert main([*base, "--graft", str(source_file), "--out", str(tmp_path / "idx")]) == 0
    assert (
        "graft:" in caplog.text and "adapt/graft.json" in read_manifest(tmp_path / "idx", "tagindex")["files"]
    )
    # The review loop: list what is lent, keep the wrong lines, adapt again without them.
    capsys.readouterr()
    assert main(["show", "--index", str(tmp_path / "idx"), "--lent"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert listed and all(len(line.split("\t")) == 4 and line.split("\t")[0] for line in listed)
    rejected = [listed[0], listed[-1]]
    exclude = tmp_path / "exclude.tsv"
    exclude.write_text("# wrong\n" + "\n".join(rejected) + "\n")
    graft = [*base, "--graft", str(source_file)]
    with caplog.at_level("INFO"):
        assert main([*graft, "--graft-exclude", str(exclude), "--out", str(tmp_path / "idx5")]) == 0
    assert "2 of 2 exclusions removed a lent name" in caplog.text
    capsys.readouterr()
    assert main(["show", "--index", str(tmp_path / "idx5"), "--lent"]) == 0
    after = {tuple(line.split("\t")[:2]) for line in capsys.readouterr().out.splitlines()[1:]}
    pairs = {tuple(line.split("\t")[:2]) for line in listed}
    gone = {tuple(line.split("\t")[:2]) for line in rejected}
    assert not after & gone
    # Everything else stays lent, but for the kinds of a rejected category (they inherit from higher up).
    parent = {t.id: t.parent for t in source}

    def under_rejected(sid: str | None) -> bool:
        return sid is not None and (sid in {g[0] for g in gone} or under_rejected(parent.get(sid)))

    assert {p for p in pairs - gone if not under_rejected(p[0])} <= after
    exclude.write_text("aa-1 no-such-tag\n")
    assert main([*graft, "--graft-exclude", str(exclude), "--out", str(tmp_path / "idx6")]) == 2
    assert main([*base, "--graft-exclude", str(exclude), "--out", str(tmp_path / "idx6")]) == 2
    assert not (tmp_path / "idx6").exists()
    assert main(["show", "--lent"]) == 2
    config.write_text(json.dumps({"rounds": 1, "enrich": False, "lexical_weight": 0}))
    assert main([*base, "--graft", str(source_file), "--out", str(tmp_path / "idx2")]) == 2
    assert not (tmp_path / "idx2").exists()
    values = tmp_path / "values.jsonl"
    values.write_text(json.dumps(Tag("v", "Color: Red", kind="attribute_value").to_dict()) + "\n")
    config.write_text(json.dumps({"rounds": 1, "enrich": False}))
    with caplog.at_level("INFO"):
        assert main([*base, "--graft", str(values), "--out", str(tmp_path / "idx4")]) == 0
    assert "no categories" in caplog.text
    assert "adapt/graft.json" not in read_manifest(tmp_path / "idx4", "tagindex")["files"]
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    assert main([*base, "--graft", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "idx3")]) == 2


def test_attribute_values_receive_no_names() -> None:
    names = ["Item: Jerseys", "Upper Body Wear/Tops"]
    tags = [Tag(str(i), n) for i, n in enumerate(names)]
    lexicon = TypeLexicon(names)
    assert lexicon.value_rows == {0}
    source = [Tag("a", "Apparel"), Tag("a-1", "Jerseys", parent="a"), Tag("a-2", "Clothing Tops", parent="a")]
    vectors = np.eye(2, dtype=np.float32)
    report = graft_lexicon(lexicon, tags, vectors, source, _unit([[1, 1], [1, 0], [0, 1]]), AdaptParams())
    assert report["lent"] == 1 and lexicon.grafted_names == ["Clothing Tops"] and lexicon.grafted_rows == [1]


def test_a_name_names_a_tag_only_with_all_its_modifiers() -> None:
    lexicon = TypeLexicon(["Fuel Pumps", "Upper Body Wear/Tops", "Baking/Cooking Mixes/Supplies"])
    assert lexicon.names_tag("Clothing Tops") == [1]  # the bare "Tops" alternative
    assert lexicon.names_tag("Hardware Pumps") == []  # "Fuel" is missing
    assert lexicon.names_tag("Fuel Pumps") == [0]
    assert lexicon.names_tag("Pet Supplies") == [2]  # by name only: the vectors must also agree
