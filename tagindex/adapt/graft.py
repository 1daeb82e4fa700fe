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
3. A merchandiser's exclusions (source category, target tag) are never lent: an excluded placement
   takes the next tag both rules allow, or none, and its descendants then inherit from higher up;
   an excluded inherited name is dropped alone. ``tagindex show --index IDX --lent`` lists what an
   index lends in the format ``--graft-exclude`` reads (:func:`read_exclusions`).

The grafted names are matched against titles exactly like the tag's own name
(:meth:`TypeLexicon.graft`), so a "... Pullover Hoodie" title matches "Upper Body Wear/Tops" through
"Hoodies". Only rankable target tags (leaves, with leaves-only decoding) that are not attribute
values ("Color: Red") receive grafts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from tagindex.adapt.hierarchy import parent_rows
from tagindex.adapt.lexical import TypeLexicon
from tagindex.errors import InputError
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
    exclude: Collection[tuple[int, int]] = (),
) -> np.ndarray:
    """Target row lent each source category (-1: none), by the two rules of the module docstring.

    Args:
        source: The outside taxonomy's categories (ids, names, parent links).
        source_vectors: Unit vectors of the source categories' path texts (n_source, dim).
        target_vectors: Unit vectors of the target tags (n_target, dim), same encoder.
        lexicon: The target tags' :class:`TypeLexicon` (names in target row order).
        rankable: Target rows that may receive grafts.
        top_k: A placement needs the tag among this many nearest rankable tags of the category.
        exclude: (source row, target row) pairs never lent (rule 3).

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
    applied: set[tuple[int, int]] = set()  # exclusions that removed a placement or an inherited name
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
            if exclude and cols:
                allowed = [c for c in cols if (i, int(rankable[c])) not in exclude]
                best = (i, int(rankable[max(cols, key=lambda c: sims[r, c])]))
                if best in exclude:
                    applied.add(best)
                cols = allowed
            if cols:
                placed[i] = rankable[max(cols, key=lambda c: sims[r, c])]
    lent = placed.copy()
    for i in range(n):  # nearest placed ancestor (the parent links may be cyclic: bounded walk)
        node, steps = i, 0
        while lent[i] < 0 and node >= 0 and steps <= n:
            if placed[node] >= 0:
                lent[i] = placed[node]
            node, steps = int(parents[node]), steps + 1
    for i, j in exclude:  # an inherited name the merchandiser rejected
        if lent[i] == j:
            lent[i] = -1
            applied.add((i, j))
    if exclude:
        # One that removed nothing names a pair not lent this time (another encoder or catalog).
        logger.info("graft: %d of %d exclusions removed a lent name", len(applied), len(exclude))
    logger.info(
        "graft: %d source categories placed, %d lent (with descendants) to %d tags",
        int((placed >= 0).sum()),
        int((lent >= 0).sum()),
        len(np.unique(lent[lent >= 0])),
    )
    return lent


def read_exclusions(path: str | os.PathLike[str]) -> list[tuple[int, str, str]]:
    """(line number, source category id, target tag id) of a ``--graft-exclude`` file: one pair a
    line, tab-separated, further columns ignored (so lines of ``tagindex show --lent`` can be kept
    as they are); blank lines and lines starting with ``#`` are skipped.

    Raises:
        InputError: The file is unreadable or a line has fewer than two columns (with its number).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read graft exclusions: {exc}") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = [c.strip() for c in line.split("\t")]
        if len(cols) < 2 or not cols[0] or not cols[1]:
            raise InputError(
                f"{path}:{number}: expected 'SOURCE_ID<TAB>TARGET_TAG_ID' (a line of `tagindex show "
                "--lent`; an index adapted before source ids were recorded lists none: adapt it again)"
            )
        out.append((number, cols[0], cols[1]))
    return out


def check_exclusions(
    path: str | os.PathLike[str],
    rows: Sequence[tuple[int, str, str]],
    source: Sequence[Tag],
    tags: Sequence[Tag],
) -> set[tuple[str, str]]:
    """The (source id, tag id) pairs of :func:`read_exclusions` rows, each checked against the
    outside taxonomy and the vocabulary.

    Raises:
        InputError: A line names a source category or tag that is not there (with its number).
    """
    source_ids = {t.id for t in source if t.kind != "attribute_value"}  # values are never lent
    tag_ids = {t.id for t in tags}
    for number, src, tag in rows:
        if src not in source_ids:
            raise InputError(f"{path}:{number}: '{src}' is no category of the --graft taxonomy")
        if tag not in tag_ids:
            raise InputError(f"{path}:{number}: '{tag}' is no tag of the vocabulary")
    return {(src, tag) for _, src, tag in rows}
