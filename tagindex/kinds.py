"""Tag kinds that mean something: per-kind limits, thresholds and rules over a ranked list.

A vocabulary mixes kinds (``Tag.kind``): categories, attribute values, keywords. A :class:`KindPolicy`
turns one ranked candidate list into a list that respects them:

- **limits and thresholds per kind**, written ``KIND=LIMIT``, ``KIND=LIMIT@THRESHOLD`` or
  ``KIND=@THRESHOLD`` and joined by commas: ``category=1,keyword=5@1.0`` keeps the best category
  and up to five keywords whose selection score is at least 1.0. A kind the spec does not name has
  no limit and no threshold of its own;
- **categories form one path**: a category is kept only when it lies on one root-to-leaf chain
  with every category kept before it (never two unrelated branches);
- **one value per attribute**: of the ``attribute_value`` tags of one attribute only the best is
  kept; a value's attribute is its ``parent`` or, without one, the ``Attribute`` of a name written
  ``Attribute: Value`` (as ``tagindex convert`` writes AE-110K / OA-Mine and Shopify values);
- **normalised kinds** (``norm``): each tag's first-stage similarity is turned into a z-score over
  the products tagged together (``(s - mean_t) / std_t``), a hubness correction for generic tags
  such as "lightweight" that sit close to every product; such a kind's threshold reads z-scores;
- **title weight** (``title_weight``): categories are chosen by ``w * sim(title) +
  (1 - w) * sim(product text)``, since a title names what a product *is* while a description talks
  about its features (a waterproof backpack's "keeps dry in rain" pulls it toward rain jackets).

The policy decides which candidates are kept; the scores written stay the pipeline's scores, and
the kept tags are listed best first by them (the run format's contract). Rules and limits apply only
when a policy is given: without one, output is what it always was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tagindex.candidates import Candidate, RankedCandidates
from tagindex.config import TextParams
from tagindex.errors import InputError
from tagindex.schema import Product, Tag
from tagindex.text import ancestors, product_text

PATH_KINDS = frozenset({"category"})
ATTRIBUTE_KINDS = frozenset({"attribute_value"})
MIN_NORM_BATCH = 10  # fewer products give no usable per-tag mean and spread
DEFAULT_POOL = 200  # first-stage candidates a policy chooses from (per product)
_KIND = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class KindRule:
    """Limit and threshold of one kind (None: none)."""

    limit: int | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class KindPolicy:
    """Per-kind limits, thresholds and rules (see the module docstring).

    Attributes:
        rules: Kind -> its limit and threshold.
        norm: Kinds whose similarities are z-normalised per tag over the products tagged together.
        title_weight: Weight of the title-only similarity when choosing categories (0: off).
        pool: First-stage candidates per product the policy chooses from.
    """

    rules: Mapping[str, KindRule] = field(default_factory=dict)
    norm: tuple[str, ...] = ()
    title_weight: float = 0.0
    pool: int = DEFAULT_POOL

    # ---- parsing --------------------------------------------------------------------------------
    @classmethod
    def parse(
        cls,
        spec: str | None,
        norm: str | Sequence[str] | None = None,
        title_weight: float | None = None,
        source: str = "--per-kind",
    ) -> KindPolicy | None:
        """A policy from the ``--per-kind`` spec, the normalised kinds and the title weight.

        Args:
            spec: ``KIND=LIMIT[@THRESHOLD]`` or ``KIND=@THRESHOLD`` items joined by commas.
            norm: Normalised kinds, a comma list or a sequence.
            title_weight: Category title weight in [0, 1].
            source: How messages name the spec (an option or a request field).

        Returns:
            The policy, or None when nothing was asked (output stays exactly as without one).

        Raises:
            InputError: A malformed item, a repeated kind, a negative limit, a non-finite
                threshold or a title weight outside [0, 1].
        """
        rules: dict[str, KindRule] = {}
        for raw in (spec or "").split(","):
            item = raw.strip()
            if not item:
                continue
            kind, sep, value = item.partition("=")
            kind, value = kind.strip(), value.strip()
            if not sep or not _KIND.match(kind) or not value:
                raise InputError(
                    f"{source}: '{item}' is not KIND=LIMIT, KIND=LIMIT@THRESHOLD or KIND=@THRESHOLD "
                    "(e.g. category=1,keyword=5@0.4)"
                )
            if kind in rules:
                raise InputError(f"{source}: kind '{kind}' is given twice")
            limit_text, at, threshold_text = value.partition("@")
            limit = _limit(limit_text.strip(), item, source) if limit_text.strip() else None
            threshold = _threshold(threshold_text.strip(), item, source) if at else None
            if limit is None and threshold is None:
                raise InputError(f"{source}: '{item}' gives neither a limit nor a threshold")
            rules[kind] = KindRule(limit, threshold)
        kinds = [k.strip() for k in (norm.split(",") if isinstance(norm, str) else norm or [])]
        kinds = [k for k in kinds if k]
        for k in kinds:
            if not _KIND.match(k):
                raise InputError(f"{source}: '{k}' is not a kind name")
        weight = 0.0 if title_weight is None else float(title_weight)
        if not 0.0 <= weight <= 1.0 or math.isnan(weight):
            raise InputError(f"{source}: the category title weight must be in [0, 1], got {title_weight}")
        if not rules and not kinds and weight == 0.0:
            return None
        return cls(rules, tuple(dict.fromkeys(kinds)), weight)

    def spec(self) -> str:
        """The ``--per-kind`` text of :attr:`rules` (parses back to the same rules)."""
        items = []
        for kind, rule in self.rules.items():
            limit = "" if rule.limit is None else str(rule.limit)
            threshold = "" if rule.threshold is None else f"@{rule.threshold:g}"
            items.append(f"{kind}={limit}{threshold}")
        return ",".join(items)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (saved with an index by ``tagindex optimize``)."""
        return {
            "per_kind": self.spec(),
            "kind_norm": list(self.norm),
            "category_title_weight": self.title_weight,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "saved tagging settings") -> KindPolicy | None:
        return cls.parse(
            data.get("per_kind"), data.get("kind_norm"), data.get("category_title_weight"), source
        )

    # ---- checks ---------------------------------------------------------------------------------
    @property
    def rescored_kinds(self) -> frozenset[str]:
        """Kinds whose every tag is scored exactly from the vectors (normalised or title-weighted)."""
        return frozenset(self.norm) | (PATH_KINDS if self.title_weight > 0 else frozenset())

    def check(self, by_id: Mapping[str, Tag], source: str = "--per-kind") -> None:
        """Refuses kinds the vocabulary does not have (a typo would silently do nothing).

        Raises:
            InputError: A named kind is absent from the vocabulary.
        """
        present = {t.kind for t in by_id.values()}
        named = set(self.rules) | set(self.norm)
        unknown = sorted(named - present)
        if unknown:
            raise InputError(
                f"{source}: kind(s) {unknown} not in this vocabulary; its kinds: {sorted(present)}"
            )

    # ---- selection ------------------------------------------------------------------------------
    def select(
        self,
        ranked: Sequence[RankedCandidates],
        by_id: Mapping[str, Tag],
        top_k: int,
        rescored: RescoredKinds | None = None,
    ) -> list[RankedCandidates]:
        """Each product's kept candidates, best first by their pipeline score, at most ``top_k``.

        Args:
            ranked: Candidates per product (the policy's pool, best first).
            by_id: The vocabulary.
            top_k: Kept tags per product at most (ancestor rows added later do not count).
            rescored: Exact selection scores of :attr:`rescored_kinds` (from :func:`rescore`).
        """
        out = []
        for i, r in enumerate(ranked):
            pool: list[tuple[float, int, Candidate]] = []
            for order, c in enumerate(r.candidates):
                if rescored is None or c.tag not in rescored.column:
                    pool.append((c.score, order, c))
            if rescored is not None:
                known = {c.tag: c for c in r.candidates}
                base = len(pool)
                excluded = rescored.excluded[i] if rescored.excluded is not None else set()
                for j, tag in enumerate(rescored.tags):
                    if tag in excluded:
                        continue
                    cand = known.get(tag)
                    if cand is None:
                        raw = float(rescored.raw[i, j])
                        cand = Candidate(tag, raw, None, raw)
                    pool.append((float(rescored.selection[i, j]), base + j, cand))
            pool.sort(key=lambda x: (-x[0], x[1]))
            kept = self._keep(((s, c) for s, _, c in pool), by_id, top_k)
            kept.sort(key=lambda c: -c.score)  # stable: ties keep the selection order
            out.append(RankedCandidates(r.id, kept))
        return out

    def _keep(
        self, pool: Iterable[tuple[float, Candidate]], by_id: Mapping[str, Tag], top_k: int
    ) -> list[Candidate]:
        kept: list[Candidate] = []
        counts: dict[str, int] = {}
        path: list[str] = []  # kept categories: every pair is ancestor/descendant
        attributes: set[str] = set()
        for selection_score, c in pool:
            if len(kept) >= top_k:
                break
            tag = by_id.get(c.tag)
            kind = tag.kind if tag is not None else ""
            rule = self.rules.get(kind)
            if rule is not None:
                if rule.threshold is not None and selection_score < rule.threshold:
                    continue
                if rule.limit is not None and counts.get(kind, 0) >= rule.limit:
                    continue
            if kind in PATH_KINDS:
                line = set(ancestors(c.tag, by_id))
                if not all(p in line or c.tag in ancestors(p, by_id) for p in path):
                    continue
                path.append(c.tag)
            if kind in ATTRIBUTE_KINDS and tag is not None:
                attribute = attribute_of(tag, by_id)
                if attribute in attributes:
                    continue
                attributes.add(attribute)
            counts[kind] = counts.get(kind, 0) + 1
            kept.append(c)
        return kept


def _limit(text: str, item: str, source: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise InputError(f"{source}: '{item}': the limit must be a whole number, got '{text}'") from None
    if limit < 0:
        raise InputError(f"{source}: '{item}': the limit must be 0 or more")
    return limit


def _threshold(text: str, item: str, source: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{source}: '{item}': the threshold must be a number, got '{text}'") from None
    if not math.isfinite(value):
        raise InputError(f"{source}: '{item}': the threshold must be finite")
    return value


def attribute_of(tag: Tag, by_id: Mapping[str, Tag]) -> str:
    """The attribute an attribute value belongs to: its parent, else ``Attribute`` of a name written
    ``Attribute: Value``, else the tag itself (no grouping)."""
    if tag.parent is not None and tag.parent in by_id:
        return tag.parent
    name, sep, value = tag.name.partition(":")
    if sep and name.strip() and value.strip():
        return "name:" + name.strip().casefold()
    return "tag:" + tag.id


@dataclass
class RescoredKinds:
    """Exact scores of every tag of the rescored kinds for a batch of products.

    Attributes:
        tags: Tag ids (columns).
        selection: (n_products, n_tags) the scores the policy selects by.
        raw: (n_products, n_tags) the first-stage cosines (written for tags not among the candidates).
        excluded: Per product, tags never to select (rejected by judgements of similar products).
    """

    tags: list[str]
    selection: np.ndarray
    raw: np.ndarray
    column: dict[str, int] = field(default_factory=dict)
    excluded: list[set[str]] | None = None

    def __post_init__(self) -> None:
        self.column = {t: j for j, t in enumerate(self.tags)}


def rescore(
    policy: KindPolicy,
    tags: Sequence[Tag],
    tag_vectors: np.ndarray,
    vectors: np.ndarray,
    title_vectors: np.ndarray | None = None,
) -> RescoredKinds | None:
    """The exact selection scores of the policy's rescored kinds (None when it rescores none).

    Args:
        policy: The policy.
        tags: The index's tags, in the rows of ``tag_vectors``.
        tag_vectors: (n_tags, dim) unit tag vectors.
        vectors: (n_products, dim) unit product vectors.
        title_vectors: (n_products, dim) unit vectors of the titles alone (needed with a title weight).

    Raises:
        InputError: Normalisation over fewer than :data:`MIN_NORM_BATCH` products.
    """
    kinds = policy.rescored_kinds
    rows = [i for i, t in enumerate(tags) if t.kind in kinds]
    if not rows:
        return None
    matrix = tag_vectors[rows]  # (m, dim)
    raw = vectors @ matrix.T  # (n, m)
    selection = raw.astype(np.float64, copy=True)
    kind_of = np.array([tags[i].kind for i in rows], dtype=object)
    if policy.title_weight > 0:
        if title_vectors is None:
            raise ValueError("a category title weight needs the title vectors")
        path = np.isin(kind_of, list(PATH_KINDS))
        w = policy.title_weight
        selection[:, path] = w * (title_vectors @ matrix[path].T) + (1 - w) * raw[:, path]
    if policy.norm:
        if len(vectors) < MIN_NORM_BATCH:
            raise InputError(
                f"normalising kinds {list(policy.norm)} needs at least {MIN_NORM_BATCH} products tagged "
                f"together, got {len(vectors)}"
            )
        normed = np.isin(kind_of, list(policy.norm))
        block = selection[:, normed]
        std = np.maximum(block.std(axis=0), 1e-6)
        selection[:, normed] = (block - block.mean(axis=0)) / std
    return RescoredKinds([tags[i].id for i in rows], selection, raw)


def title_texts(products: Sequence[Product], params: TextParams) -> list[str]:
    """Encoder input of each product's title alone (for a category title weight)."""
    title_only = replace(params, description_chars=0, include_attributes=False)
    return [product_text(p, title_only) for p in products]
