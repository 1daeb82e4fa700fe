from __future__ import annotations

import pytest

from tagindex.config import TagIndexParams, TextParams
from tagindex.schema import Product, Tag
from tagindex.text import ancestors, product_text, tag_text, word_key

BY_ID = {
    "a": Tag("a", "Personal Accessories"),
    "b": Tag("b", "Personal Accessories", parent="a"),
    "c": Tag("c", "Jewellery", parent="b", description="rings and necklaces", synonyms=["jewelry"]),
}


def test_tag_text_collapses_repeated_levels_and_adds_synonyms_and_description() -> None:
    assert ancestors("c", BY_ID) == ["b", "a"]
    assert tag_text(BY_ID["c"], BY_ID) == "Personal Accessories > Jewellery (jewelry): rings and necklaces"
    plain = TextParams(tag_path=False, tag_synonyms=False, tag_description=False)
    assert tag_text(BY_ID["c"], BY_ID, plain) == "Jewellery"


def test_product_text_clips_description_at_a_word_boundary() -> None:
    product = Product(
        "1", "Silver ring", "A  handmade sterling silver ring with a small stone", {"size": ["6", "7"]}
    )
    text = product_text(product, TextParams(description_chars=20))
    assert text == "Silver ring. size: 6, 7. A handmade sterling"
    assert product_text(product, TextParams(description_chars=0, include_attributes=False)) == "Silver ring"


def test_params_round_trip_and_reject_unknown_keys() -> None:
    params = TagIndexParams()
    params.text.description_chars = 42
    params.index.kind = "hnsw"
    again = TagIndexParams.from_dict(params.to_dict())
    assert again == params and isinstance(again.text, TextParams)
    import pytest

    with pytest.raises(ValueError, match="unknown key"):
        TagIndexParams.from_dict({"text": {"nope": 1}})


def test_html_descriptions_become_text() -> None:
    from tagindex.text import html_to_text

    html = (
        "<style>p{color:red}</style><h2>Merino&nbsp;crew</h2><p>Soft &amp; warm,<br>made in "
        "Portugal &#8211; <em>100%</em> wool.</p><ul><li>Machine wash</li><li>Caf&eacute; colour</li></ul>"
        "<script>track()</script>"
    )
    assert (
        html_to_text(html)
        == "Merino crew\nSoft & warm,\nmade in Portugal – 100% wool.\nMachine wash\nCafé colour"
    )
    plain = "Tom & Jerry mug, 3 < 4 sizes"
    assert html_to_text(plain) == plain  # no markup: unchanged
    assert html_to_text("<p>unclosed <b>bold") == "unclosed bold"


def test_titles_have_their_character_references_decoded() -> None:
    from tagindex.adapt.lexical import title_head
    from tagindex.io import product_from_row
    from tagindex.text import unescape_entities

    # Real AE-110K titles: the escaped apostrophe and ampersand cut the product phrase at ";".
    raw = "Original New Arrival 2018 Adidas  Men&#39;s Shorts Sportswear Breathable"
    product = product_from_row({"id": "1", "title": raw})
    assert product.title == "Original New Arrival 2018 Adidas  Men's Shorts Sportswear Breathable"
    assert "short" in title_head(product.title)[1] and "short" not in title_head(raw)[1]
    assert product_from_row({"id": "2", "title": "Men &amp; women Basketball Jerseys"}).title == (
        "Men & women Basketball Jerseys"
    )
    assert unescape_entities("Tom & Jerry mug, 3 < 4 sizes") == "Tom & Jerry mug, 3 < 4 sizes"


def test_ids_from_names_are_stable_slugs() -> None:
    from tagindex.text import ids_from_names, slug

    assert slug("  Eco-friendly   Bags! ") == "eco-friendly-bags"
    assert ids_from_names(["Waterproof", "Lightweight"]) == ["waterproof", "lightweight"]
    first = ids_from_names(["T-Shirts", "T shirts"])
    assert first == ids_from_names(["T-Shirts", "T shirts"]) and len(set(first)) == 2
    assert ids_from_names(["T shirts", "T-Shirts"]) == first[::-1]  # order does not change ids


def test_huge_titles_are_clipped_in_encoder_text() -> None:
    from tagindex.schema import LIMITS

    text = product_text(Product("p", "word " * 1_000_000))
    assert len(text) <= LIMITS.title_chars


def test_word_key_folds_plurals_and_ie_y_endings() -> None:
    assert word_key("Hoodies") == word_key("hoodie") == "hoodi"
    assert word_key("Dresses") == word_key("dress") == "dress"
    assert word_key("Necklaces") == word_key("necklace")
    assert word_key("Watches") == word_key("watch")
    assert word_key("Bodies") == word_key("body")
    assert word_key("batteries") == word_key("battery") == "batteri"
    assert word_key("Women's") == "women"
    assert word_key("glass") == "glass" and word_key("bus") == "bus"  # not plurals


def test_word_key_is_its_own_key() -> None:
    # Vocabulary counts saved as keys are folded again on load; that must not move them.
    words = ["Hoodies", "hoodie", "dresses", "batteries", "toys", "boxes", "glasses", "Women's", "analysis"]
    assert all(word_key(word_key(w)) == word_key(w) for w in words)


def test_a_data_field_name_is_shown_as_the_word_it_means() -> None:
    # MWPD's scraped "breadcrumb" field was read by the encoder as bread crumbs.
    offer = Product("1", "Youth UFC Hoodie", attributes={"breadcrumb": "UFC > Hoodies", "color": "red"})
    assert product_text(offer) == "Youth UFC Hoodie. category: UFC > Hoodies; color: red"
    kept = TextParams(attribute_labels={})
    assert product_text(offer, kept) == "Youth UFC Hoodie. breadcrumb: UFC > Hoodies; color: red"
    # The labels are index parameters: saved with the index and read back.
    saved = TagIndexParams(text=TextParams(attribute_labels={"sku": "code"})).to_dict()
    params = TagIndexParams.from_dict(saved)
    assert params.text.attribute_labels == {"sku": "code"}


@pytest.mark.parametrize("name", ["Breadcrumb", "breadcrumbs", "Bread_Crumbs", "BreadCrumb", "bread crumb"])
def test_an_attribute_label_applies_to_any_spelling_of_its_name(name: str) -> None:
    # A shop's own export spells the field its way; each spelling would be read as bread crumbs.
    offer = Product("1", "Youth UFC Hoodie", attributes={name: "UFC > Hoodies"})
    assert product_text(offer) == "Youth UFC Hoodie. category: UFC > Hoodies"


def test_an_attribute_label_does_not_apply_to_another_name() -> None:
    offer = Product("1", "Rye", attributes={"crumb": "coarse", "breadcrumb_id": "7"})
    assert product_text(offer) == "Rye. crumb: coarse; breadcrumb_id: 7"
    # Names in other scripts keep their own keys; a name of punctuation alone matches only itself.
    chinese = TextParams(attribute_labels={"面包屑": "类别", "--": "dashes"})
    assert product_text(Product("1", "Rye", attributes={"颜色": "黑"}), chinese) == "Rye. 颜色: 黑"
    assert product_text(Product("1", "Rye", attributes={"__": "x"}), chinese) == "Rye. __: x"
    # The name as given wins over another spelling of it.
    labels = TextParams(attribute_labels={"Type": "kind", "type": "product type"})
    assert (
        product_text(Product("1", "Rye", attributes={"type": "bread"}), labels) == "Rye. product type: bread"
    )


def test_models_saved_before_attribute_labels_show_names_as_given() -> None:
    from tagindex.config import with_legacy_attribute_labels
    from tagindex.cross_encoder import RerankerParams

    saved = RerankerParams().to_dict()
    del saved["attribute_labels"]  # a reranker manifest written before session 18
    assert RerankerParams.from_dict(with_legacy_attribute_labels(saved)).attribute_labels == {}
    assert RerankerParams().attribute_labels == {"breadcrumb": "category"}


def test_attribute_labels_that_are_not_a_mapping_of_words_are_refused() -> None:
    with pytest.raises(TypeError, match="attribute_labels"):
        TagIndexParams.from_dict({"text": {"attribute_labels": ["breadcrumb"]}})
