"""Duplicate tags: near-identical pairs that are not family, ranked by evidence.

Nearest vectors alone mostly find a hierarchy's own structure: a tag's path is part of the text the
encoder reads, so a child ("Clothing > Hoodies") sits next to its parent and its siblings. Of the top
1,000 Shopify pairs at cosine >= 0.95, 685 were parent/child and 307 siblings. Here a tag's
ancestors and descendants are never candidates, siblings only when asked for, and the candidates are
its nearest *other* tags (the family is masked before the top-k, so it cannot crowd real
duplicates out). Each pair then carries its evidence:

- ``score``: the cosine of the two tags' vectors;
- ``name_similarity`` / ``names_equal``: the names after normalisation (case, accents, ``&``/``and``,
  punctuation, simple plurals, word order);
- ``path_similarity``: the words the two ancestor paths share (the same concept filed in two
  branches: "Baby Toys > Rattles" and "Toys > Baby Toys > Rattles");
- ``shared_products``: labelled products (the index's exemplars) carrying both tags, when the index
  has exemplars.

``evidence`` (0..1) is a fixed weighted mean of those parts (weights in :data:`WEIGHTS`, chosen by
judgement, not fitted), and pairs are ranked by it. Plain functions over tags and arrays: callers
(the CLI, the service, the page) pass ``TagIndex.tags`` and its vectors.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tagindex.schema import Tag
from tagindex.text import word_key

logger = logging.getLogger(__name__)

PARENT_CHILD = "parent_child"
ANCESTOR = "ancestor"  # ancestor / descendant more than one level apart
SIBLING = "sibling"  # same (non-empty) parent
OTHER = "other"
WEIGHTS: Mapping[str, float] = {"score": 2.0, "name": 2.0, "path": 1.0, "products": 2.0}
HEAD_MISMATCH = 0.5  # name similarity kept when the head (last) words differ
CHUNK = 1024  # rows of the similarity matrix computed at once (CHUNK x n floats)

Progress = Callable[[int, int], None]


@dataclass
class DuplicatePair:
    """One candidate pair (``a`` < ``b``) with its evidence."""

    a: str
    b: str
    score: float
    relation: str
    name_similarity: float
    names_equal: bool
    path_similarity: float
    shared_products: int | None
    evidence: float
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- names ---------------------------------------------------------------------------------------
_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset({"and", "or", "the", "of", "for", "with", "in", "a", "to"})  # no path evidence


def _plain_words(name: str) -> list[str]:
    """A name's words as written, case-folded, accents dropped, ``&`` as ``and``."""
    text = unicodedata.normalize("NFKD", name.replace("&", " and "))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return _WORD.findall(text)


def name_words(name: str) -> list[str]:
    """A name as comparable words: case-folded, accents dropped, ``&`` as ``and``, plurals folded
    (:func:`tagindex.text.word_key`: "Dresses" and "dress", "Hoodies" and "hoodie" are one word)."""
    return [word_key(w) for w in _plain_words(name)]


def name_similarity(a: str, b: str) -> tuple[float, bool]:
    """``(similarity 0..1, equal)`` of two names after :func:`name_words`.

    Equal means the same words in any order; otherwise the larger of the word overlap (Jaccard) and
    the character match ratio of the normalised strings (catches "T-Shirts" / "Tshirts"), halved
    when the last words differ: in English names the last word is the head ("Mice & Trackball
    Accessories" are accessories, not trackballs; "Examination Chairs" are not "Examination Tables").
    """
    wa, wb = name_words(a), name_words(b)
    if not wa or not wb:
        return 0.0, False
    if sorted(wa) == sorted(wb):
        return 1.0, True
    sa, sb = set(wa), set(wb)
    jaccard = len(sa & sb) / len(sa | sb)
    ratio = difflib.SequenceMatcher(None, "".join(wa), "".join(wb)).ratio()
    similarity = max(jaccard, ratio)
    return (similarity if wa[-1] == wb[-1] else similarity * HEAD_MISMATCH), False


# ---- the family ----------------------------------------------------------------------------------
def _ancestor_rows(tags: Sequence[Tag]) -> list[list[int]]:
    """For each row, the rows of its ancestors, nearest first (cycles and unknown parents stop it)."""
    row_of = {t.id: i for i, t in enumerate(tags)}
    out: list[list[int]] = []
    for t in tags:
        chain: list[int] = []
        parent = t.parent
        while parent is not None and parent in row_of and row_of[parent] not in chain:
            chain.append(row_of[parent])
            parent = tags[row_of[parent]].parent
        out.append(chain)
    return out


def relation(i: int, j: int, tags: Sequence[Tag], ancestor_rows: Sequence[Sequence[int]]) -> str:
    """How rows ``i`` and ``j`` are related in the hierarchy."""
    if j in ancestor_rows[i][:1] or i in ancestor_rows[j][:1]:
        return PARENT_CHILD
    if j in ancestor_rows[i] or i in ancestor_rows[j]:
        return ANCESTOR
    parent = tags[i].parent
    if parent is not None and parent == tags[j].parent:
        return SIBLING
    return OTHER


def _family(tags: Sequence[Tag], ancestor_rows: Sequence[Sequence[int]], siblings: bool) -> list[np.ndarray]:
    """For each row, the rows that may not be its candidates: ancestors, descendants (and siblings)."""
    masked: list[list[int]] = [list(chain) for chain in ancestor_rows]
    children: dict[int, list[int]] = {}
    for i, chain in enumerate(ancestor_rows):
        for a in chain:
            masked[a].append(i)
        if chain:
            children.setdefault(chain[0], []).append(i)
    if siblings:
        for kids in children.values():
            for i in kids:
                masked[i].extend(kids)
    return [np.asarray(sorted(set(m)), dtype=np.int64) for m in masked]


# ---- the scan ------------------------------------------------------------------------------------
def nearest_pairs(
    vectors: np.ndarray,
    min_score: float,
    neighbours: int,
    exclude: Sequence[np.ndarray] | None = None,
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> dict[tuple[int, int], float]:
    """Row pairs ``(i, j)``, ``i < j``, where one is among the other's ``neighbours`` nearest rows by
    inner product and the score reaches ``min_score``.

    Args:
        vectors: (n, dim) unit vectors.
        min_score: Lowest score kept.
        neighbours: Nearest rows looked at per row (after the exclusions).
        exclude: Per row, rows that may not be its neighbours (besides itself).
        progress: Called with (rows done, n) after each chunk.
        chunk: Rows scored at once (memory: chunk x n floats).
    """
    n = len(vectors)
    pairs: dict[tuple[int, int], float] = {}
    if n < 2:
        if progress is not None:
            progress(n, n)
        return pairs
    k = min(neighbours, n - 1)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        scores = x[start:stop] @ x.T  # (rows, n)
        rows = np.arange(stop - start)
        scores[rows, rows + start] = -np.inf
        if exclude is not None:
            for r in range(stop - start):
                masked = exclude[start + r]
                if masked.size:
                    scores[r, masked] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # k < n always
        for r, cols in enumerate(top.tolist()):
            i: int = start + r
            for j in cols:
                s = float(scores[r, j])
                if s >= min_score:
                    key = (i, j) if i < j else (j, i)
                    if s > pairs.get(key, -math.inf):
                        pairs[key] = s
        if progress is not None:
            progress(stop, n)
    return pairs


# ---- evidence ------------------------------------------------------------------------------------
def products_by_tag(labels: Iterable[Sequence[str]]) -> dict[str, set[int]]:
    """Tag id -> rows of the labelled products (exemplars) carrying it."""
    out: dict[str, set[int]] = {}
    for row, tags in enumerate(labels):
        for t in tags:
            out.setdefault(t, set()).add(row)
    return out


def _path_words(tag: Tag, by_id: Mapping[str, Tag]) -> dict[str, str]:
    """Word key -> the word as first written (case-folded) in the names of the tag's ancestors."""
    words: dict[str, str] = {}
    parent = tag.parent
    seen: set[str] = set()
    while parent is not None and parent in by_id and parent not in seen:
        seen.add(parent)
        for word in _plain_words(by_id[parent].name):
            key = word_key(word)
            if key not in _STOP:
                words.setdefault(key, word)
        parent = by_id[parent].parent
    return words


def evidence_of(
    a: Tag,
    b: Tag,
    score: float,
    rel: str,
    by_id: Mapping[str, Tag],
    products: Mapping[str, set[int]] | None,
) -> DuplicatePair:
    """The evidence that ``a`` and ``b`` are one concept (see the module docstring)."""
    names, equal = name_similarity(a.name, b.name)
    pa, pb = _path_words(a, by_id), _path_words(b, by_id)
    common = pa.keys() & pb.keys()
    path = len(common) / len(pa.keys() | pb.keys()) if pa and pb else 0.0
    parts = {"score": max(0.0, min(1.0, score)), "name": names, "path": path}
    reasons = [f"vectors {score:.3f}"]
    reasons.append("same name" if equal else f"names {names:.2f} alike")
    if common:
        # Keys are for matching ("accessori"); the reason shows the words as a's path writes them.
        reasons.append(f"paths share {', '.join(sorted(pa[k] for k in common)[:4])}")
    shared: int | None = None
    if products is not None:
        ra, rb = products.get(a.id, set()), products.get(b.id, set())
        shared = len(ra & rb)
        smaller = min(len(ra), len(rb))
        parts["products"] = shared / smaller if smaller else 0.0
        if shared:
            reasons.append(f"{shared} labelled product(s) carry both")
    total = sum(WEIGHTS[k] for k in parts)
    evidence = sum(WEIGHTS[k] * v for k, v in parts.items()) / total
    if rel != OTHER:
        reasons.append(rel.replace("_", "/"))
    x, y = (a, b) if a.id < b.id else (b, a)
    return DuplicatePair(
        a=x.id,
        b=y.id,
        score=round(score, 6),
        relation=rel,
        name_similarity=round(names, 4),
        names_equal=equal,
        path_similarity=round(path, 4),
        shared_products=shared,
        evidence=round(evidence, 4),
        reasons=reasons,
    )


def find_duplicates(
    tags: Sequence[Tag],
    vectors: np.ndarray,
    min_score: float = 0.9,
    neighbours: int = 5,
    include_siblings: bool = False,
    include_family: bool = False,
    exemplar_labels: Sequence[Sequence[str]] | None = None,
    progress: Progress | None = None,
) -> list[DuplicatePair]:
    """Merge candidates among ``tags``, best evidence first.

    Args:
        tags: The vocabulary, in the row order of ``vectors``.
        vectors: (n, dim) unit tag vectors (``TagIndex.vectors``).
        min_score: Lowest cosine of a pair.
        neighbours: Nearest candidate tags looked at per tag.
        include_siblings: Keep pairs with the same parent (labelled ``sibling``).
        include_family: Keep ancestor/descendant pairs too (labelled; the old, unfiltered scan).
        exemplar_labels: Tag lists of the index's labelled products, for ``shared_products``.
        progress: Called with (tags scanned, total) during the scan.

    Returns:
        Pairs ordered by ``evidence``, then ``score``, then ids.
    """
    if len(tags) != len(vectors):
        raise ValueError(f"{len(tags)} tags but {len(vectors)} vectors")
    chains = _ancestor_rows(tags)
    exclude = None if include_family else _family(tags, chains, siblings=not include_siblings)
    raw = nearest_pairs(vectors, min_score, neighbours, exclude, progress)
    by_id = {t.id: t for t in tags}
    products = products_by_tag(exemplar_labels) if exemplar_labels is not None else None
    pairs = [
        evidence_of(tags[i], tags[j], s, relation(i, j, tags, chains), by_id, products)
        for (i, j), s in raw.items()
    ]
    pairs.sort(key=lambda p: (-p.evidence, -p.score, p.a, p.b))
    logger.debug("%d duplicate candidates at cosine >= %s", len(pairs), min_score)
    return pairs
