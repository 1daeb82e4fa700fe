"""TagIndex: tag vectors in a FAISS index; which tags fit a product, which tags are alike."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file

from tagindex.candidates import insert_ancestors
from tagindex.compressed_exemplars import FLOAT32, CodedExemplars, CompressedParams
from tagindex.config import DEFAULT_MODEL, TagIndexParams, with_legacy_attribute_labels
from tagindex.duplicates import find_duplicates
from tagindex.encoders import Encoder, TranslatingEncoder, VectorCache, describe, encoder_parts, load_encoder
from tagindex.exemplars import ExemplarScorer, ExemplarSet, load_exemplars, save_exemplars
from tagindex.gate import fit_gate
from tagindex.learn import LearnedState, learned_manifest, read_learned, write_learned
from tagindex.registry import FUSIONS
from tagindex.schema import Product, Tag, TagResult, TagScore
from tagindex.store import (
    IndexFormatError,
    library_versions,
    link_or_copy_tree,
    read_manifest,
    versioned_directory,
    write_manifest,
)
from tagindex.text import product_text, tag_text
from tagindex.translate import Vocabulary, target_names
from tagindex.vector_index import VectorIndex
from tagindex.version import __version__

if TYPE_CHECKING:
    from tagindex.interfaces import VectorFusion
    from tagindex.kinds import KindPolicy

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_KIND = "tagindex"


def read_tag_rows(rows: Sequence[dict[str, Any]]) -> list[Tag]:
    """Tags from the rows of a saved index's ``tags.parquet``."""
    return [
        Tag(
            id=r["id"],
            name=r["name"],
            description=r.get("description") or "",
            parent=r.get("parent"),
            kind=r.get("kind") or "tag",
            synonyms=list(r.get("synonyms") or []),
            # Indexes saved before names per language have no "names" column.
            names=json.loads(r["names"]) if r.get("names") else {},
        )
        for r in rows
    ]


def _translating(encoder: Encoder) -> TranslatingEncoder | None:
    """The dictionary translator inside ``encoder`` (``EncoderParams.translate``), if any."""
    return next((e for e in encoder_parts(encoder) if isinstance(e, TranslatingEncoder)), None)


def read_saved_tags(directory: str | os.PathLike[str]) -> list[Tag]:
    """The vocabulary of a saved index without loading its encoder."""
    root = read_manifest(directory, _KIND, verify=False).root
    return read_tag_rows(pq.read_table(root / "tags.parquet").to_pylist())


def read_saved_lent_names(
    directory: str | os.PathLike[str], tags: Sequence[Tag] | None = None
) -> list[tuple[str, str, str]]:
    """(source category id, lent name, tag id) of each name an index adapted with ``--graft`` lends,
    without loading its encoder; the source id is "" for indexes saved before it was recorded.
    ``tags``: the index's :func:`read_saved_tags`, when the caller has them already."""
    from tagindex.adapt.adjust import read_graft

    root = read_manifest(directory, _KIND, verify=False).root
    graft = read_graft(root)
    if graft is None:
        return []
    if tags is None:
        tags = read_saved_tags(directory)
    sources = graft.get("sources") or [""] * len(graft["names"])
    return [
        (str(s), str(name), tags[int(row)].id)
        for s, name, row in zip(sources, graft["names"], graft["rows"], strict=True)
    ]


def _load_fusion(directory: Path, manifest: dict[str, Any], verify: bool) -> VectorFusion | None:
    """The saved index's vector fusion, loaded by the type its manifest names (None without one).

    Indexes saved before fusion types were named carry a ``graph`` entry: the graph fusion.
    """
    entry = manifest.get("fusion")
    if entry:
        kind = str(entry["type"])
    elif manifest.get("graph"):
        kind = "graph"
    else:
        return None
    try:
        loader = FUSIONS.get(kind)
    except ValueError as exc:
        raise IndexFormatError(f"{directory}: {exc}") from None
    fusion: VectorFusion = loader(directory / kind, verify=verify)
    return fusion


class TagIndex:
    """A tag vocabulary embedded by one encoder and searchable by products or free text.

    Example:
        >>> index = TagIndex.build(tags)
        >>> results = index.tag(products, top_k=5)
        >>> index.save("my-index")
    """

    def __init__(
        self,
        params: TagIndexParams | None = None,
        encoder: Encoder | None = None,
        fusion: VectorFusion | None = None,
    ) -> None:
        self.params = params or TagIndexParams()
        self.encoder = encoder or load_encoder(self.params.encoder)
        # Optional vector fusion (e.g. tagindex.graph.fusion.GraphFusion, registered in
        # tagindex.registry.FUSIONS): appends its vectors to every tag and product vector.
        self.fusion = fusion
        self.vector_dim = self.encoder.dim + (fusion.dim if fusion is not None else 0)
        self._tags: list[Tag] = []
        self._texts: list[str] = []
        self._int_ids = np.zeros(0, dtype=np.int64)
        # FAISS int id -> tag id table, built lazily once per change so search costs O(results), not O(tags).
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None
        self._vectors = np.zeros((0, self.vector_dim), dtype=np.float32)
        self._row_of: dict[str, int] = {}
        self._next_id = 0
        self._index = VectorIndex(self.vector_dim, self.params.index)
        # Float32 vectors, or IVF codes after compress_exemplars (tagindex index --exemplar-codes).
        self._exemplars: ExemplarSet | CodedExemplars | None = None
        self._scorer: ExemplarScorer | None = None  # rebuilt lazily after any change
        self.gate_report: dict[str, Any] | None = None  # how the zero-shot gate was fitted (tagindex.gate)
        # Optional tagindex.adapt.adjust.ScoreAdjuster (written by `tagindex adapt`): per-tag hubness
        # normalisation and hierarchy-aware decoding, applied to every request without exemplars.
        self.adjuster: Any = None
        self.learned: LearnedState | None = None  # merchandiser judgements (tagindex.learn)
        # Tagging defaults chosen by `tagindex optimize` (threshold, top_k, per-kind policy), used by
        # `tagindex tag --index` where the command line gives none; saved in the manifest.
        self.tagging: dict[str, Any] | None = None

    # ---- building -------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        tags: Sequence[Tag],
        params: TagIndexParams | None = None,
        encoder: Encoder | None = None,
        show_progress: bool = False,
        fusion: VectorFusion | None = None,
    ) -> TagIndex:
        """Encodes every tag text once and indexes the vectors (fused with graph vectors when given)."""
        index = cls(params, encoder, fusion)
        index.add_tags(tags, show_progress=show_progress)
        return index

    def __len__(self) -> int:
        return len(self._tags)

    @property
    def tags(self) -> list[Tag]:
        return list(self._tags)

    def row(self, tag_id: str) -> int:
        """The tag's row in :attr:`tags` and :attr:`tag_vectors_matrix`.

        Raises:
            KeyError: Unknown tag id.
        """
        try:
            return self._row_of[tag_id]
        except KeyError:
            raise KeyError(f"unknown tag id '{tag_id}'") from None

    def get(self, tag_id: str) -> Tag:
        try:
            return self._tags[self._row_of[tag_id]]
        except KeyError:
            raise KeyError(f"unknown tag id '{tag_id}'") from None

    def __contains__(self, tag_id: object) -> bool:
        return tag_id in self._row_of

    @property
    def by_id(self) -> dict[str, Tag]:
        return {t.id: t for t in self._tags}

    def add_tags(self, tags: Sequence[Tag], show_progress: bool = False) -> None:
        """Adds tags without rebuilding the index; parents may be existing tags or tags in ``tags``.

        Raises:
            ValueError: A tag id already exists, repeats, or names an unknown parent.
        """
        tags = list(tags)
        if not tags:
            return
        new_ids = [t.id for t in tags]
        dup = sorted({i for i in new_ids if i in self._row_of} | {i for i in new_ids if new_ids.count(i) > 1})
        if dup:
            raise ValueError(f"tag id(s) already present: {dup[:10]}")
        by_id = {**self.by_id, **{t.id: t for t in tags}}
        unknown = [t.id for t in tags if t.parent is not None and t.parent not in by_id]
        if unknown:
            raise ValueError(f"tag(s) {unknown[:10]} name a parent that is not in the index")
        texts = [tag_text(t, by_id, self.params.text) for t in tags]
        translating = _translating(self.encoder)
        if translating is not None and not self._tags:
            # Senses are chosen to fit the first tags' English names and then stay fixed, so later
            # additions never change how earlier text was translated.
            translating.set_vocabulary(Vocabulary.from_names(target_names(tags)))
        start = time.perf_counter()
        vectors = self.encoder.encode(texts, show_progress=show_progress)  # (n_new, dim)
        logger.info("encoded %d tag texts in %.1fs", len(texts), time.perf_counter() - start)
        if self.fusion is not None:
            vectors = self.fusion.fuse_tags(tags, vectors, by_id)  # (n_new, vector_dim)
        int_ids = np.arange(self._next_id, self._next_id + len(tags), dtype=np.int64)
        self._next_id += len(tags)
        self._index.add(int_ids, vectors)
        self._append(tags, texts, int_ids, vectors)

    def _append(self, tags: list[Tag], texts: list[str], int_ids: np.ndarray, vectors: np.ndarray) -> None:
        self._drop_adjuster()
        for offset, t in enumerate(tags):
            self._row_of[t.id] = len(self._tags) + offset
        self._tags.extend(tags)
        self._scorer = None
        self._texts.extend(texts)
        self._int_ids = np.concatenate([self._int_ids, int_ids])
        self._lookup = None
        self._vectors = np.concatenate([self._vectors, vectors])

    def remove_tags(self, tag_ids: Iterable[str], cascade: bool = False) -> list[str]:
        """Retires tags without rebuilding; returns the ids removed.

        Args:
            tag_ids: Ids to remove.
            cascade: Also remove their descendants; without it, removing a tag that still has
                children is refused, since the children's path text would go stale.
        """
        wanted = list(dict.fromkeys(tag_ids))
        unknown = [t for t in wanted if t not in self._row_of]
        if unknown:
            raise KeyError(f"unknown tag id(s): {unknown[:10]}")
        children: dict[str, list[str]] = {}
        for t in self._tags:
            if t.parent is not None:
                children.setdefault(t.parent, []).append(t.id)
        doomed = set(wanted)
        stack = list(wanted)
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in doomed:
                    if not cascade:
                        raise ValueError(
                            f"tag '{child}' is a child of a tag being removed; "
                            "remove children first or pass cascade=True"
                        )
                    doomed.add(child)
                    stack.append(child)
        rows = sorted(self._row_of[t] for t in doomed)
        self._drop_adjuster()
        self._index.remove(self._int_ids[rows])
        keep = np.ones(len(self._tags), dtype=bool)
        keep[rows] = False
        self._tags = [t for t, k in zip(self._tags, keep, strict=True) if k]
        self._texts = [t for t, k in zip(self._texts, keep, strict=True) if k]
        self._int_ids = self._int_ids[keep]
        self._vectors = self._vectors[keep]
        self._row_of = {t.id: i for i, t in enumerate(self._tags)}
        self._scorer = None
        self._lookup = None
        return sorted(doomed)

    def _drop_adjuster(self) -> None:
        # The adjuster's per-tag statistics are aligned to the tag rows; any change invalidates them.
        if self.adjuster is not None:
            logger.warning("the tag set changed: the adapted score adjuster is dropped (re-run adapt)")
            self.adjuster = None

    def replace_vectors(self, vectors: np.ndarray, texts: Sequence[str] | None = None) -> None:
        """Replaces every tag's vector (and optionally its text), e.g. with adapted ones.

        Args:
            vectors: (n_tags, vector_dim) unit vectors in tag order.
            texts: New encoder texts in tag order (kept for explanations), or None to keep.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != self._vectors.shape:
            raise ValueError(f"expected vectors of shape {self._vectors.shape}, got {vectors.shape}")
        if texts is not None and len(texts) != len(self._tags):
            raise ValueError(f"expected {len(self._tags)} texts, got {len(texts)}")
        self._index = VectorIndex(self.vector_dim, self.params.index)
        self._index.add(self._int_ids, vectors)
        self._vectors = vectors
        if texts is not None:
            self._texts = list(texts)
        self._scorer = None

    # ---- exemplars ------------------------------------------------------------------------------
    def add_exemplars(
        self,
        products: Sequence[Product],
        vectors: np.ndarray | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
    ) -> int:
        """Stores labelled products so that tags with examples are matched through them as well.

        Args:
            products: Products whose ``tags`` are ids in this index (the gold labels).
            vectors: Their vectors (n, dim) from this index's encoder; encoded when omitted.
            cache_dir: Directory for cached product vectors.
            show_progress: Show a progress bar while encoding.

        Returns:
            The number of exemplars added.

        Raises:
            ValueError: A product has no tags or names a tag id the index does not hold.
        """
        products = list(products)
        for p in products:
            if not p.tags:
                raise ValueError(f"product '{p.id}' has no tags; exemplars need gold tags")
            unknown = [t for t in p.tags if t not in self._row_of]
            if unknown:
                raise ValueError(f"product '{p.id}' names tag id(s) not in the index: {unknown[:5]}")
        if vectors is None:
            vectors = self.encode_products(products, cache_dir=cache_dir, show_progress=show_progress)
        if len(vectors) != len(products) or vectors.shape[1] != self.vector_dim:
            raise ValueError(f"expected vectors of shape ({len(products)}, {self.vector_dim})")
        ids, labels = [p.id for p in products], [list(p.tags) for p in products]
        self._scorer = None
        if isinstance(self._exemplars, CodedExemplars):
            # Into the trained cells; the gate was fitted on the float32 vectors before coding and
            # cannot be refitted without them, so it stays.
            self._exemplars = self._exemplars.add(ids, labels, vectors)
            logger.info("added %d exemplars to the %s codes", len(ids), self._exemplars.kind)
            return len(ids)
        new = ExemplarSet(ids, labels, vectors)
        self._exemplars = new if self._exemplars is None else self._exemplars.extend(new)
        if self.params.exemplars.fit_gate:
            self.params.exemplars, self.gate_report = fit_gate(
                self._tags, self._vectors, self._exemplars, self.params.exemplars
            )
        return len(new)

    @property
    def n_exemplars(self) -> int:
        return 0 if self._exemplars is None else len(self._exemplars)

    @property
    def exemplar_storage(self) -> str:
        """``float32`` or the kind of the exemplar codes (``ivf-sq8``, ``ivf-pq``, ``ivf-opq``)."""
        return self._exemplars.kind if isinstance(self._exemplars, CodedExemplars) else FLOAT32

    def exemplar_ids(self) -> list[str]:
        """Ids of the stored labelled products (before any judgement)."""
        return [] if self._exemplars is None else list(self._exemplars.ids)

    def compress_exemplars(self, params: CompressedParams) -> None:
        """Replaces the float32 exemplar vectors by IVF codes (trained on a seeded sample of them).

        Tag prototypes stay exact (kept as vector sums per label list); neighbour votes become
        approximate; leave-one-out scoring of exemplars is refused from now on. More exemplars
        added later go into the same codes.

        Raises:
            ValueError: The index holds no float32 exemplars, or the params do not fit the dimension.
        """
        if not isinstance(self._exemplars, ExemplarSet) or not len(self._exemplars):
            raise ValueError("compress_exemplars: the index holds no float32 exemplars to compress")
        start = time.perf_counter()
        ex = self._exemplars
        self._exemplars = CodedExemplars.encode(ex.ids, ex.labels, ex.vectors, params)
        self._scorer = None
        logger.info(
            "coded %d exemplars as %s in %.1fs (%.1f bytes an exemplar)",
            len(ex),
            params.kind,
            time.perf_counter() - start,
            self._exemplars.bytes_per_exemplar()["total"],
        )

    def scorer(self) -> ExemplarScorer | None:
        """The exemplar scorer for the current tags and exemplars (None without exemplars)."""
        if self.learned is not None:  # judgements edit the exemplars and may refit the gate
            exemplars = self.learned.effective_exemplars(self._exemplars, self.vector_dim)
            params = self.learned.scoring_params(self.params.exemplars)
        else:
            exemplars, params = self._exemplars, self.params.exemplars
        if exemplars is None:
            return None
        if self._scorer is None:
            params = params.for_exemplars(len(exemplars))
            self._scorer = ExemplarScorer(self._tags, self._vectors, exemplars, params)
        return self._scorer

    @property
    def base_exemplars(self) -> ExemplarSet | CodedExemplars | None:
        """The labelled products stored with :meth:`add_exemplars`, before any judgement."""
        return self._exemplars

    @property
    def tag_vectors_matrix(self) -> np.ndarray:
        """Tag vectors (n_tags, vector_dim), rows in :attr:`tags` order (read-only by convention)."""
        return self._vectors

    def learned_changed(self) -> None:
        """Drops what depends on the learned state (called by :mod:`tagindex.learn`)."""
        self._scorer = None

    # ---- searching ------------------------------------------------------------------------------
    def product_texts(self, products: Sequence[Product]) -> list[str]:
        return [product_text(p, self.params.text) for p in products]

    def encode_products(
        self,
        products: Sequence[Product],
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Product vectors (n, dim); with ``cache_dir`` vectors of texts seen before are reused."""
        texts = self.product_texts(products)
        if cache_dir is not None:
            vectors = VectorCache(cache_dir, self.encoder).encode(texts, show_progress=show_progress)
        else:
            vectors = self.encoder.encode(texts, show_progress=show_progress)
        if self.fusion is not None:
            vectors = self.fusion.fuse_products(products, vectors)  # (n, vector_dim)
        return vectors

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Nearest tags for query vectors (n, dim): scores (n, k) and tag ids (ragged when k > len)."""
        scores, int_ids = self._index.search(vectors, k)
        if self._lookup is None:
            row_of_int = np.full(int(self._int_ids.max(initial=-1)) + 2, -1, dtype=np.int64)
            row_of_int[self._int_ids] = np.arange(len(self._int_ids))
            self._lookup = row_of_int, np.array([t.id for t in self._tags] + [None], dtype=object)
        row_of_int, tag_ids = self._lookup
        rows = row_of_int[np.where(int_ids >= 0, int_ids, -1)]  # (n, k); -1 (missing) -> the None slot
        found = tag_ids[rows].tolist()
        if (rows < 0).any():
            found = [[t for t in row if t is not None] for row in found]
        return scores, found

    def tag(
        self,
        products: Sequence[Product],
        top_k: int = 10,
        threshold: float | None = None,
        include_ancestors: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
        show_progress: bool = False,
        leave_one_out: bool = False,
        per_kind: KindPolicy | str | None = None,
    ) -> list[TagResult]:
        """Ranks tags for a batch of products.

        Args:
            products: Products to tag.
            top_k: Number of nearest tags per product.
            threshold: Drop tags scoring below this cosine similarity.
            include_ancestors: Insert each ranked tag's ancestors right after it, with its score.
            cache_dir: Directory for cached product vectors.
            show_progress: Show a progress bar while encoding.
            leave_one_out: Score a product that is stored as an exemplar (same id) as if it were not:
                for training and calibrating later stages on the index's own labelled products.
            per_kind: Per-kind limits, thresholds and rules: a :class:`tagindex.kinds.KindPolicy` or
                a spec such as ``"category=1,keyword=5@0.4"`` (see :mod:`tagindex.kinds`); applied by
                :class:`tagindex.pipeline.TaggingPipeline`, as ``tagindex tag --per-kind`` does.

        Returns:
            One TagResult per product, in input order, tags sorted by score.
        """
        if not self._tags:
            raise ValueError("the index holds no tags")
        if per_kind is not None:
            from tagindex.kinds import KindPolicy
            from tagindex.pipeline import TaggingPipeline

            policy = KindPolicy.parse(per_kind, source="per_kind") if isinstance(per_kind, str) else per_kind
            if policy is not None:
                tagged = TaggingPipeline(self).tag(
                    products,
                    top_k,
                    threshold,
                    include_ancestors,
                    cache_dir=cache_dir,
                    show_progress=show_progress,
                    per_kind=policy,
                )
                return [t.result for t in tagged]
        vectors = self.encode_products(products, cache_dir=cache_dir, show_progress=show_progress)
        return self.tag_vectors(
            [p.id for p in products],
            vectors,
            top_k,
            threshold,
            include_ancestors,
            leave_one_out,
            titles=self.match_texts(products),
        )

    def tag_vectors(
        self,
        product_ids: Sequence[str],
        vectors: np.ndarray,
        top_k: int = 10,
        threshold: float | None = None,
        include_ancestors: bool = False,
        leave_one_out: bool = False,
        titles: Sequence[str] | None = None,
    ) -> list[TagResult]:
        """Like :meth:`tag` for products already encoded (vectors (n, dim)).

        With exemplars, the most specific tags are ranked by :class:`ExemplarScorer` (scores are then
        that rule's values, not plain cosines); without, by cosine similarity to the tag texts, or
        by the adapted scores of an index written by ``tagindex adapt``, which also match the
        products' ``titles`` against the tag names (required then; see :mod:`tagindex.adapt.lexical`).

        Raises:
            ValueError: An adapted index that matches titles, called without them.
        """
        scorer = self.scorer()
        # Rejected tags of near-identical judged products are dropped, so fetch that many more.
        suppressed = self.learned.suppressed(vectors) if self.learned is not None else None
        fetch = top_k + max((len(s) for s in suppressed), default=0) if suppressed else top_k
        if scorer is not None:
            exclude = scorer.exemplar_rows(product_ids) if leave_one_out else None
            scores, ids = scorer.top(vectors, fetch, exclude)
        else:
            scores, ids = self.nearest_tags(vectors, fetch, titles)
        # The id -> Tag dict is rebuilt per call only when ancestors are wanted: it costs O(tags).
        by_id = self.by_id if include_ancestors else None
        tags, row_of = self._tags, self._row_of

        def name(tag_id: str) -> str:
            return tags[row_of[tag_id]].name

        if not suppressed or not any(suppressed):
            return [
                TagResult(
                    pid,
                    insert_ancestors(zip(row_ids, row_scores.tolist(), strict=False), name, by_id, threshold),
                )
                for pid, row_scores, row_ids in zip(product_ids, scores, ids, strict=True)
            ]
        results = []
        for pid, row_scores, row_ids, drop in zip(product_ids, scores, ids, suppressed, strict=True):
            pairs = [(t, s) for t, s in zip(row_ids, row_scores.tolist(), strict=False) if t not in drop][
                :top_k
            ]
            rows = [r for r in insert_ancestors(pairs, name, by_id, threshold) if r.tag not in drop]
            results.append(TagResult(pid, rows))
        return results

    def nearest_tags(
        self, vectors: np.ndarray, k: int, titles: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Best ``k`` tags per product vector (n, dim), exemplars aside: an adapted index's adjusted
        scores (its title match needs the products' ``titles``), else cosine (:meth:`search`).

        Returns:
            Scores (n, k) and tag ids, best first.
        """
        if self.adjuster is None:
            return self.search(vectors, k)
        match = self.adjuster.match(titles) if titles is not None else None
        scores, rows = self.adjuster.top(vectors @ self._vectors.T, k, lexical=match)
        return scores, [[self._tags[r].id for r in row] for row in rows.tolist()]

    def match_texts(self, products: Sequence[Product]) -> list[str]:
        """What an adapted index's title match reads for each product (its title, with its shop
        category where the index reads one): the ``titles`` of :meth:`tag_vectors`,
        :meth:`nearest_tags` and :meth:`title_match`."""
        lexicon = self.adjuster.lexicon if self.adjuster is not None else None
        if lexicon is None:
            return [p.title for p in products]
        return lexicon.match_texts(products)

    def title_match(self, vectors: np.ndarray, titles: Sequence[str]) -> np.ndarray | None:
        """What an adapted index's product-type match adds to each tag's score, (n, tags) for the
        products' vectors (n, dim) and titles; None for an index that does not match titles.

        For explanations: :meth:`tag_vectors` ranks by scores that include exactly this.
        """
        adjuster = self.adjuster
        if adjuster is None or adjuster.lexicon is None:
            return None
        return adjuster.lexical_part(vectors @ self._vectors.T, adjuster.match(titles))

    def title_match_sources(self, product: Product) -> dict[str, dict[str, str]]:
        """Where an adapted index's title match of each tag comes from for this product (tag id ->
        ``{"lent": name}`` for a name lent by ``adapt --graft``, ``{"category": path}`` when the
        product's own category named the tag rather than its title; see
        :meth:`tagindex.adapt.lexical.TypeLexicon.match_sources`). Empty for other indexes."""
        adjuster = self.adjuster
        if adjuster is None or adjuster.lexicon is None:
            return {}
        text = self.match_texts([product])[0]
        sources = adjuster.lexicon.match_sources(text, adjuster.lexical_other_word)
        return {self._tags[row].id: found for row, found in sources.items()}

    def tag_one(
        self,
        product: Product,
        top_k: int = 10,
        threshold: float | None = None,
        include_ancestors: bool = False,
    ) -> TagResult:
        """Single-product helper over :meth:`tag`."""
        return self.tag([product], top_k, threshold, include_ancestors)[0]

    def similar(self, query: str, top_k: int = 10) -> list[TagScore]:
        """Tags most similar to a tag id (the tag itself excluded) or, failing that, to free text."""
        if query in self._row_of:
            vector = self._vectors[self._row_of[query]][None, :]
            exclude = query
        else:
            vector = self.encoder.encode([query])
            if self.fusion is not None:
                vector = self.fusion.fuse_products([Product("query", query)], vector)
            exclude = None
        scores, ids = self.search(vector, top_k + (1 if exclude else 0))
        out = [
            TagScore(t, s, self.get(t).name)
            for t, s in zip(ids[0], scores[0].tolist(), strict=False)
            if t != exclude
        ]
        return out[:top_k]

    def duplicates(self, min_score: float = 0.9, neighbours: int = 5) -> list[tuple[str, str, float]]:
        """Pairs of tags whose vectors are near-identical, most similar first, family included.

        The unfiltered scan; :func:`tagindex.duplicates.find_duplicates` leaves out parent/child and
        sibling pairs and ranks the rest by evidence.
        """
        pairs = find_duplicates(self._tags, self._vectors, min_score, neighbours, include_family=True)
        return sorted(((p.a, p.b, p.score) for p in pairs), key=lambda x: (-x[2], x[0], x[1]))

    @property
    def vectors(self) -> np.ndarray:
        """The tag vectors (n, dim) in the row order of :attr:`tags` (read-only view)."""
        view = self._vectors.view()
        view.flags.writeable = False
        return view

    def exemplar_labels(self) -> list[list[str]] | None:
        """Tag lists of the stored labelled products (exemplars), or None without exemplars."""
        return None if self._exemplars is None else [list(x) for x in self._exemplars.labels]

    def tag_vector(self, tag_id: str) -> np.ndarray:
        return self._vectors[self._row_of[tag_id]]

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index as a new version of directory ``path``; the previous version stays live
        until the new one is complete (see :func:`tagindex.store.versioned_directory`)."""
        copied_encoder = False
        with versioned_directory(path) as tmp:
            params = TagIndexParams.from_dict(self.params.to_dict())
            model = params.encoder.model
            if model != DEFAULT_MODEL and Path(model).is_dir():
                # An earlier version of this index is never modified in place, so linking is safe.
                if Path(model).resolve().is_relative_to(Path(path).resolve()):
                    link_or_copy_tree(Path(model), tmp / "encoder")
                else:
                    shutil.copytree(model, tmp / "encoder")
                params.encoder.model = "encoder"  # relative to the index directory
                copied_encoder = True
            table = pd.DataFrame(
                {
                    "int_id": self._int_ids,
                    "id": [t.id for t in self._tags],
                    "name": [t.name for t in self._tags],
                    "description": [t.description for t in self._tags],
                    "parent": [t.parent for t in self._tags],
                    "kind": [t.kind for t in self._tags],
                    "synonyms": [t.synonyms for t in self._tags],
                    "names": [json.dumps(t.names, ensure_ascii=False) if t.names else "" for t in self._tags],
                    "text": self._texts,
                }
            )
            table.to_parquet(tmp / "tags.parquet", index=False)
            save_file({"vectors": np.ascontiguousarray(self._vectors)}, str(tmp / "tag_vectors.safetensors"))
            self._index.save(tmp / "tags.faiss")
            if self.fusion is not None:
                self.fusion.save(tmp / self.fusion.type_name)
            storage = save_exemplars(tmp, self._exemplars) if self._exemplars is not None else None
            if self.adjuster is not None:
                self.adjuster.save(tmp)
            if self.learned is not None:
                write_learned(tmp, self.learned)
            translating = _translating(self.encoder)
            if translating is not None:
                translating.save(tmp)
            write_manifest(
                tmp,
                {
                    "kind": _KIND,
                    "format_version": FORMAT_VERSION,
                    "tagindex_version": __version__,
                    "params": params.to_dict(),
                    "encoder": describe(self.encoder),
                    "dim": self.encoder.dim,
                    "vector_dim": self.vector_dim,
                    # the fusion's type names its loader in tagindex.registry.FUSIONS and its directory
                    "fusion": {**self.fusion.describe(), "type": self.fusion.type_name}
                    if self.fusion is not None
                    else None,
                    "n_tags": len(self._tags),
                    "n_exemplars": self.n_exemplars,
                    "exemplar_gate": self.gate_report,
                    # float32 exemplars keep the manifest they always had (no entry)
                    **({"exemplar_storage": storage} if storage is not None else {}),
                    "adapt": self.adjuster.describe() if self.adjuster is not None else None,
                    "next_id": self._next_id,
                    **learned_manifest(self.learned),
                    **({"tagging": self.tagging} if self.tagging is not None else {}),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "versions": library_versions(
                        "faiss-cpu",
                        "faiss-gpu",
                        "numpy",
                        "sentence-transformers",
                        "torch",
                        "transformers",
                        "pyarrow",
                    ),
                },
            )
        if copied_encoder:
            # The version loaded from is removed by a later save; the new one holds the same files.
            self.params.encoder.model = str(read_manifest(path, _KIND, verify=False).root / "encoder")

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], encoder: Encoder | None = None, verify: bool = True
    ) -> TagIndex:
        """Loads a saved index, checking its manifest and file checksums.

        Raises:
            IndexFormatError: The directory is not a complete, intact tagindex.
        """
        manifest = read_manifest(path, _KIND, verify=verify, format_version=FORMAT_VERSION)
        directory = manifest.root  # the live version
        raw = manifest["params"]
        if isinstance(raw.get("text"), dict):
            raw = {**raw, "text": with_legacy_attribute_labels(raw["text"])}
        params = TagIndexParams.from_dict(raw)
        if params.encoder.model == "encoder":
            params.encoder.model = str(directory / "encoder")
        fusion = _load_fusion(directory, manifest, verify)
        index = cls(params, encoder, fusion)
        translating = _translating(index.encoder)
        if translating is not None:
            translating.load(directory)
        if index.encoder.dim != manifest["dim"]:
            raise IndexFormatError(
                f"{directory}: encoder dimension {index.encoder.dim} != saved {manifest['dim']}"
            )
        rows = pq.read_table(directory / "tags.parquet").to_pylist()
        tags = read_tag_rows(rows)
        vectors = load_file(str(directory / "tag_vectors.safetensors"))["vectors"]
        if len(tags) != len(vectors) or len(tags) != manifest["n_tags"]:
            raise IndexFormatError(f"{directory}: tag table, vectors and manifest disagree on the tag count")
        index._index = VectorIndex.load(directory / "tags.faiss", index.vector_dim, params.index)
        int_ids = np.array([r["int_id"] for r in rows], dtype=np.int64)
        index._append(tags, [r["text"] for r in rows], int_ids, vectors)
        # Never below the largest id in use: a damaged manifest must not make `update` reuse a FAISS id.
        used = int(int_ids.max()) + 1 if len(int_ids) else 0
        index._next_id = max(int(manifest["next_id"]), used)
        index._exemplars = load_exemplars(directory, index.vector_dim, manifest.get("exemplar_storage"))
        index.gate_report = manifest.get("exemplar_gate")
        index.learned = read_learned(directory, index.vector_dim)
        index.tagging = manifest.get("tagging")
        if manifest.get("adapt"):
            from tagindex.adapt.adjust import ScoreAdjuster

            index.adjuster = ScoreAdjuster.load(directory, len(tags), [t.name for t in tags])
        return index

    def describe(self) -> dict[str, Any]:
        return {
            "n_tags": len(self._tags),
            "n_exemplars": self.n_exemplars,
            "exemplar_storage": self.exemplar_storage,
            "dim": self.encoder.dim,
            "params": self.params.to_dict(),
        }
