"""Feedback that teaches the live index at once, the review queue, and index version switching.

:class:`LiveLearner` sits between the feedback table (the source of truth: a judgement is
acknowledged once SQLite has committed it) and the engine's index:

- :meth:`LiveLearner.apply` learns committed feedback rows (:func:`tagindex.learn.learn`, the row id
  is the judgement id) under the engine's write lock, so the next ``/v1/tag`` sees them, then saves
  the learned state into the index directory (:func:`tagindex.learn.save_learned`, atomic).
- :meth:`LiveLearner.delete` removes rows from the table and undoes them in the index.
- :meth:`LiveLearner.sync` (at start-up) reconciles the two after a crash: rows committed after the
  last save are learned, judgements whose rows were deleted are undone. A kill at any moment
  therefore loses nothing acknowledged.

The zero-shot gate is not refitted on each judgement (``refit_gate`` off: a refit over thousands of
exemplars takes seconds); ``tagindex retrain`` refits it with the new encoder.

:class:`ReviewPool` holds the catalog products the review queue chooses from (encoded once, with a
vector cache beside the index).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tagindex.service.feedback import FeedbackRecord, FeedbackStore

from tagindex.active import QueueParams, ReviewPick, review_queue
from tagindex.io import load_products
from tagindex.learn import learn, save_learned, state_of, undo
from tagindex.schema import Product

logger = logging.getLogger(__name__)

SOURCE = "feedback"  # judgement ids of this source are feedback row ids (tagindex.learn.Judgement)


def _product(r: FeedbackRecord) -> Product:
    return Product(r.product_id, r.title, r.description, dict(r.attributes))


class LiveLearner:
    """Applies feedback rows to an engine's index and keeps the saved index in step (module doc)."""

    def __init__(self, engine: Any, store: FeedbackStore) -> None:
        self.engine = engine
        self.store = store
        state = state_of(engine.index)
        state.refit_gate = False
        self.saves = 0
        self.last_save_seconds = 0.0

    def sync(self) -> dict[str, int]:
        """Learns rows committed after the index's last save; undoes judgements whose rows are gone."""
        state = state_of(self.engine.index)
        stored = self.store.ids()
        gone = [j.id for j in state.judgements if j.source == SOURCE and j.id not in stored]
        done = state.applied_through.get(SOURCE, 0)
        fresh = [r for r in self.store if r.id is not None and r.id > done]
        changed = 0
        if gone:
            changed += len(self._change(lambda index: undo(index, gone, source=SOURCE)))
        if fresh:
            changed += self._learn(fresh)
        if changed:
            self._save()
        logger.info("feedback sync: %d row(s) learned, %d undone", len(fresh), len(gone))
        return {"learned": len(fresh), "undone": len(gone)}

    def apply(self, records: Sequence[FeedbackRecord]) -> int:
        """Learns committed rows now (the next /v1/tag sees them) and saves; returns the count."""
        n = self._learn(records)
        if n:
            self._save()
        return n

    def delete(self, ids: Sequence[int]) -> list[int]:
        """Deletes feedback rows and undoes their judgements; returns the ids that existed."""
        removed = self.store.delete(ids)
        if removed:
            self._change(lambda index: undo(index, removed, source=SOURCE))
            self._save()
        return removed

    @property
    def version(self) -> int:
        return state_of(self.engine.index).version

    # ---- internals ------------------------------------------------------------------------------
    def _learn(self, records: Sequence[FeedbackRecord]) -> int:
        known = [r for r in records if r.id is not None and r.tag in self.engine.index]
        if len(known) < len(records):
            logger.warning("%d feedback row(s) name retired tags; not learned", len(records) - len(known))
        if not known:
            return 0
        products = list({r.product_id: _product(r) for r in known}.values())
        # Encoded outside the lock, through the shared batcher, so searches go on meanwhile.
        _, vectors = self.engine.encode_products(products)
        self._change(
            lambda index: learn(
                index,
                products,
                judgements=[(r.product_id, r.tag, r.action) for r in known],
                vectors=vectors,
                ids=[int(r.id) for r in known if r.id is not None],
                source=SOURCE,
            )
        )
        return len(known)

    def _change(self, fn: Any) -> Any:
        return self.engine.mutate(fn)

    def _save(self) -> None:
        start = time.perf_counter()
        self.engine.persist_with(lambda index, directory: save_learned(index, directory))
        self.saves += 1
        self.last_save_seconds = time.perf_counter() - start


class ReviewPool:
    """Catalog products the review queue picks from, encoded once (vector cache beside the index)."""

    def __init__(self, path: Path, cache_dir: Path | None = None) -> None:
        self.path = path
        self.cache_dir = cache_dir
        self.products = load_products(path)
        self._vectors: Any = None
        self._key: tuple[int, str] | None = None
        self._lock = threading.Lock()

    def next(self, engine: Any, store: FeedbackStore, n: int, seed: int = 13) -> list[ReviewPick]:
        """The ``n`` products whose judgement teaches the index most, skipping judged ones."""
        with self._lock:
            key = (id(engine.index), engine.index.encoder.fingerprint())
            if self._vectors is None or self._key != key:
                self._vectors = engine.index.encode_products(self.products, cache_dir=self.cache_dir)
                self._key = key
        judged = store.product_ids()
        with engine.reading():
            return review_queue(
                engine.index,
                self.products,
                n,
                vectors=self._vectors,
                params=QueueParams(seed=seed),
                exclude=judged,
            )
