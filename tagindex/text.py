"""Turns tags and products into the text the encoders read."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache

from tagindex.config import TextParams
from tagindex.schema import Product, Tag


def ancestors(tag_id: str, by_id: Mapping[str, Tag]) -> list[str]:
    """Ids of a tag's ancestors, nearest first."""
    out: list[str] = []
    parent = by_id[tag_id].parent if tag_id in by_id else None
    while parent is not None and parent in by_id and parent not in out:
        out.append(parent)
        parent = by_id[parent].parent
    return out


def tag_path(tag: Tag, by_id: Mapping[str, Tag]) -> list[str]:
    """Names from the root down to the tag, with immediate repeats collapsed (GS1 repeats names)."""
    names = [by_id[a].name for a in reversed(ancestors(tag.id, by_id))] + [tag.name]
    collapsed: list[str] = []
    for name in names:
        if not collapsed or collapsed[-1].casefold() != name.casefold():
            collapsed.append(name)
    return collapsed


def tag_text(tag: Tag, by_id: Mapping[str, Tag], params: TextParams | None = None) -> str:
    """Encoder input for a tag: its path, description and synonyms."""
    params = params or TextParams()
    text = " > ".join(tag_path(tag, by_id)) if params.tag_path else tag.name
    if params.tag_synonyms and tag.synonyms:
        text += f" ({', '.join(tag.synonyms)})"
    if params.tag_description and tag.description:
        text += f": {tag.description}"
    return normalize_text(text)


def _clip(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    cut = text[:budget]
    space = cut.rfind(" ")
    return cut[:space] if space > budget // 2 else cut


def product_text(product: Product, params: TextParams | None = None) -> str:
    """Encoder input for a product: title, attributes, then the description up to a character budget."""
    params = params or TextParams()
    parts = [product.title.strip()]
    if params.include_attributes and product.attributes:
        attrs = []
        for name, value in product.attributes.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            if shown:
                attrs.append(f"{name}: {shown}")
        if attrs:
            parts.append("; ".join(attrs))
    description = " ".join(product.description.split())
    if params.description_chars > 0 and description:
        parts.append(_clip(description, params.description_chars))
    return normalize_text(". ".join(p for p in parts if p))


# Chinese punctuation NFKC leaves alone, mapped to the ASCII the English side uses.
_CJK_PUNCT = str.maketrans(
    {
        "。": ". ",
        "、": ", ",
        "《": '"',
        "》": '"',
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "【": "[",
        "】": "]",
        "〜": "~",
        "・": " ",
        "·": " ",
    }
)


@lru_cache(maxsize=1)
def _t2s() -> Callable[[str], str] | None:
    """Traditional -> simplified converter, or None when no offline converter is installed."""
    try:
        from opencc import OpenCC  # opencc-python-reimplemented (extra `zh`)
    except ImportError:
        return None
    convert: Callable[[str], str] = OpenCC("t2s").convert
    return convert


def has_cjk(text: str) -> bool:
    """Whether the text contains a CJK ideograph."""
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


def normalize_text(text: str, simplify: bool = True) -> str:
    """Normalises text before encoding; ASCII text comes back unchanged.

    NFKC folds full-width letters, digits and punctuation (``ＡＢＣ，１２３``) to ASCII; Chinese
    punctuation that NFKC keeps (``。、《》``) is mapped too; traditional characters become
    simplified when ``simplify`` and ``opencc-python-reimplemented`` is installed (the distilled
    student learnt simplified Chinese). Whitespace is collapsed. Mixed Chinese/English needs
    nothing more: the BERT tokenizer already splits every CJK character into its own token.
    """
    if text.isascii():
        return text
    out = unicodedata.normalize("NFKC", text).translate(_CJK_PUNCT)
    if simplify and has_cjk(out):
        t2s = _t2s()
        if t2s is not None:
            out = t2s(out)
    return " ".join(out.split())
