"""The service's view of one TagIndex: thread-safe reads, serialised writes persisted to disk."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tagindex.service.batching import EncodeBatcher

from tagindex.duplicates import DuplicatePair, Progress, find_duplicates
from tagindex.index import TagIndex
from tagindex.schema import Product, Tag, TagResult, TagScore
from tagindex.store import read_manifest
from tagindex.text import tag_path, tag_text

logger = logging.getLogger(__name__)

DUPLICATE_STEP = 0.01  # min_score granularity of the duplicates cache
DUPLICATE_CACHE_SIZE = 8  # duplicate scans kept (each at most n tags x neighbours pairs)


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers so writes are not starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class _Vocabulary:
    """Per-version lookups that would cost O(n tags) to rebuild on every request."""

    by_id: dict[str, Tag]
    paths: dict[str, list[str]]
    search_keys: list[tuple[str, str, str]]  # (tag id, folded name, folded path text)


class Engine:
    """Owns the loaded index, answers queries and applies vocabulary changes.

    Reads (tagging, lookups) run concurrently under a read lock; a change takes the write lock only
    while it mutates the in-memory index, then saves the index directory atomically under the read
    lock, so a restart serves the same vocabulary. Changes are serialised among themselves.
    """

    def __init__(self, index_dir: str | Path, index: TagIndex | None = None, max_batch: int = 64) -> None:
        self.index_dir = Path(index_dir)
        start = time.perf_counter()
        self.index = index if index is not None else TagIndex.load(self.index_dir)
        self.load_seconds = time.perf_counter() - start
        manifest = read_manifest(self.index_dir, "tagindex", verify=False)
        self.fingerprint: str = manifest.get("encoder", {}).get("fingerprint", "")
        self.version = 0  # bumped by every change; keys the caches below
        self._lock = RWLock()
        self._change = threading.Lock()
        self._cache_lock = threading.Lock()  # readers share the read lock, so the cache has its own
        self._batcher = EncodeBatcher(self.index.encoder, max_batch=max(max_batch, 1))
        self._vocab = self._build_vocabulary()
        # (version, score floor in DUPLICATE_STEP units, neighbours, siblings) -> pairs at or above the
        # floor, least recently used first; bounded, so distinct min_score values cannot grow memory.
        self._duplicates: OrderedDict[tuple[int, int, int, bool], list[DuplicatePair]] = OrderedDict()
        # the rerank / calibration stage (tagindex.service.stage.RerankStage) when configured
        self.stage: Any = None

    def close(self) -> None:
        self._batcher.close()

    def reading(self) -> AbstractContextManager[None]:
        """The read lock, for a stage that reads the index (never take it twice in one thread: a
        waiting writer would block the second acquisition)."""
        return self._lock.read()

    @property
    def by_id(self) -> dict[str, Tag]:
        """Tag id -> tag of the current vocabulary (a cached dict; do not change it)."""
        return self._vocab.by_id

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors (n, dim) through the shared batcher (thread-safe)."""
        return self._batcher.encode(texts)

    # ---- reads ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def get(self, tag_id: str) -> Tag:
        with self._lock.read():
            return self.index.get(tag_id)

    def path(self, tag_id: str, language: str | None = None) -> list[str]:
        """Names from the root to the tag; in ``language`` where the tags have names in it."""
        if not language:
            return self._vocab.paths.get(tag_id, [])
        by_id = self._vocab.by_id
        return tag_path(by_id[tag_id], by_id, language) if tag_id in by_id else []

    def name(self, tag_id: str, language: str | None = None) -> str:
        """The tag's name (in ``language`` where it has one); "" for an unknown id."""
        tag = self._vocab.by_id.get(tag_id)
        return tag.name_in(language) if tag is not None else ""

    def encode_products(self, products: Sequence[Product]) -> tuple[list[str], np.ndarray]:
        """Encoder input texts and their vectors (n, dim)."""
        texts = self.index.product_texts(products)
        return texts, self._batcher.encode(texts)

    def tag(
        self,
        products: Sequence[Product],
        top_k: int,
        threshold: float | None = None,
        include_ancestors: bool = False,
    ) -> tuple[list[TagResult], list[str], np.ndarray]:
        """Ranked tags per product, plus the encoded texts and vectors (n, dim) for explanations."""
        texts, vectors = self.encode_products(products)
        with self._lock.read():
            if not len(self.index):
                raise LookupError("the index holds no tags")
            results = self.index.tag_vectors(
                [p.id for p in products],
                vectors,
                top_k,
                threshold,
                include_ancestors,
                titles=self.index.match_texts(products),
            )
        return results, texts, vectors

    def similar_to_tag(self, tag_id: str, top_k: int) -> list[TagScore]:
        with self._lock.read():
            if tag_id not in self.index:
                raise KeyError(tag_id)
            return self.index.similar(tag_id, top_k)

    def similar_to_text(self, text: str, top_k: int) -> list[TagScore]:
        vector = self._batcher.encode([text])  # (1, dim)
        with self._lock.read():
            scores, ids = self.index.search(vector, top_k)
            return [
                TagScore(t, s, self.index.get(t).name)
                for t, s in zip(ids[0], scores[0].tolist(), strict=False)
            ]

    def neighbours(
        self, tag_ids: Sequence[str], k: int, product: np.ndarray
    ) -> dict[str, list[tuple[TagScore, float]]]:
        """The ``k`` tags nearest each given tag (itself excluded), each with its cosine to the
        ``product`` vector (dim,); one search, under one read lock so a concurrent change cannot
        remove a neighbour between the search and the scoring."""
        with self._lock.read():
            present = [t for t in tag_ids if t in self.index]
            if not present:
                return {}
            vectors = np.stack([self.index.tag_vector(t) for t in present])  # (n, dim)
            scores, ids = self.index.search(vectors, k + 1)
            out = {}
            for tag_id, row_ids, row_scores in zip(present, ids, scores.tolist(), strict=True):
                out[tag_id] = [
                    (TagScore(o, s, self.index.get(o).name), float(self.index.tag_vector(o) @ product))
                    for o, s in zip(row_ids, row_scores, strict=False)
                    if o != tag_id
                ][:k]
            return out

    def title_match(self, product: Product, vector: np.ndarray, tag_ids: Sequence[str]) -> dict[str, float]:
        """What an adapted index's title match added to each given tag's score for this product
        (``vector`` (dim,)); empty for an index that does not match titles."""
        with self._lock.read():
            texts = self.index.match_texts([product])
            part = self.index.title_match(vector[None, :], texts)  # (1, tags) or None
            if part is None:
                return {}
            return {t: float(part[0, self.index.row(t)]) for t in tag_ids if t in self.index}

    def title_match_sources(self, product: Product) -> dict[str, dict[str, str]]:
        """Where each tag's title match came from: a name lent by ``adapt --graft`` (``"lent"``), the
        product's own category (``"category"``); see :meth:`TagIndex.title_match_sources`."""
        with self._lock.read():
            return self.index.title_match_sources(product)

    def tag_text(self, tag_id: str) -> str:
        """The text the encoder read for a tag ("" once the tag is retired)."""
        vocab = self._vocab
        tag = vocab.by_id.get(tag_id)
        return tag_text(tag, vocab.by_id, self.index.params.text) if tag is not None else ""

    def duplicates(
        self,
        min_score: float,
        neighbours: int,
        include_siblings: bool = False,
        progress: Progress | None = None,
    ) -> list[DuplicatePair]:
        """Merge candidates (score >= ``min_score``), best evidence first
        (:func:`tagindex.duplicates.find_duplicates`: no ancestor/descendant pairs, siblings only
        when asked for).

        A full scan is O(n^2 dim), so scans are cached until the vocabulary changes: keyed by
        ``min_score`` rounded down to a multiple of :data:`DUPLICATE_STEP` (answers filter the cached
        pairs to the exact value) in an LRU of :data:`DUPLICATE_CACHE_SIZE` entries.
        ``progress`` is called with (tags scanned, total) while a scan runs.
        """
        floor = self._floor(min_score)
        with self._lock.read():
            key = (self.version, floor, neighbours, include_siblings)
            cached = self._cached(key)
            if cached is None:
                cached = find_duplicates(
                    self.index.tags,
                    self.index.vectors,
                    min_score=floor * DUPLICATE_STEP,
                    neighbours=neighbours,
                    include_siblings=include_siblings,
                    exemplar_labels=self.index.exemplar_labels(),
                    progress=progress,
                )
                with self._cache_lock:
                    self._duplicates[key] = cached
                    self._duplicates.move_to_end(key)
                    while len(self._duplicates) > DUPLICATE_CACHE_SIZE:
                        self._duplicates.popitem(last=False)
            elif progress is not None:
                progress(len(self.index), len(self.index))
        if floor * DUPLICATE_STEP == min_score:
            return cached
        return [p for p in cached if p.score >= min_score]

    def duplicates_cached(self, min_score: float, neighbours: int, include_siblings: bool = False) -> bool:
        """Whether :meth:`duplicates` would answer from the cache (no scan)."""
        with self._cache_lock:
            return (self.version, self._floor(min_score), neighbours, include_siblings) in self._duplicates

    def _cached(self, key: tuple[int, int, int, bool]) -> list[DuplicatePair] | None:
        with self._cache_lock:
            cached = self._duplicates.get(key)
            if cached is not None:
                self._duplicates.move_to_end(key)
            return cached

    @staticmethod
    def _floor(min_score: float) -> int:
        floor = math.floor(min_score / DUPLICATE_STEP)
        while floor * DUPLICATE_STEP > min_score:  # the division may round up to the next step
            floor -= 1
        return floor

    def cached_duplicate_scans(self) -> int:
        """Scans held in the duplicates cache (bounded by DUPLICATE_CACHE_SIZE)."""
        with self._cache_lock:
            return len(self._duplicates)

    def search_vocabulary(self, query: str, limit: int) -> list[Tag]:
        """Tags whose name or path contains every word of ``query`` (case-insensitive), best first.

        Exact names come first, then names starting with the query, then the rest by path length.
        """
        words = query.casefold().split()
        folded = " ".join(words)
        vocab = self._vocab
        hits: list[tuple[int, int, str]] = []
        for tag_id, name, path in vocab.search_keys:
            if all(w in path or w in tag_id.casefold() for w in words):
                rank = 0 if name == folded else 1 if name.startswith(folded) else 2 if folded in name else 3
                hits.append((rank, len(path), tag_id))
        hits.sort()
        return [vocab.by_id[t] for _, _, t in hits[:limit]]

    def describe(self) -> dict[str, Any]:
        params = self.index.params
        return {
            "n_tags": len(self.index),
            "dim": self.index.encoder.dim,
            "encoder": params.encoder.model,
            "encoder_backend": params.encoder.backend,
            "index_kind": params.index.kind,
            "description_chars": params.text.description_chars,
            # EncoderParams.translate: text in this language is rendered in English before encoding
            "translate": params.encoder.translate,
            # EncoderParams.ensemble_*: a second encoder reading the untranslated text, and its share
            "ensemble": (
                {"backend": params.encoder.ensemble_backend, "weight": params.encoder.ensemble_weight}
                if params.encoder.ensemble_backend
                else None
            ),
            "fingerprint": self.fingerprint,
            "version": self.version,
            # tagindex.learn's version of the saved index: bumped by every learned or undone judgement
            "index_version": self.index.learned.version if self.index.learned is not None else 0,
        }

    # ---- changes --------------------------------------------------------------------------------
    def add_tags(self, tags: Sequence[Tag]) -> list[str]:
        """Adds tags, searchable as soon as this returns, and saves the index directory.

        Raises:
            ValueError: A tag id already exists or names an unknown parent (nothing is changed).
        """
        ids = [t.id for t in tags]
        with self._change:
            with self._lock.write():
                self.index.add_tags(tags)
                self._changed()
            try:
                self._persist()
            except BaseException:
                with self._lock.write():  # memory must not promise what the disk does not hold
                    self.index.remove_tags(ids)
                    self._changed()
                raise
        return ids

    def remove_tags(self, tag_ids: Sequence[str], cascade: bool = False) -> list[str]:
        """Retires tags (with ``cascade`` their descendants too) and saves the index directory.

        Raises:
            KeyError: An id is unknown.  ValueError: A tag has children and ``cascade`` is off, or
                the change would leave the index without tags (nothing could be tagged, and the
                service would stop being ready); nothing is changed then.
        """
        with self._change:
            with self._lock.write():
                before = self.index.tags
                removed = self.index.remove_tags(tag_ids, cascade=cascade)
                if not len(self.index):
                    self.index.add_tags(before)
                    raise ValueError(
                        f"retiring {len(removed)} tag(s) would leave the index without tags; "
                        "add the replacement tags first"
                    )
                self._changed()
            try:
                self._persist()
            except BaseException:
                gone = set(removed)
                with self._lock.write():
                    self.index.add_tags([t for t in before if t.id in gone])
                    self._changed()
                raise
        return removed

    def _changed(self) -> None:
        self.version += 1
        self._vocab = self._build_vocabulary()
        with self._cache_lock:
            self._duplicates.clear()

    def _persist(self) -> None:
        start = time.perf_counter()
        with self._lock.read():  # searches go on; no change can start (self._change is held)
            self.index.save(self.index_dir)
        logger.info(
            "saved %d tags to %s in %.2fs", len(self.index), self.index_dir, time.perf_counter() - start
        )

    def _build_vocabulary(self) -> _Vocabulary:
        tags = self.index.tags
        by_id = {t.id: t for t in tags}
        paths = {t.id: tag_path(t, by_id) for t in tags}
        keys = [(t.id, t.name.casefold(), " > ".join(paths[t.id]).casefold()) for t in tags]
        return _Vocabulary(by_id, paths, keys)

    # ---- learning (tagindex.service.learning) ---------------------------------------------------
    def mutate(self, fn: Any) -> Any:
        """Runs ``fn(index)`` as a change: serialised with other changes, under the write lock."""
        with self._change, self._lock.write():
            out = fn(self.index)
            self._changed()
        return out

    def persist_with(self, save: Any) -> None:
        """Runs ``save(index, index_dir)`` like a change's save: searches go on, changes wait."""
        with self._change, self._lock.read():
            save(self.index, self.index_dir)
