"""Turns tags and products into the text the encoders read; HTML to text; tag ids from names."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache
from html.parser import HTMLParser
from typing import TypeVar

from tagindex.config import TextParams
from tagindex.schema import LIMITS, Product, Tag


def ancestors(tag_id: str, by_id: Mapping[str, Tag]) -> list[str]:
    """Ids of a tag's ancestors, nearest first."""
    out: list[str] = []
    parent = by_id[tag_id].parent if tag_id in by_id else None
    while parent is not None and parent in by_id and parent not in out:
        out.append(parent)
        parent = by_id[parent].parent
    return out


def tag_path(tag: Tag, by_id: Mapping[str, Tag], language: str | None = None) -> list[str]:
    """Names from the root down to the tag, with immediate repeats collapsed (GS1 repeats names).

    With ``language``, each name as :meth:`Tag.name_in` gives it (the default name where a tag has
    none in that language).
    """
    names = [by_id[a].name_in(language) for a in reversed(ancestors(tag.id, by_id))] + [tag.name_in(language)]
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
    # Loaders refuse longer titles; a Product built in code is clipped so it cannot flood the encoder.
    parts = [_clip(product.title.strip(), LIMITS.title_chars)]
    if params.include_attributes and product.attributes:
        attrs = []
        for name, value in product.attributes.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            if shown:
                attrs.append(f"{attribute_label(name, params.attribute_labels)}: {shown}")
        if attrs:
            parts.append("; ".join(attrs))
    description = " ".join(product.description.split())
    if params.description_chars > 0 and description:
        parts.append(_clip(description, params.description_chars))
    return normalize_text(". ".join(p for p in parts if p))


V = TypeVar("V")

# Word characters of any script survive, so "类别" and "面包屑" keep distinct keys.
_NAME_JOINERS = re.compile(r"[\W_]+")


@lru_cache(maxsize=4096)
def attribute_name_key(name: str) -> str:
    """One key for the spellings of an attribute's name: "Breadcrumbs", "bread_crumb" and
    "BreadCrumb" -> "breadcrumb"; "Product Type" and "product_type" -> "producttype"."""
    return word_key(_NAME_JOINERS.sub("", name.casefold()))


def by_attribute_name(mapping: Mapping[str, V], name: str) -> V | None:
    """``mapping``'s value for attribute ``name``: the name as given first, then the first key that
    is another spelling of it (:func:`attribute_name_key`); None when there is neither."""
    if name in mapping:
        return mapping[name]
    key = attribute_name_key(name)
    if not key:  # a name of punctuation alone spells nothing else
        return None
    return next((value for n, value in mapping.items() if attribute_name_key(n) == key), None)


def attribute_label(name: str, labels: Mapping[str, str]) -> str:
    """How attribute ``name`` is shown to the encoder: its label in ``labels`` under any spelling
    (:func:`by_attribute_name`), else the name itself."""
    label = by_attribute_name(labels, name)
    return name if label is None else label


# ---- HTML ---------------------------------------------------------------------------------------
_BLOCK_TAGS = frozenset(
    {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "footer"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre"}
    | {"section", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "head", "title"})
_ENTITY = re.compile(r"&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")  # a character reference
_MARKUP = re.compile(r"<[A-Za-z!/?]|" + _ENTITY.pattern)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities such as &amp; and &#233; come back unescaped
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(text: str) -> str:
    """Plain text of an HTML fragment (a Shopify ``Body (HTML)``, a crawled description).

    Tags are dropped (script and style contents too), block elements become line breaks, entities
    are unescaped and runs of spaces collapse. Text without markup is returned unchanged.
    """
    if not _MARKUP.search(text):
        return text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def unescape_entities(text: str) -> str:
    """A title with its HTML character references decoded ("Men&#39;s Shorts" -> "Men's Shorts").

    Shop feeds and scraped catalogs often escape titles (13% of AE-110K's titles). Left as they are,
    the encoder reads "&#39;" and the title match cuts the product phrase at its ";". Angle brackets
    are not parsed: a title is text, and "3 < 5 inch" stays as it is.
    """
    return html.unescape(text) if _ENTITY.search(text) else text


# ---- word keys ----------------------------------------------------------------------------------
def word_key(word: str) -> str:
    """One key for the singular and plural of an English noun, without a stemmer dependency.

    Lower-cases, drops a possessive ``'s`` and folds plurals (``-ies``, ``-sses``/``-shes``/
    ``-ches``/``-xes``/``-zes``, a plain ``-s``; not ``-ss``, ``-us``, ``-is``: "glass", "bus",
    "analysis" stay). The ``-ie`` and ``-y`` endings then both become ``-i``, because the plural of a
    ``-y`` noun ("bodies") and of an ``-ie`` noun ("hoodies") end alike: folding ``-ies`` to either
    ending alone splits the other noun's singular from its plural ("hoodies" -> "hoody" but "hoodie"
    stays), while ``-i`` joins both ("Hoodies", "hoodie" -> "hoodi"; "batteries", "battery" ->
    "batteri"). Keys are for matching and counting, not for display. Every key is its own key
    (``word_key(word_key(w)) == word_key(w)``), so keys stored by one run can be folded again safely.

    Args:
        word: One word; callers do their own tokenising (and any accent or case folding first).

    Returns:
        The word's key ("Dresses" -> "dress", "Watches" -> "watch", "Women's" -> "women").
    """
    w = word.lower().strip("'-")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "i"
    elif len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes", "zes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is", "'s")):
        w = w[:-1]
    if len(w) > 3 and w.endswith("ie"):
        w = w[:-2] + "i"
    elif len(w) > 3 and w.endswith("y"):
        w = w[:-1] + "i"
    return w


# ---- ids from names -----------------------------------------------------------------------------
def slug(name: str) -> str:
    """Lower-case word characters joined by ``-`` (letters of any script are kept): ``"Eco-friendly
    Bags"`` -> ``"eco-friendly-bags"``; empty when the name has no letter or digit."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return re.sub(r"[\W_]+", "-", folded).strip("-")


def short_hash(name: str) -> str:
    """Eight hex digits of the name's sha1: the same name always gets the same suffix."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]


def ids_from_names(names: list[str]) -> list[str]:
    """Stable tag ids for names: the slug, with a short hash of the name added only where two
    different names share a slug (or the slug is empty), so ids do not depend on the line order."""
    slugs = [slug(n) for n in names]
    names_of: dict[str, set[str]] = {}
    for name, s in zip(names, slugs, strict=True):
        names_of.setdefault(s, set()).add(name)
    return [
        s if s and len(names_of[s]) == 1 else f"{s or 'tag'}-{short_hash(name)}"
        for name, s in zip(names, slugs, strict=True)
    ]


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


def _east_asian(text: str) -> bool:
    """Whether the text holds CJK ideographs, CJK punctuation or full-/half-width forms."""
    return any(
        "\u3000" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef" for ch in text
    )


def normalize_text(text: str, simplify: bool = True) -> str:
    """Normalises East Asian text before encoding; other text comes back unchanged.

    Only text with CJK characters, CJK punctuation or width forms is touched, so English (and other
    Latin-script) product text is encoded exactly as before this step existed (``™``, accents and
    line breaks kept).

    NFKC folds full-width letters, digits and punctuation (``ＡＢＣ，１２３``) to ASCII; Chinese
    punctuation that NFKC keeps (``。、《》``) is mapped too; traditional characters become
    simplified when ``simplify`` and ``opencc-python-reimplemented`` is installed (the distilled
    student learnt simplified Chinese). Whitespace is collapsed. Mixed Chinese/English needs
    nothing more: the BERT tokenizer already splits every CJK character into its own token.
    """
    if text.isascii() or not _east_asian(text):
        return text
    out = unicodedata.normalize("NFKC", text).translate(_CJK_PUNCT)
    if simplify and has_cjk(out):
        t2s = _t2s()
        if t2s is not None:
            out = t2s(out)
    return " ".join(out.split())
