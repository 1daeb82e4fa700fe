"""Taxonomy grafting: an outside category taxonomy lends its concrete names to abstract tags.

A vocabulary such as GS1 names its classes abstractly ("Upper Body Wear/Tops", "Clothing
Accessories"), so few product titles name them and the product-type match
(:mod:`tagindex.adapt.lexical`) rarely fires. A public, concrete taxonomy (the Shopify product
taxonomy) has the same classes with their kinds spelled out: "Clothing Tops" has the children
"T-Shirts", "Hoodies", "Polos". Grafting finds, without any label, where such a source category sits
in the target vocabulary and lends it and its descendants to that tag as extra names:

1. A source category is *placed* on a target tag when both agree: its name names the tag (it has
   the head noun and all the modifiers of one of the tag's alternatives, as the title match reads
   names: "Clothing Tops" names the "Tops" of "Upper Body Wear/Tops"; "Hardware Pumps" does not name
   "Fuel Pumps") **and** the tag is among the ``top_k`` target tags nearest the category's path text
   in the encoder's space (which rules out "Pet Supplies" -> the "Supplies" of "Baking/Cooking
   Mixes/Supplies"). Among several such tags the nearest wins. Top-level source categories are never
   placed: they are too broad to lend all their descendants to one tag.
2. Every other source category inherits the tag of its nearest placed ancestor ("T-Shirts" under
   "Clothing Tops" -> "Upper Body Wear/Tops"); categories without a placed ancestor stay out.

The grafted names are matched against titles exactly like the tag's own name
(:meth:`TypeLexicon.graft`), so a "... Pullover Hoodie" title matches "Upper Body Wear/Tops" through
"Hoodies". Only rankable target tags (leaves, with leaves-only decoding) that are not attribute
values ("Color: Red") receive grafts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from tagindex.adapt.hierarchy import parent_rows
from tagindex.adapt.lexical import TypeLexicon
from tagindex.schema import Tag

logger = logging.getLogger(__name__)

_CHUNK = 1024


def place_source(
    source: Sequence[Tag],
    source_vectors: np.ndarray,
    target_vectors: np.ndarray,
    lexicon: TypeLexicon,
    rankable: np.ndarray,
    top_k: int = 3,
) -> np.ndarray:
    """Target row lent each source category (-1: none), by the two rules of the module docstring.

    Args:
        source: The outside taxonomy's categories (ids, names, parent links).
        source_vectors: Unit vectors of the source categories' path texts (n_source, dim).
        target_vectors: Unit vectors of the target tags (n_target, dim), same encoder.
        lexicon: The target tags' :class:`TypeLexicon` (names in target row order).
        rankable: Target rows that may receive grafts.
        top_k: A placement needs the tag among this many nearest rankable tags of the category.

    Returns:
        (n_source,) int64 target rows.
    """
    n = len(source)
    if n == 0 or len(rankable) == 0:
        return np.full(n, -1, dtype=np.int64)
    rankable = np.asarray(rankable, dtype=np.int64)
    column = np.full(lexicon.n_tags, -1, dtype=np.int64)
    column[rankable] = np.arange(len(rankable))
    k = min(top_k, len(rankable))
    parents = parent_rows(source)
    placed = np.full(n, -1, dtype=np.int64)
    rankable_tags = target_vectors[rankable]
    for start in range(0, n, _CHUNK):  # chunks bound the (sources, tags) similarity matrix
        sims = source_vectors[start : start + _CHUNK] @ rankable_tags.T  # (chunk, rankable)
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(rankable) else None
        for r in range(len(sims)):
            i = start + r
            if source[i].parent is None:
                continue  # a top-level category is too broad to lend its whole subtree to one tag
            cols = [column[j] for j in lexicon.names_tag(source[i].name) if column[j] >= 0]
            if nearest is not None:
                near = set(nearest[r].tolist())
                cols = [c for c in cols if c in near]
            if cols:
                placed[i] = rankable[max(cols, key=lambda c: sims[r, c])]
    lent = placed.copy()
    for i in range(n):  # nearest placed ancestor (the parent links may be cyclic: bounded walk)
        node, steps = i, 0
        while lent[i] < 0 and node >= 0 and steps <= n:
            if placed[node] >= 0:
                lent[i] = placed[node]
            node, steps = int(parents[node]), steps + 1
    logger.info(
        "graft: %d source categories placed, %d lent (with descendants) to %d tags",
        int((placed >= 0).sum()),
        int((lent >= 0).sum()),
        len(np.unique(lent[lent >= 0])),
    )
    return lent
