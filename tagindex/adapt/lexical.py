"""Product-type matching: a title's head noun against the tags' head nouns.

English product titles name the product type last, before the first qualifier ("Drake Bulldogs
Pullover Hoodie - Gunmetal", "Pendant Necklace on a Red Ribbon"), and a concrete category vocabulary
names its leaves the same way ("Hoodies", "Pendant Necklaces"). A dense encoder reads the whole
title and is pulled by its other words (team names toward sports equipment); this score only says
whether a tag names the thing the title names. It is computed from the tag names and the title,
needs no label and no fitting, and is added to the adapted scores in self-training, in the
k-occurrence cap's fit and at query time (:class:`tagindex.adapt.adjust.ScoreAdjuster`).

Matching is on word keys: lower case, English plural and -ie/-y endings folded ("hoodies",
"hoodie" -> "hoodi"; "dresses" -> "dress"), so no stemmer dependency is needed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from tagindex.text import by_attribute_name, word_key

if TYPE_CHECKING:
    from tagindex.schema import Product

_WORD = re.compile(r"[a-z][a-z0-9'-]*[a-z]|[a-z]")
# Where a title's product phrase ends: a qualifier, a variant, a size or a seller's suffix follows.
_CUT = re.compile(r"\s[-|/–:]\s|[,(\[;]|\s(?:by|for|with|on|in|from|featuring|feat|w/)\s", re.IGNORECASE)
_CRUMB = " > "  # between the segments of a category path
# Alternatives inside one tag name ("Bags/Cases", "Sweatshirts & Hoodies", "Tents or Shelters"); the
# separator is kept: "/" lists alternatives, "A/V" (one letter a side) is a word.
_ALT = re.compile(r"\s*((?<=[a-z]{2})/(?=[a-z]{2})|&|,|\band\b|\bor\b)\s*", re.IGNORECASE)
# How many words before a title's head may name its kind (:class:`TypeLexicon` ``unnamed_kind``):
# 2 on the AE/OA titles -> Shopify check (acceptable top-1 0.791 / 0.797 / 0.796 with 1 / 2 / 3).
_KIND_WINDOW = 2
# Between a product's title and its shop's own category in a match text (:func:`match_text`).
_CATEGORY_SEP = "\x1f"
# Separators of a shop's category path: "Home > Pond Supplies", "Harnesses >> Safety", "Alterna|Shampoo",
# "Men/Underwear/Undertees"; braces hold a platform's notes ("{set=Media > Books}").
_PATH_SEP = re.compile(r"\s*(?:>>?|»|\|)\s*|/")
_BRACES = re.compile(r"\{[^}]*\}")
# Product attributes that commonly hold a shop's own category: MWPD's scraped breadcrumbs, a feed's
# category, a Shopify export's product type.
CATEGORY_ATTRIBUTES = ("breadcrumb", "category", "product_type")
# Audience words are no product type: "... Racerback Bra Woman" names a bra, "Shoes woman" shoes.
_STOP = frozenset(
    {"a", "an", "the", "of", "for", "and", "or", "with", "to", "in", "on", "s"}
    | {"men", "women", "man", "woman", "lady", "ladi"}  # "ladi": the key of "ladies"
)
# A site's home link that opens many breadcrumbs ("Home > Pond Supplies"): no category, and read as
# one it would name "Home & Garden".
_HOME = frozenset({"home", "home page", "homepage"})


# Words that say whom a product is for; a tag named for one ("Men's Undershirts") does not match a
# text that names only the other ("Women's ... Undershirt", a shop's "Womens clothing > Underwear").
_MALE = frozenset({"men", "man", "male", "boy"})
_FEMALE = frozenset({"women", "woman", "female", "lady", "ladi", "girl"})


def _audience(text: str) -> str | None:
    """The audience ``text`` names: "m" only men's (boys'), "f" only women's (girls'), else None."""
    keys = {word_key(w.split("-")[-1]) for w in _WORD.findall(text.lower())}
    male, female = bool(keys & _MALE), bool(keys & _FEMALE)
    return "m" if male and not female else "f" if female and not male else None


def _keys(text: str) -> list[str]:
    out = []
    for word in _WORD.findall(text.lower()):
        # "T-Shirt" is matched on its last part, so it meets "Shirts" and "T-Shirts" alike.
        key = word_key(word.split("-")[-1]) if "-" in word else word_key(word)
        if key not in _STOP:
            out.append(key)
    return out


def _phrase_keys(title: str) -> list[str]:
    """The word keys of a title's product phrase, in order (the head last).

    A breadcrumb ("Apparel & Accessories > Handbags, Wallets & Cases > Card Cases", a category path
    matched against another taxonomy) ends in its last segment: the qualifier cut applies there
    only, since a comma in an ancestor's name is no qualifier, and the ancestors' words stay in the
    phrase as modifiers ("Baby & Toddler ... > Puffer Jackets").
    """
    *ancestors, last = title.split(_CRUMB)
    keys = _keys(" ".join(ancestors)) + _keys(_CUT.split(last, maxsplit=1)[0])
    return keys or _keys(title)  # the cut left nothing (a title starting with a qualifier): all of it


def category_path(value: str) -> str | None:
    """A shop's own category value as a path "A > B > C" (the form :func:`_phrase_keys` reads), or
    None for a value that names no category (empty, a web address)."""
    if "://" in value:
        return None
    segments = [s.strip() for s in _PATH_SEP.split(_BRACES.sub(" ", value)) if _WORD.search(s.lower())]
    while segments and segments[0].lower() in _HOME:
        segments = segments[1:]
    return _CRUMB.join(segments) if segments else None


def match_text(title: str, category: str | None = None) -> str:
    """What the title match reads for a product: its title and, when given, its shop's own category
    (:func:`category_path` of a breadcrumb attribute), which :class:`TypeLexicon` reads only with a
    ``category`` strength."""
    title = title.replace(_CATEGORY_SEP, " ")  # a control character in the data is no category
    path = category_path(category) if category else None
    return f"{title}{_CATEGORY_SEP}{path}" if path else title


def product_match_text(product: Product, attributes: Sequence[str]) -> str:
    """:func:`match_text` of a product, its category taken from the first of ``attributes`` it has
    (under any spelling of the name: "Category", "Product Type", "breadcrumbs")."""
    for name in attributes:
        value = by_attribute_name(product.attributes, name)
        if isinstance(value, list):
            value = value[-1] if value else None
        if isinstance(value, str) and value.strip():
            return match_text(product.title, value)
    return product.title


def _category_phrases(path: str) -> list[str]:
    """The product phrases a category path names: its last segment's alternatives, each with the
    ancestors in front ("Luggage & Bags > Laptop Bags & Cases" names laptop bags and laptop cases:
    a later lone word shares the modifiers of the first alternative, as a category name means)."""
    *ancestors, last = path.split(_CRUMB)
    pieces = [p for p in _ALT.split(last)[0::2] if _WORD.search(p.lower())]
    if not pieces:
        return []
    first = pieces[0].split()
    phrases = []
    for i, piece in enumerate(pieces):
        words = piece.split()
        if i and len(words) == 1 and len(first) > 1:
            words = first[:-1] + words
        phrases.append(_CRUMB.join([*ancestors, " ".join(words)]))
    return phrases


def title_head(title: str) -> tuple[str | None, frozenset[str]]:
    """The head key of a title's product phrase (its last word key) and the phrase's keys."""
    keys = _phrase_keys(title)
    return (keys[-1] if keys else None), frozenset(keys)


class TypeLexicon:
    """Head-noun index of a tag vocabulary.

    An attribute-value name ("Color: Red Patent", "Item: Spinner Bait") is read as its value: the
    value's head noun is matched like a category's, and a value whose words all occur anywhere in
    the title (a colour after the dash, a material) matches with strength 1.

    Args:
        names: Tag names, in the index's row order.
        generic_df: A head key shared by more than this many tags ("Accessories", "Units", "Tops")
            is generic: a tag with that head and modifiers ("Laundry Combo Units") counts
            ``generic_df / df`` unless the title has its modifiers too ("Tank Tops").
        missing_modifiers: The most a tag with modifiers matches when none of them is in the title,
            as a share of the head's match: "Water Polo" for "... Coaches Polo", "Twist Ties" for
            "Blue Grid Tie" (1.0: modifiers of a rare head do not matter).
        unnamed_kind: The most a tag matches through the title's head when one of the two words
            before the head names a kind of it (a word other tags with the head have as a
            modifier) and the tag does not name that kind: costume "Masks" for "Face Mask", which
            "Fashion Face Masks" names; "Guitars" for "Electric Guitar" (1.0: kinds do not matter).
        category: The match of a tag that a product's own category (its shop's breadcrumb, the
            part of a :func:`match_text` after the title) names fully, read only when the title
            names no tag fully: "Sump Pumps" for "Lid Corporation 2E-NDUR PUMP" in a shop's
            "... Plumbing > Sump Pumps" (0: never read).
        category_attributes: The product attributes holding that category, first found first
            (:meth:`match_texts`).
    """

    def __init__(
        self,
        names: Sequence[str],
        generic_df: int = 5,
        missing_modifiers: float = 1.0,
        unnamed_kind: float = 1.0,
        category: float = 0.0,
        category_attributes: Sequence[str] = (),
    ) -> None:
        self.n_tags = len(names)
        self.category = float(category)
        self.category_attributes = tuple(category_attributes)
        self.missing_modifiers = float(missing_modifiers)
        self.unnamed_kind = float(unnamed_kind)
        # Per tag: [(head key, modifier keys)] for each alternative of its name.
        self._alternatives: list[list[tuple[str, frozenset[str]]]] = []
        self._audience: dict[int, str] = {}  # tag row -> "m" / "f" for a tag named for one (_audience)
        by_head: dict[str, list[int]] = {}
        # Per attribute-value tag: its value's keys; indexed by each key.
        self._values: dict[int, frozenset[str]] = {}
        by_value_key: dict[str, list[int]] = {}
        for row, name in enumerate(names):
            attribute, sep, value = name.partition(": ")
            if sep and attribute and value:
                value_keys = frozenset(_keys(value))
                # A bare size letter or code ("14 M US") matches nothing: too many titles share it.
                name = value if any(len(k) >= 3 for k in value_keys) else ""
                if name:
                    self._values[row] = value_keys
                    for key in value_keys:
                        by_value_key.setdefault(key, []).append(row)
            pieces = _ALT.split(name)  # [text, separator, text, ...]
            parts = [
                (k, pieces[j + 1] if j + 1 < len(pieces) else "")
                for j in range(0, len(pieces), 2)
                if (k := _keys(pieces[j]))
            ]
            alts = []
            shared: list[str] = []
            for i, (keys, sep) in enumerate(parts):
                # "Flag & Windsock Accessories", "Table & Bar Stools": a lone word before a longer
                # alternative shares its head, so it is a modifier, not a product type of its own.
                # GS1's "/" lists alternatives instead ("Tents/Weather Structures").
                if sep != "/" and len(keys) == 1 and any(len(later) > 1 for later, _ in parts[i + 1 :]):
                    shared.extend(keys)
                    continue
                alts.append((keys[-1], frozenset(keys[:-1]) | frozenset(shared)))
                by_head.setdefault(keys[-1], []).append(row)
                shared = []
            self._alternatives.append(alts)
            if (audience := _audience(name)) is not None:
                self._audience[row] = audience
        self._by_head = {h: sorted(set(rows)) for h, rows in by_head.items()}
        # Per head: every modifier some tag with that head has (the kinds the vocabulary names).
        kinds: dict[str, set[str]] = {}
        for alts in self._alternatives:
            for alt_head, modifiers in alts:
                kinds.setdefault(alt_head, set()).update(modifiers)
        self._kinds = {h: frozenset(m - {h}) for h, m in kinds.items() if m - {h}}
        # Each value is looked up under its rarest word only: all its words must be in the title, so
        # that one is too, and a common word ("black") does not make every title check every value.
        self._by_value_key: dict[str, list[int]] = {}
        for row, value_keys in self._values.items():
            rarest = min(value_keys, key=lambda k: (len(by_value_key[k]), k))
            self._by_value_key.setdefault(rarest, []).append(row)
        df = Counter({h: len(rows) for h, rows in self._by_head.items()})
        self._weight = {h: min(1.0, generic_df / n) for h, n in df.items()}
        self.generic_df = generic_df
        # Names lent by an outside taxonomy (:meth:`graft`), with their own lexicon.
        self._lent: TypeLexicon | None = None
        self.grafted_names: list[str] = []
        self.grafted_rows: list[int] = []
        self.grafted_sources: list[str] = []  # ids of the lending categories (empty: not recorded)
        self.graft_strength = 1.0

    @property
    def value_rows(self) -> frozenset[int]:
        """Rows of the tags read as attribute values ("Color: Red Patent")."""
        return frozenset(self._values)

    def graft(
        self,
        names: Sequence[str],
        rows: Sequence[int],
        strength: float = 1.0,
        sources: Sequence[str] | None = None,
    ) -> None:
        """Lends each of ``names`` to the tag at the same place in ``rows`` (see
        :mod:`tagindex.adapt.graft`): a title matching a lent name matches that tag with ``strength``
        times the lent name's match. Replaces earlier grafts; an empty list removes them. ``sources``
        (the lending categories' ids, for review) is kept alongside when given.
        """
        if len(names) != len(rows) or (sources is not None and len(sources) != len(names)):
            raise ValueError("graft: one target row (and source id) per lent name")
        if any(not 0 <= r < self.n_tags for r in rows):
            raise ValueError("graft: target rows outside the vocabulary")
        self.grafted_names, self.grafted_rows = list(names), [int(r) for r in rows]
        self.grafted_sources = list(sources) if sources is not None else []
        self.graft_strength = float(strength)
        self._lent = (
            TypeLexicon(
                self.grafted_names,
                self.generic_df,
                self.missing_modifiers,
                self.unnamed_kind,
                self.category,
                self.category_attributes,
            )
            if names
            else None
        )

    def match_texts(self, products: Sequence[Product]) -> list[str]:
        """What :meth:`scores` reads for each product: its title, and its category where this
        lexicon reads one (:func:`product_match_text`)."""
        if self.category <= 0 or not self.category_attributes:
            return [p.title for p in products]
        return [product_match_text(p, self.category_attributes) for p in products]

    def scores(self, titles: Sequence[str], other_word: float = 0.25) -> sparse.csr_matrix:
        """Match strength (n, tags) in [0, 1], sparse (most tags match no word of a title).

        1 when a tag's head is the title's head noun or all words of its attribute value are in the
        title, ``other_word`` when its head is another word of the title's product phrase; times
        ``g + (1 - g) x share``, where ``share`` is the share of the tag's modifiers in the phrase (1
        for a tag without modifiers) and ``g`` the head's weight (1 up to ``generic_df`` tags with
        that head). A tag also matches through the names lent to it (:meth:`graft`), at the graft's
        strength; the larger match counts. A title may carry its product's category
        (:func:`match_text`; read with a ``category`` strength).
        """
        row_a, col_a, val_a = self._own(titles, other_word)
        if self._lent is not None:
            other = self._lent.scores(titles, other_word).tocoo()
            target = np.asarray(self.grafted_rows, dtype=np.int64)
            row_a = np.concatenate([row_a, other.row.astype(np.int64)])
            col_a = np.concatenate([col_a, target[other.col]])
            val_a = np.concatenate([val_a, self.graft_strength * other.data.astype(np.float32)])
            row_a, col_a, val_a = _max_per_cell(row_a, col_a, val_a, self.n_tags)
        return sparse.csr_matrix((val_a, (row_a, col_a)), shape=(len(titles), self.n_tags), dtype=np.float32)

    def names_tag(self, name: str) -> list[int]:
        """Tags whose name ``name`` names exactly: one of their alternatives has ``name``'s head noun
        and all its modifiers are words of ``name`` ("Clothing Tops" names the "Tops" of "Upper Body
        Wear/Tops"; "Hardware Pumps" does not name "Fuel Pumps")."""
        head, keys = title_head(name)
        if head is None:
            return []
        return [
            row
            for row in self._by_head.get(head, ())
            if any(alt == head and modifiers <= keys for alt, modifiers in self._alternatives[row])
        ]

    def lent_match(self, text: str, other_word: float = 0.25) -> dict[int, str]:
        """The tags a title (or a product's :func:`match_text`) matches through a lent name rather than
        their own (row -> that name), for explanations: "the title names 'T-Shirts', lent to 'Upper
        Body Wear/Tops'"."""
        if self._lent is None:
            return {}
        _, own_cols, own_vals = self._own([text], other_word)
        own = dict(zip(own_cols.tolist(), own_vals.tolist(), strict=True))
        best: dict[int, tuple[float, int]] = {}
        other = self._lent.scores([text], other_word).tocoo()
        for j, value in zip(other.col.tolist(), other.data.tolist(), strict=True):
            row, strength = self.grafted_rows[j], self.graft_strength * value
            if strength > max(own.get(row, 0.0), best.get(row, (0.0, -1))[0]):
                best[row] = (strength, j)
        return {row: self.grafted_names[j] for row, (_, j) in best.items()}

    def match_sources(self, text: str, other_word: float = 0.25) -> dict[int, dict[str, str]]:
        """Where a product's match of each tag comes from, for explanations (row -> sources).

        ``text`` is the product's :func:`match_text`. Sources: ``"lent"``, the name lent by a graft
        that matched rather than the tag's own; ``"category"``, the product's category path when it,
        not the title, named the tag ("... Plumbing > Sump Pumps" for a pump titled by its model).
        A tag the title names by its own name has no entry.
        """
        out = {row: {"lent": name} for row, name in self.lent_match(text, other_word).items()}
        title, sep, category = text.partition(_CATEGORY_SEP)
        if sep and self.category > 0:
            alone = self.scores([title], other_word).toarray()[0]  # (tags,)
            full = self.scores([text], other_word).tocoo()
            for col, value in zip(full.col.tolist(), full.data.tolist(), strict=True):
                if value > alone[col]:
                    out.setdefault(col, {})["category"] = category
        return out

    def _own(self, titles: Sequence[str], other_word: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(title, tag, strength) entries of the tags' own names, one per matched pair."""
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for i, text in enumerate(titles):
            # Only a lexicon that reads categories splits one off (a title from match_text).
            title, _, category = text.partition(_CATEGORY_SEP) if self.category > 0 else (text, "", "")
            best = self._phrase_match(title, other_word)
            if category and max(best.values(), default=0.0) < 1.0:
                # A shop's category is coarse and noisy ("Music", "Accessories"): only the tags it
                # names fully count, not those it half names ("Sheet Music" for "Music").
                for phrase in _category_phrases(category):
                    for row, value in self._phrase_match(phrase, other_word).items():
                        if value >= 1.0:
                            best[row] = max(best.get(row, 0.0), self.category)
            rows.extend([i] * len(best))
            cols.extend(best)
            vals.extend(best.values())
        return (
            np.asarray(rows, dtype=np.int64),
            np.asarray(cols, dtype=np.int64),
            np.asarray(vals, dtype=np.float32),
        )

    def _phrase_match(self, title: str, other_word: float) -> dict[int, float]:
        """Tag row -> match strength of one title (or category phrase)."""
        best: dict[int, float] = {}
        ordered = _phrase_keys(title)
        if ordered:
            head, keys = ordered[-1], frozenset(ordered)
            # The kinds of the head the title names ("face" of "Face Mask"): a kind word just before
            # the head, not a brand's ("Top of the World ... Baseball Hat" is no top hat).
            named_kinds = (
                self._kinds.get(head, frozenset()) & frozenset(ordered[-1 - _KIND_WINDOW : -1])
                if self.unnamed_kind < 1
                else frozenset()
            )
            audience = _audience(title) if self._audience else None
            for key in keys:
                base = 1.0 if key == head else other_word
                generic = self._weight.get(key, 0.0)
                for row in self._by_head.get(key, ()):
                    if audience is not None and self._audience.get(row, audience) != audience:
                        continue
                    for alt_head, modifiers in self._alternatives[row]:
                        if alt_head != key:
                            continue
                        share = len(modifiers & keys) / len(modifiers) if modifiers else 1.0
                        value = base * (generic + (1.0 - generic) * share)
                        if modifiers and not share:
                            value = min(value, base * self.missing_modifiers)
                        if named_kinds and key == head and not modifiers & named_kinds:
                            value = min(value, base * self.unnamed_kind)
                        if value > best.get(row, 0.0):
                            best[row] = value
            if self._values:
                words = frozenset(_keys(title))
                for key in words:
                    for row in self._by_value_key.get(key, ()):
                        if best.get(row, 0.0) < 1.0 and self._values[row] <= words:
                            best[row] = 1.0
        return best


def _max_per_cell(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per (row, col): the largest value (a tag matched by its own and a lent name)."""
    if not len(rows):
        return rows, cols, vals
    key = rows * width + cols
    order = np.argsort(key, kind="stable")
    key, vals = key[order], vals[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    best = np.maximum.reduceat(vals, starts)
    return key[starts] // width, key[starts] % width, best
