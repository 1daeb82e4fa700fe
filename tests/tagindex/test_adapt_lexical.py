"""The product-type match of `tagindex adapt` (tagindex.adapt.lexical): head nouns of titles against
tag names, on real Shopify category names and MWPD titles, and its place in the adapted index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tagindex import Product, Tag, TagIndex
from tagindex.active import QueueParams, review_queue
from tagindex.adapt import AdaptParams, ScoreAdjuster, adapt
from tagindex.adapt.lexical import (
    CATEGORY_ATTRIBUTES,
    TypeLexicon,
    category_path,
    match_text,
    product_match_text,
    title_head,
)
from tagindex.convert import convert
from tagindex.explain import Explainer
from tagindex.io import load_products, load_tags


@pytest.fixture(scope="module")
def shopify_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Shopify taxonomy converted by the real converter."""
    out = tmp_path_factory.mktemp("shopify")
    convert("shopify", shared_data / "shopify-taxonomy", out)
    return out


@pytest.mark.parametrize(
    ("title", "head"),
    [
        ("Drake Bulldogs All-American Primary Pullover Hoodie - Gunmetal", "hoodi"),
        ("Red Rose and Crystal Pendant Necklace on a Red Ribbon Necklace", "necklace"),
        ("Troy University Trojans Ladies Team Arch Classic Fit T-Shirt - Cardinal", "shirt"),
        ("Nature's Promise Rabbit Pellets - 5 lb.", "pellet"),
        ("Women's Slash Neck Long Sleeve Crop Top", "top"),
        ("- Gunmetal", "gunmetal"),  # nothing before the cut: the whole title
        # A category path: the cut applies in its last segment only (a comma in a name is no qualifier).
        ("Apparel & Accessories > Handbags, Wallets & Cases > Wallets & Money Clips > Card Cases", "case"),
        ("Arts & Entertainment > Craft Paint, Ink & Glaze > Art Ink > Acrylic Ink, 30 ml", "ink"),
        ("12 - 34", None),
        # An audience word is no product type (real MWPD titles and a breadcrumb's segment).
        ("Icebreaker Sprite Racerback Bra Woman", "bra"),
        ("Mavic Cosmic Pro Jersey Woman", "jersei"),
        ("Shoes woman", "shoe"),
    ],
)
def test_title_head_is_the_last_word_before_the_first_qualifier(title: str, head: str | None) -> None:
    assert title_head(title)[0] == head


def test_a_lone_word_before_a_longer_alternative_is_a_modifier() -> None:
    lex = TypeLexicon(["Flag & Windsock Accessories", "Flags & Windsocks", "Table & Bar Stools", "Tables"])
    scores = lex.scores(["Iowa State Cyclones Burlap House Flag", "Modernus Cocktail Table"]).toarray()
    assert scores.shape == (2, 4)
    assert scores[0].argmax() == 1 and scores[0, 0] < scores[0, 1]  # a flag is not a flag accessory
    assert scores[1].argmax() == 3 and scores[1, 2] < scores[1, 3]


def test_generic_heads_count_only_with_their_modifiers() -> None:
    names = [f"{m} Tops" for m in ("Tank", "Crop", "Tube", "Spinning", "Battle", "Vehicle Soft")] + ["Tops"]
    scores = TypeLexicon(names, generic_df=5).scores(["Purdue Womens Black Swing Tank Top"]).toarray()[0]
    assert scores[0] == pytest.approx(1.0)  # "Tank Tops": head and modifier in the title
    assert scores[6] == pytest.approx(1.0)  # "Tops": no modifier to miss
    assert 0 < scores[1] < 1 and scores[1] == pytest.approx(5 / 7)  # "Crop Tops": 7 tags share "top"
    other = TypeLexicon(["Hoodies", "Logos"]).scores(["Michigan State Big Logo Hoodie"]).toarray()[0]
    assert other[0] == 1.0 and other[1] == pytest.approx(0.25)  # another word of the phrase


def test_a_tag_missing_all_its_modifiers_matches_at_most_its_cap(tmp_path: Path) -> None:
    names = ["Water Polo", "Polos", "Twist Ties", "Tank Tops"]
    titles = ["Mens Washington Huskies Nike Purple Sideline Staff Performance Polo", "Blue Grid Tie"]
    full = TypeLexicon(names).scores(titles).toarray()
    capped = TypeLexicon(names, missing_modifiers=0.5).scores(titles).toarray()
    assert full[0, 0] == full[0, 1] == 1.0  # a rare head matched whatever its modifiers
    assert capped[0, 0] == pytest.approx(0.5) and capped[0, 1] == 1.0  # the shirt now names Polos
    assert capped[1, 2] == pytest.approx(0.5)
    tank = TypeLexicon(names, missing_modifiers=0.5).scores(["Swing Tank Top"]).toarray()[0]
    assert tank[3] == 1.0  # its modifier is there: no cap
    # The cap travels with the index; one saved before it existed keeps the full match.
    loaded, legacy = _saved_and_legacy(tmp_path, names, "lexical_missing_modifiers")
    assert loaded.missing_modifiers == 0.5 and legacy.missing_modifiers == 1.0


def _saved_and_legacy(tmp_path: Path, names: list[str], setting: str) -> tuple[TypeLexicon, TypeLexicon]:
    """The lexicon of an adjuster saved with ``setting`` at 0.5, loaded back, and loaded again after
    the setting was deleted from its ``adjuster.json`` (an index adapted before it existed)."""
    tags = [Tag(str(i), n) for i, n in enumerate(names)]
    n = len(names)
    caps = {"lexical_missing_modifiers": 1.0, "lexical_unnamed_kind": 1.0, setting: 0.5}
    lexicon = TypeLexicon(
        names, missing_modifiers=caps["lexical_missing_modifiers"], unnamed_kind=caps["lexical_unnamed_kind"]
    )
    adj = ScoreAdjuster.for_tags(
        tags, np.zeros(n), np.ones(n), 1.0, False, lexical_weight=2.0, lexicon=lexicon
    )
    adj.save(tmp_path)
    loaded = ScoreAdjuster.load(tmp_path, n, names).lexicon
    info = tmp_path / "adapt" / "adjuster.json"
    old = json.loads(info.read_text())
    del old[setting]
    info.write_text(json.dumps(old))
    legacy = ScoreAdjuster.load(tmp_path, n, names).lexicon
    assert loaded is not None and legacy is not None
    return loaded, legacy


def test_a_tag_naming_none_of_the_titles_kinds_matches_at_most_its_cap(tmp_path: Path) -> None:
    # Real Shopify names that share the head "Masks" (generic: more than 5 tags) or "Guitars".
    masks = ["Masks", "Fashion Face Masks", "Medical Face Masks", "Dust Masks", "Eye Masks", "Fencing Masks"]
    names = masks + ["Guitars", "Electric Guitars"]
    titles = [
        "Con.Struct Face Mask",
        "Left Handed LP Electric Guitar",
        "Halloween Party Mask",
        "Acoustic Guitar",
    ]
    full = TypeLexicon(names).scores(titles).toarray()
    capped = TypeLexicon(names, unnamed_kind=0.5).scores(titles).toarray()
    assert full[0, 0] == 1.0 and full[0, 0] > full[0, 1]  # the bare costume "Masks" led
    assert capped[0, 0] == pytest.approx(0.5) and capped[0, 3] <= 0.5  # "face" is not theirs
    assert capped[0, 1] == full[0, 1] == capped[0, 2] > 0.5  # those naming "face" keep their match
    assert capped[0, 1] > capped[0, 0]
    assert capped[1, 6] == pytest.approx(0.5) and capped[1, 7] == 1.0
    # A title naming no kind of its head ("Party" and "Acoustic" are no tag's modifiers) is unchanged.
    np.testing.assert_array_equal(capped[2:], full[2:])
    # Only the two words before the head name its kind: "Top of the World" is a brand, not a top hat.
    hats = TypeLexicon(["Hats", "Top Hats"], unnamed_kind=0.5)
    brand, kind = hats.scores(["Indiana Hoosiers Top of the World Baseball Hat", "Black Top Hat"]).toarray()
    assert brand[0] == 1.0 and kind[0] == pytest.approx(0.5) and kind[1] == 1.0
    # The cap travels with the index; one saved before it existed matches unnamed kinds in full.
    loaded, legacy = _saved_and_legacy(tmp_path, names, "lexical_unnamed_kind")
    assert loaded.unnamed_kind == 0.5 and legacy.unnamed_kind == 1.0
    # Lent names are matched with the same setting.
    lender = TypeLexicon(["Guitars"], unnamed_kind=0.5)
    lender.graft(["Guitars", "Electric Guitars"], [0, 0])
    assert lender._lent is not None and lender._lent.unnamed_kind == 0.5


@pytest.mark.parametrize(
    ("value", "path"),
    [  # real MWPD breadcrumbs
        ("Home > Aquarium Supplies > Water Pumps", "Aquarium Supplies > Water Pumps"),
        ("Home Page > Appliance Parts > Other > Coffee Maker", "Appliance Parts > Other > Coffee Maker"),
        ("Home", "none"),  # a site's home link names no category ("Home & Garden" would be read)
        ("Home & Garden > Pool & Spa", None),
        ("Dog Harnesses >> Safety Harnesses", "Dog Harnesses > Safety Harnesses"),
        ("Alterna|Shampoo", "Alterna > Shampoo"),
        ("Men/Underwear/Undertees", "Men > Underwear > Undertees"),
        ("Media > Books > Business & Economics : Motivational {set=Media > Books}", None),
        ("http://www.wholesalepoint.com/product/Covidien-P2336C", "none"),
        ("/antiques", "antiques"),
        (" | ", "none"),
    ],
)
def test_a_shop_category_is_read_as_a_path(value: str, path: str | None) -> None:
    expected = value if path is None else (None if path == "none" else path)
    if path is None:
        expected = " > ".join(s.strip() for s in value.split("{")[0].split(">"))
    assert category_path(value) == expected
    assert match_text("T", value) == ("T" if expected is None else f"T\x1f{expected}")


def test_the_shop_category_is_found_under_any_spelling_of_its_attribute() -> None:
    # A shop's own export: "Category", "Product Type", "breadcrumbs", not the default lower-case names.
    for name in ("Category", "categories", "Product Type", "product-type", "Breadcrumbs"):
        offer = Product("1", "Tech Air CASETAN3202", attributes={name: "Laptop Bags"})
        assert product_match_text(offer, CATEGORY_ATTRIBUTES) == "Tech Air CASETAN3202\x1fLaptop Bags"
    # The first of the wanted attributes wins, whatever the product's own order and spelling.
    both = Product("1", "T", attributes={"Product Type": "Bags", "Breadcrumb": "Luggage > Laptop Bags"})
    assert product_match_text(both, CATEGORY_ATTRIBUTES) == "T\x1fLuggage > Laptop Bags"
    assert product_match_text(Product("1", "T", attributes={"color": "red"}), CATEGORY_ATTRIBUTES) == "T"


def test_a_title_naming_no_tag_is_matched_through_its_shop_category(tmp_path: Path) -> None:
    # Real Shopify names; real MWPD titles and breadcrumbs.
    names = ["Food Mixers", "Mixers", "Cement Mixers", "Laptop Bags", "Speaker Bags, Covers & Cases"]
    names.append("Shampoo")
    lexicon = TypeLexicon(names, missing_modifiers=0.5, category=0.5, category_attributes=["breadcrumb"])
    laptop = {"breadcrumb": "Luggage & Bags > Laptop Bags & Cases"}
    food = {"breadcrumb": "Food Mixers"}
    products = [
        Product("1", "Sunbeam FPSBHS0301 Hand and Stand Mixer Combo", attributes=food),
        Product("2", "Tech Air CASETAN3202", attributes=laptop),
        Product("3", "Organic Lavender Shampoo", attributes=food),
        Product("4", "Tech Air CASETAN3202"),
    ]
    texts = lexicon.match_texts(products)
    assert texts[3] == "Tech Air CASETAN3202"
    scores = lexicon.scores(texts).toarray()
    off_lexicon = TypeLexicon(names, missing_modifiers=0.5)  # category 0: titles only
    assert off_lexicon.match_texts(products) == [p.title for p in products]
    off = off_lexicon.scores(off_lexicon.match_texts(products)).toarray()
    assert scores[0, 0] == pytest.approx(0.5) and off[0, 0] < 0.5  # "Combo" names no tag
    assert scores[0, 2] == off[0, 2] < 0.5  # "Cement Mixers", half named by the category: title only
    # "Laptop Bags & Cases" names laptop bags and laptop cases (its last word alone would be "Cases").
    assert scores[1, 3] == pytest.approx(0.5) and scores[1, 4] <= 0.5 and not off[1].any()
    # A title that names a tag is not overruled by its category.
    np.testing.assert_array_equal(scores[2], off[2])
    np.testing.assert_array_equal(scores[3], off[3])
    # Explanations say which matches the category made (not those the title made).
    laptop_path = {"category": "Luggage & Bags > Laptop Bags & Cases"}
    assert lexicon.match_sources(texts[1]) == {3: laptop_path, 4: laptop_path}  # its "Cases" too
    assert lexicon.match_sources(texts[0]) == {0: {"category": "Food Mixers"}, 1: {"category": "Food Mixers"}}
    assert lexicon.match_sources(texts[2]) == {}
    # The setting travels with the index; one adapted before it existed reads titles only.
    tags = [Tag(str(i), n) for i, n in enumerate(names)]
    n = len(names)
    zeros, ones = np.zeros(n), np.ones(n)
    adj = ScoreAdjuster.for_tags(tags, zeros, ones, 1.0, False, lexical_weight=2.0, lexicon=lexicon)
    adj.save(tmp_path)
    loaded = ScoreAdjuster.load(tmp_path, n, names).lexicon
    assert loaded is not None and loaded.match_texts(products) == texts
    info = tmp_path / "adapt" / "adjuster.json"
    old = json.loads(info.read_text())
    del old["lexical_category"], old["lexical_category_attributes"]
    info.write_text(json.dumps(old))
    legacy = ScoreAdjuster.load(tmp_path, n, names).lexicon
    assert legacy is not None and legacy.match_texts(products) == [p.title for p in products]
    # A title holding the separator's control character is read whole, never as a category.
    odd = Product("5", "Organic Lavender\x1fShampoo", attributes=food)
    assert lexicon.scores(lexicon.match_texts([odd])).toarray()[0, 5] == 1.0
    # Lent names read the category the same way.
    lexicon.graft(["Hand Mixers"], [1])
    assert lexicon._lent is not None and lexicon._lent.category == 0.5


def test_a_tag_named_for_one_audience_does_not_match_a_text_naming_the_other() -> None:
    # Real Shopify names (Apparel & Accessories > Clothing > ...); real MWPD titles and breadcrumb.
    names = ["Men's Undershirts", "Women's Undershirts", "Men's Underwear", "Girls' Underwear", "Bras"]
    lex = TypeLexicon(names, category=0.5, category_attributes=["breadcrumb"])

    def matched(text: str) -> set[str]:
        return {names[j] for j in lex.scores([text]).tocoo().col.tolist()}

    assert matched("Women's New Era Tri-Blend Undershirt") == {"Women's Undershirts"}
    assert matched("Mens Cotton Crew Undershirt 3 Pack") >= {"Men's Undershirts"}
    assert "Women's Undershirts" not in matched("Mens Cotton Crew Undershirt 3 Pack")
    assert matched("Cotton Crew Undershirt") == {"Men's Undershirts", "Women's Undershirts"}  # no audience
    assert matched("Icebreaker Sprite Racerback Bra Woman") == {"Bras"}
    # The shop's category is read with its own audience: women's underwear is not the men's.
    assert "Men's Underwear" not in matched(match_text("Sprite Top", "Womens clothing > Underwear"))
    assert "Men's Underwear" in matched(match_text("Sprite Top", "Mens clothing > Underwear"))


def test_real_shopify_names_match_real_mwpd_titles(shopify_dir: Path, mwpd_dir: Path) -> None:
    tags = load_tags(shopify_dir / "tags.jsonl")
    names = [t.name for t in tags if t.kind == "category"]
    titles = {p.title for p in load_products(mwpd_dir / "validation.jsonl")}
    lex = TypeLexicon(names)
    for title, expected in [
        ("Mens Michigan State Spartans Green Big Logo Hoodie", "Hoodies"),
        ("HoMedics Personal/Portable Ultrasonic Cool Mist Humidifier", "Humidifiers"),
        ("Red Rose and Crystal Pendant Necklace on a Red Ribbon Necklace", "Necklaces"),
    ]:
        if title not in titles:
            pytest.skip("the MWPD slice changed")
        row = lex.scores([title]).toarray()[0]
        assert expected in {names[j] for j in np.flatnonzero(row == row.max())}


def test_adjuster_adds_the_match_in_units_of_each_products_spread(tmp_path: Path) -> None:
    tags = [Tag("a", "Hoodies"), Tag("b", "Basketballs"), Tag("c", "Hoodie Strings")]
    adj = ScoreAdjuster.for_tags(tags, np.zeros(3), np.ones(3), 1.0, False, lexical_weight=2.0)
    sims = np.array([[0.40, 0.55, 0.30]], dtype=np.float32)  # (1, tags): the encoder prefers the ball
    with pytest.raises(ValueError, match="titles"):
        adj.top(sims, 1)
    match = adj.match(["Dayton Flyers Basketball Pullover Hoodie"])
    assert adj.top(sims, 1, lexical=match)[1].tolist() == [[0]]
    expected = sims[0, 0] + 2.0 * sims[0].std() * 1.0
    assert adj.adjust(sims, lexical=match)[0, 0] == pytest.approx(expected, rel=1e-5)
    adj.save(tmp_path)
    with pytest.raises(Exception, match="tag names"):
        ScoreAdjuster.load(tmp_path, 3)
    loaded = ScoreAdjuster.load(tmp_path, 3, [t.name for t in tags])
    assert loaded.describe() == adj.describe() and loaded.lexical_weight == 2.0
    np.testing.assert_array_equal(loaded.adjust(sims, lexical=match), adj.adjust(sims, lexical=match))
    off = ScoreAdjuster.for_tags(tags, np.zeros(3), np.ones(3), 1.0, False)
    assert off.match(["anything"]) is None and off.top(sims, 1)[1].tolist() == [[1]]


def test_adapted_index_matches_titles_through_every_entry_point(
    encoder, shopify_dir: Path, mwpd_dir: Path, tmp_path: Path
) -> None:
    categories = [t for t in load_tags(shopify_dir / "tags.jsonl") if t.kind == "category"]
    tags = [t for t in categories if t.id.startswith("aa")][:400]  # apparel: Clothing's subtree first
    catalog = [Product(p.id, p.title) for p in load_products(mwpd_dir / "train.jsonl")[:120]]
    queries = [Product("q1", "Northern Illinois Huskies Youth Basic Arch Pullover Hoodie - Cardinal")]
    params = {"rounds": 1, "enrich": False}
    plain, _ = adapt(tags, catalog, AdaptParams(**params, lexical_weight=0.0), encoder=encoder)
    index, report = adapt(tags, catalog, AdaptParams(**params), encoder=encoder)
    assert 0 < report["adapt"]["lexical"]["titles_matched"] <= 1
    top = index.tag(queries, top_k=3)[0].to_dict()["tags"]
    # "Hoodies" or "Activewear Sweatshirts & Hoodies": a tag that names the title's product type.
    assert index.get(top[0]["tag"]).name.endswith("Hoodies")
    assert plain.tag(queries, top_k=3)[0].to_dict()["tags"] != top  # the match changed the ranking
    vectors = index.encode_products(queries)
    with pytest.raises(ValueError, match="titles"):
        index.tag_vectors(["q1"], vectors, 3)
    index.save(tmp_path / "idx")
    loaded = TagIndex.load(tmp_path / "idx", encoder=encoder)
    assert loaded.tag(queries, top_k=3)[0].to_dict()["tags"] == top
    # Explanations give the part of each score that the title match added.
    explained = Explainer(loaded).explain(queries)[0]["assigned"]
    assert explained[0]["tag"] == top[0]["tag"] and explained[0]["parts"]["title_match"] > 0
    assert all(item["parts"]["title_match"] >= 0 for item in explained)
    assert not any("title_match_category" in item for item in explained)  # the title named them
    # A title naming nothing, in a shop category that names a tag: the explanation says so.
    crumb = Product(
        "q2", "Northern Illinois Huskies 2014 Edition", attributes={"breadcrumb": "Fan Shop > Hoodies"}
    )
    hoodies = {t.id for t in tags if t.name == "Hoodies"}
    named = [item for item in Explainer(loaded).explain([crumb])[0]["assigned"] if item["tag"] in hoodies]
    assert named and all(item["title_match_category"] == "Fan Shop > Hoodies" for item in named)
    # The review queue suggests what `tag` would answer (adapted scores with the title match).
    pool = catalog[:12] + queries
    by_product = {r.id: [t.tag for t in r.tags] for r in index.tag(pool, top_k=2)}
    for pick in review_queue(index, pool, 5, params=QueueParams(suggestions=2)):
        assert [t.tag for t in pick.tags] == by_product[pick.id]


def test_attribute_values_match_as_their_value_anywhere_in_the_title() -> None:
    names = [
        "Color: Red Patent",
        "Item: Spinner Bait",
        "Size: 14 M US",
        "Brand: Ellie Shoes",
        "Color: Red",
        "Color: Blue",
    ]
    lex = TypeLexicon(names)
    scores = lex.scores(["Ellie Shoes Womens Pump - Red Patent", "Booyah Spinner Bait, 1/2 oz"]).toarray()
    assert scores[0].tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]  # every value word after the dash too
    assert scores[1].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]  # the value's head is the title's head
    # "Color" is the attribute, not a word the title must contain; a size code alone never matches.
    assert lex.scores(["Size 14 M US Red Pump"]).toarray()[0].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_titles_and_names_without_latin_words_match_nothing_and_never_fail() -> None:
    lex = TypeLexicon(["Hoodies", "", "1234", "连帽衫", "Color: 红色", "Size: XL"])
    scores = lex.scores(["", "   ", "----", "男士连帽衫 红色", "12345", "Hoodie"]).toarray()
    assert scores.shape == (6, 6)
    assert scores[:5].sum() == 0 and scores[5].tolist() == [1.0, 0, 0, 0, 0, 0]
    assert TypeLexicon([]).scores(["Hoodie"]).shape == (1, 0)
