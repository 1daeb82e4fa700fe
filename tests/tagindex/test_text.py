from __future__ import annotations

from tagindex.config import TagIndexParams, TextParams
from tagindex.schema import Product, Tag
from tagindex.text import ancestors, product_text, tag_text

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
