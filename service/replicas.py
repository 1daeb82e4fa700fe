"""Several ``tagindex serve`` processes over one index directory.

Each replica polls the index manifest (its sha256 changes with every save, since it lists every
file's checksum and the save time) and reloads the index when another replica saved a newer one,
so a tag added or retired on one replica is served by all within ``poll_seconds`` plus a load.
Changes are serialised across processes by an exclusive ``flock`` on ``.<index>.lock`` beside the
index directory (not inside it: a save replaces the directory); a change first catches up with the
directory, so two replicas changing the vocabulary never overwrite each other's tags.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagindex.service.engine import Engine
from tagindex.service.settings import Settings
from tagindex.service.stage import RerankStage, StageConfigError

from tagindex.encoders import Encoder
from tagindex.index import TagIndex
from tagindex.schema import Tag
from tagindex.store import MANIFEST, IndexFormatError, read_manifest, resolve

logger = logging.getLogger(__name__)


def manifest_digest(index_dir: Path) -> str | None:
    """sha256 of the live version's manifest, or None while there is no loadable one.

    The live version is the one ``CURRENT`` names (older plain layouts: the directory itself), so a
    save, which switches the pointer to a new version, changes the digest.
    """
    try:
        root, _ = resolve(index_dir, "tagindex")
        return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()
    except (IndexFormatError, FileNotFoundError):
        return None


class ReplicaEngine(Engine):
    """An :class:`Engine` that follows changes other processes save to its index directory.

    Args:
        index_dir: The shared index directory.
        index: The index already loaded from it (default: loaded here).
        max_batch: Encoder batch limit (see :class:`Engine`).
        poll_seconds: How often the manifest is checked; 0 turns the watcher off (changes made here
            still take the cross-process lock and catch up first).
    """

    index: TagIndex

    def __init__(
        self,
        index_dir: str | Path,
        index: TagIndex | None = None,
        max_batch: int = 64,
        poll_seconds: float = 2.0,
    ) -> None:
        super().__init__(index_dir, index, max_batch=max_batch)
        self._disk_digest = manifest_digest(self.index_dir)
        self._lock_file = self.index_dir.parent / f".{self.index_dir.name}.lock"
        self.reloads = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if poll_seconds > 0:
            self._watcher = threading.Thread(
                target=self._watch, args=(poll_seconds,), name="index-watcher", daemon=True
            )
            self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        super().close()

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.sync()
            except Exception as exc:  # keep serving the loaded index; the next poll tries again
                logger.warning("index reload from %s failed (will retry): %s", self.index_dir, exc)

    def sync(self) -> bool:
        """Reloads the index if another process saved a newer one; returns whether it did."""
        with self._change:
            return self._catch_up()

    def _catch_up(self) -> bool:
        """Reload step; the caller holds ``self._change``."""
        digest = manifest_digest(self.index_dir)
        if digest is None or digest == self._disk_digest:
            return False
        saved = read_manifest(self.index_dir, "tagindex", verify=False)
        if saved.get("encoder", {}).get("fingerprint", "") != self.fingerprint:
            raise IndexFormatError(f"{self.index_dir}: the saved index changed encoder; restart the service")
        # verify=True: a directory replaced while it is read fails its checksums and is retried later.
        fresh = TagIndex.load(self.index_dir, encoder=self.index.encoder)
        if manifest_digest(self.index_dir) != digest:
            return False  # saved again while loading: the next poll loads the newer one
        with self._lock.write():
            self.index = fresh
            self._changed()
        self._disk_digest = digest
        self.reloads += 1
        logger.info("reloaded %d tags from %s (saved by another process)", len(fresh), self.index_dir)
        return True

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialises vocabulary changes across processes (and threads: each call opens its own file)."""
        with self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                with self._change:
                    self._catch_up()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def add_tags(self, tags: Sequence[Tag]) -> list[str]:
        with self._exclusive():
            return super().add_tags(tags)

    def remove_tags(self, tag_ids: Sequence[str], cascade: bool = False) -> list[str]:
        with self._exclusive():
            return super().remove_tags(tag_ids, cascade=cascade)

    def _persist(self) -> None:
        super()._persist()
        self._disk_digest = manifest_digest(self.index_dir)  # our own save: nothing to reload

    def persist_with(self, save: Any) -> None:
        """A learning save, serialised with other replicas' saves by the cross-process lock."""
        with self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                before = manifest_digest(self.index_dir)
                super().persist_with(save)
                if before == self._disk_digest:  # nothing else was saved since our last load
                    self._disk_digest = manifest_digest(self.index_dir)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def open_engine(settings: Settings, index_dir: Path, encoder: Encoder | None = None) -> Engine:
    """Loads an index directory into a warmed-up engine with its rerank stage (start-up and reload)."""
    index = TagIndex.load(index_dir, encoder=encoder)
    # A replica engine: re-reads the index when another process sharing index_dir changed it.
    engine = ReplicaEngine(
        index_dir, index, max_batch=settings.max_batch, poll_seconds=settings.index_poll_seconds
    )
    try:
        engine.encode_products([])  # nothing to do, but proves the batcher is alive
        engine.similar_to_text("warm-up", 1)  # the first forward pass is slow; pay it before serving
        # reranker and calibration: loaded once, refused when they do not belong together
        engine.stage = RerankStage.from_settings(settings, engine)
    except StageConfigError as exc:
        logger.error("cannot start: %s", exc)  # one line before uvicorn's traceback
        engine.close()
        raise
    except BaseException:
        engine.close()
        raise
    return engine
