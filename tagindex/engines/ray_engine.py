"""``tagindex tag --engine ray``: the batches of :mod:`tagindex.engines.shards` on a pool of Ray actors.

Each actor loads the tagging pipeline once -- the saved index (with the encoder backend the index
names, e.g. ONNX int8) and, where the options name them, the reranker and the calibration, with the
compatibility checks of the in-process ``tagindex tag`` -- and tags whole batches with the same
pipeline call; the driver streams the
input, keeps at most two batches queued per actor (memory stays bounded however large the input)
and commits each returned batch as an atomically written Parquet shard, so a killed run resumes
where it stopped. Ray core actors are used rather than a Ray Data pipeline because resuming needs
one output shard per fixed input batch, committed only when complete.

Without an address an embedded local Ray starts and stops with the run; with ``address`` the run
joins an existing cluster, whose nodes need ``tagindex`` installed and the index directory (and the
output directory, which only the driver writes) at the same paths, e.g. on a shared file system.

GPU recipe: ``--gpus-per-worker 1`` (or 0.5 to pack two actors on a GPU) reserves GPUs for the
actors; Ray then exposes one to each actor through ``CUDA_VISIBLE_DEVICES`` and the encoder picks
``cuda`` by itself. A cluster without enough GPUs is refused before any actor is created (an actor
asking for a GPU no node has would otherwise wait for one forever).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tagindex.engines.shards import (
    Batch,
    Executor,
    Progress,
    RunSummary,
    ShardResult,
    TagOptions,
    load_pipeline,
    run_sharded,
    tag_batch,
)
from tagindex.errors import InputError, ModelError, TagindexError
from tagindex.schema import Product

logger = logging.getLogger(__name__)

# Batches queued per actor: one running, one waiting, so an actor never idles while the driver reads.
_QUEUED_PER_ACTOR = 2


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"--engine ray needs Ray: pip install 'tagindex[scale]' ({exc})") from None
    return ray


class ShardTagger:
    """A Ray actor's state: one loaded tagging pipeline that tags batch after batch."""

    def __init__(self, index_dir: str, options: TagOptions) -> None:
        self.options = options
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.error: TagindexError | None = None
        try:
            self.pipeline: Any = load_pipeline(index_dir, options)
        except TagindexError as exc:  # kept, so the driver raises the same user error (CLI exit 2)
            self.error = exc
        except ValueError as exc:  # an option value the pipeline refuses (e.g. top-k 0)
            self.error = InputError(str(exc))

    def ready(self) -> tuple[str, TagindexError | None]:
        """Returns once the pipeline is loaded: this worker's name and the user error loading it raised,
        if any, so such errors surface before any batch is sent."""
        return self.name, self.error

    def tag(self, batch: Batch) -> ShardResult:
        result = tag_batch(self.pipeline, batch, self.options)
        result.worker = self.name
        return result


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[dict[str, float]]:
    """Joins ``address`` or starts an embedded local Ray; yields the cluster's resources.

    A Ray already initialised by the caller is used as is and left running.
    """
    ray = _ray()
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise InputError(f"cannot start or join {where}: {exc}") from None
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


def ray_executor(
    index_dir: str | os.PathLike[str],
    options: TagOptions,
    num_workers: int,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
) -> Executor:
    """An executor running batches on ``num_workers`` actors of an initialised Ray.

    A batch whose actor dies is retried once on the restarted actor; if that fails too, it comes
    back with ``error`` set, and the driver reports its rows and leaves the shard for a rerun.
    """
    ray = _ray()

    def execute(batches: Iterator[Batch]) -> Iterator[ShardResult]:
        actor_class = ray.remote(ShardTagger).options(
            num_cpus=cpus_per_worker, num_gpus=gpus_per_worker, max_restarts=1, max_task_retries=1
        )
        actors = [actor_class.remote(str(Path(index_dir).resolve()), options) for _ in range(num_workers)]
        try:
            loaded = ray.get([a.ready.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            for actor in actors:
                ray.kill(actor)
            raise ModelError(f"{index_dir}: a Ray worker cannot load the index: {_first_line(exc)}") from None
        for _, error in loaded:
            if error is not None:
                for actor in actors:
                    ray.kill(actor)
                raise error
        names = [name for name, _ in loaded]
        logger.info("%d Ray workers ready: %s", len(names), ", ".join(names))
        queued = [0] * len(actors)
        in_flight: dict[Any, tuple[int, str]] = {}
        source = iter(batches)
        exhausted = False

        def refill() -> None:
            nonlocal exhausted
            for slot in sorted(range(len(actors)), key=queued.__getitem__):
                while not exhausted and queued[slot] < _QUEUED_PER_ACTOR:
                    batch = next(source, None)
                    if batch is None:
                        exhausted = True
                        return
                    in_flight[actors[slot].tag.remote(batch)] = (slot, batch.name)
                    queued[slot] += 1

        try:
            refill()
            while in_flight:
                (ref,), _ = ray.wait(list(in_flight), num_returns=1)
                slot, name = in_flight.pop(ref)
                queued[slot] -= 1
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    logger.error("shard %s: worker failed: %s", name, _first_line(exc))
                    result = ShardResult(name, [], [], error=f"worker failed: {_first_line(exc)}")
                yield result
                refill()
        finally:
            for actor in actors:
                ray.kill(actor)

    return execute


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def tag_with_ray(
    index_dir: str | os.PathLike[str],
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: TagOptions | None = None,
    address: str | None = None,
    num_workers: int | None = None,
    batch_size: int = 4096,
    gpus_per_worker: float = 0.0,
    progress: Progress | None = None,
) -> RunSummary:
    """Tags ``src`` into Parquet shards under ``out_dir`` on Ray (see :func:`run_sharded`).

    Args:
        index_dir: Saved index directory, readable at the same path on every node.
        src: Products file or directory of product files (JSONL, CSV, Parquet).
        out_dir: Output directory; rerunning with the same arguments resumes.
        options: Tagging options: the pipeline's arguments (see :class:`TagOptions`).
        address: Ray cluster address; None starts an embedded local Ray for this run.
        num_workers: Actors (one CPU each); default: every CPU of the local machine or cluster.
        batch_size: Input rows per task and per output shard.
        gpus_per_worker: GPUs each actor reserves (0 = CPU only).
        progress: Called with the running summary after every committed shard.

    Raises:
        InputError: Bad source/output, Ray missing, or more workers/GPUs asked than the cluster has.
        ModelError: A worker cannot load the index.
        CompatibilityError: The index, reranker, calibration and options do not belong together.
    """
    options = (options or TagOptions()).resolved()  # absolute paths: actors may run elsewhere
    if num_workers is not None and num_workers < 1:
        raise InputError(f"--num-workers must be at least 1, got {num_workers}")
    if gpus_per_worker < 0:
        raise InputError(f"--gpus-per-worker must not be negative, got {gpus_per_worker}")
    # An embedded Ray gets at least one CPU per asked worker, or the extra actors would never start.
    local_cpus = None if address else max(os.cpu_count() or 1, num_workers or 1)
    with ray_session(address, local_cpus) as resources:
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        workers = num_workers or max(1, int(cpus))
        if workers > cpus:
            raise InputError(f"--num-workers {workers} needs {workers} CPUs; the Ray cluster has {cpus:g}")
        if gpus_per_worker and workers * gpus_per_worker > gpus:
            raise InputError(
                f"--gpus-per-worker {gpus_per_worker:g} x {workers} workers needs "
                f"{workers * gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}"
            )
        execute = ray_executor(index_dir, options, workers, gpus_per_worker=gpus_per_worker)
        return run_sharded(
            index_dir,
            src,
            out_dir,
            execute,
            options=options,
            batch_size=batch_size,
            engine="ray",
            workers=workers,
            progress=progress,
        )


# ---- encoding for exemplar indexes -------------------------------------------------------------------
class ProductEncoder:
    """A Ray actor's state: one loaded index whose encoder turns product chunks into vectors."""

    def __init__(self, index_dir: str, description_chars: int | None = None) -> None:
        from tagindex.engines.shards import load_index

        self.index = load_index(index_dir, TagOptions(description_chars=description_chars))

    def encode(self, number: int, products: Sequence[Product]) -> tuple[int, np.ndarray]:
        return number, self.index.encode_products(products)


def encode_with_ray(
    index_dir: str | os.PathLike[str],
    chunks: Iterable[Sequence[Product]],
    num_workers: int | None = None,
    address: str | None = None,
    description_chars: int | None = None,
) -> Iterator[np.ndarray]:
    """Product vectors, chunk by chunk in input order, encoded by a pool of Ray actors.

    Each actor loads the index once and encodes with ``index.encode_products``: the vectors the
    index itself would store for these products as exemplars (same encoder, text and fusion). At
    most two chunks per actor are in flight, so memory stays bounded however many chunks come.

    Args:
        index_dir: Saved index directory (readable at the same path on every node).
        chunks: Products, in chunks (one task each).
        num_workers: Actors, one CPU each (default: every CPU of the machine or cluster).
        address: Ray cluster to join; None starts (and stops) an embedded local Ray, unless the caller
            already initialised one.
        description_chars: Override of the index's description budget.

    Yields:
        One (len(chunk), dim) float32 array per chunk, in the order of ``chunks``.

    Raises:
        InputError: Ray missing, or more workers asked than the cluster has CPUs.
        ModelError: A worker cannot load the index.
    """
    ray = _ray()
    local_cpus = None if address else max(os.cpu_count() or 1, num_workers or 1)
    with ray_session(address, local_cpus) as resources:
        cpus = resources.get("CPU", 0.0)
        workers = num_workers or max(1, int(cpus))
        if workers > cpus:
            raise InputError(f"--num-workers {workers} needs {workers} CPUs; the Ray cluster has {cpus:g}")
        actor_class = ray.remote(ProductEncoder).options(num_cpus=1, max_restarts=1, max_task_retries=1)
        actors = [
            actor_class.remote(str(Path(index_dir).resolve()), description_chars) for _ in range(workers)
        ]
        try:
            pending: dict[Any, int] = {}
            done: dict[int, np.ndarray] = {}
            source = enumerate(chunks)
            next_out, submitted, exhausted = 0, 0, False
            while True:
                while not exhausted and len(pending) < _QUEUED_PER_ACTOR * workers:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    number, chunk = item
                    pending[actors[submitted % workers].encode.remote(number, list(chunk))] = number
                    submitted += 1
                if not pending and not done:
                    return
                if next_out not in done:
                    (ref,), _ = ray.wait(list(pending), num_returns=1)
                    pending.pop(ref)
                    try:
                        number, vectors = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        raise ModelError(
                            f"{index_dir}: a Ray encoding worker failed: {_first_line(exc)}"
                        ) from None
                    done[number] = vectors
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
        finally:
            for actor in actors:
                ray.kill(actor)
