"""Catalog naming: the catalog's own product-type words lent to the tags its products settle on.

An abstract vocabulary ("Upper Body Wear/Tops") is named by few titles, so the product-type match
(:mod:`tagindex.adapt.lexical`) rarely fires and each product is ranked on its own vector, which
other words of its title pull away ("... Spartans Pullover Hoodie" toward sports equipment). Products
whose titles share a head noun ("hoodie") are mostly of one type. After a self-training round, each
head noun that names no tag, seen in at least ``min_products`` catalog titles, is lent to the tag
that the largest share of those products was pseudo-labelled with, when that share is at least
``min_share``; the title match then reads it like a name lent by ``adapt --graft``. No label is
read: it is label propagation among products that share a title's head noun (issue 13, ingredient
6), through the title match.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

from tagindex.adapt.lexical import TypeLexicon, title_head

_PHRASE_WORD = re.compile(r"[a-z][a-z0-9'-]*[a-z]|[a-z]")


def catalog_names(
    titles: Sequence[str],
    labels: np.ndarray,
    lexicon: TypeLexicon,
    rankable: Collection[int],
    min_products: int = 5,
    min_share: float = 0.3,
) -> tuple[list[str], list[int]]:
    """Head nouns of catalog titles and the tag row each is lent to.

    Args:
        titles: Catalog product titles.
        labels: Each product's pseudo-label (tag row; -1 for none).
        lexicon: The tags' lexicon, its outside grafts included: a head it already matches is skipped.
        rankable: Tag rows that may receive a name (not attribute values: the caller removes them).
        min_products: Titles with the head noun needed to lend it.
        min_share: Share of those titles whose pseudo-label is the winning tag.

    Returns:
        (names, rows): each lent word (its most frequent spelling in the titles) and its tag row.
    """
    members: dict[str, list[int]] = {}
    spelling: dict[str, Counter[str]] = {}
    for i, title in enumerate(titles):
        head, _ = title_head(title)
        if head is None or labels[i] < 0 or lexicon.matches_head(head):
            continue
        members.setdefault(head, []).append(int(labels[i]))
        words = _PHRASE_WORD.findall(title.lower())
        surface = next((w for w in reversed(words) if title_head(w)[0] == head), head)
        spelling.setdefault(head, Counter())[surface] += 1
    allowed = set(rankable)
    names: list[str] = []
    rows: list[int] = []
    for head in sorted(members):
        group = members[head]
        if len(group) < min_products:
            continue
        row, count = Counter(group).most_common(1)[0]
        if count >= min_share * len(group) and row in allowed:
            names.append(spelling[head].most_common(1)[0][0])
            rows.append(row)
    return names, rows
