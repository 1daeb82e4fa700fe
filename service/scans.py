"""Duplicate scans in the background, with progress, so the page can show how far a scan has got.

A scan of a large vocabulary takes seconds (10,595 Shopify tags: ~3 s on an idle core, 20 s and
more on a busy machine). The page starts one with ``POST /v1/tags/duplicates/scan``, polls its
progress, and then reads ``GET /v1/tags/duplicates``, which the finished scan has put in the
engine's cache (kept until the vocabulary changes). One scan runs per key at a time; a request for
a key whose result is cached answers at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from tagindex.service.engine import Engine

logger = logging.getLogger(__name__)

KEPT_JOBS = 16  # finished jobs remembered (their results live in the engine's cache)


@dataclass
class ScanJob:
    """One scan: its progress in tags scanned, its state and, when done, how many pairs it found."""

    state: str = "running"  # running, ready, failed
    done: int = 0
    total: int = 0
    pairs: int | None = None
    error: str | None = None
    cached: bool = False  # answered from the engine's cache, no scan ran
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "pairs": self.pairs,
            "error": self.error,
            "cached": self.cached,
            "elapsed_s": round(end - self.started, 3),
        }


class DuplicateScans:
    """Background scans keyed by (engine, vocabulary version, min_score, neighbours, siblings)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[tuple[int, int, float, int, bool], ScanJob] = OrderedDict()

    @staticmethod
    def _key(
        engine: Engine, min_score: float, neighbours: int, siblings: bool
    ) -> tuple[int, int, float, int, bool]:
        return (id(engine), engine.version, min_score, neighbours, siblings)

    def status(self, engine: Engine, min_score: float, neighbours: int, siblings: bool) -> ScanJob | None:
        """The job for this key, a finished one if the engine has the result cached, else None."""
        with self._lock:
            job = self._jobs.get(self._key(engine, min_score, neighbours, siblings))
        if job is None:
            job = self._cached(engine, min_score, neighbours, siblings)
        return job

    def start(self, engine: Engine, min_score: float, neighbours: int, siblings: bool) -> ScanJob:
        """Starts a scan unless one for this key runs or its result is cached; returns its job."""
        key = self._key(engine, min_score, neighbours, siblings)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state == "running":
                return job
            cached = self._cached(engine, min_score, neighbours, siblings)
            if cached is not None:
                job = cached
            else:
                job = ScanJob(total=len(engine))
                thread = threading.Thread(
                    target=self._run,
                    args=(job, engine, min_score, neighbours, siblings),
                    name="duplicate-scan",
                    daemon=True,
                )
                thread.start()
            self._jobs[key] = job
            while len(self._jobs) > KEPT_JOBS:
                oldest = next(iter(self._jobs))
                if self._jobs[oldest].state == "running":
                    break  # running scans stay findable; the list is bounded by the keys asked for
                self._jobs.popitem(last=False)
        return job

    @staticmethod
    def _cached(engine: Engine, min_score: float, neighbours: int, siblings: bool) -> ScanJob | None:
        """A finished job when the engine holds the result in its cache, else None."""
        if not engine.duplicates_cached(min_score, neighbours, siblings):
            return None
        pairs = len(engine.duplicates(min_score, neighbours, siblings))
        return ScanJob("ready", len(engine), len(engine), pairs, cached=True, finished=time.monotonic())

    @staticmethod
    def _run(job: ScanJob, engine: Engine, min_score: float, neighbours: int, siblings: bool) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            job.pairs = len(engine.duplicates(min_score, neighbours, siblings, progress=progress))
            job.state = "ready"
        except Exception as exc:  # reported to the page; the service keeps serving
            logger.exception("duplicate scan failed")
            job.error = f"{type(exc).__name__}: {exc}"
            job.state = "failed"
        finally:
            job.finished = time.monotonic()
