"""Sharded, resumable batch tagging: the engine-independent half of ``tagindex tag --engine ray``.

A products source (one file, or a directory of JSONL/CSV/Parquet files) is read as a stream through
:func:`tagindex.io.stream_records` (the loaders' limits and reasons) and cut into numbered batches of
``batch_size`` input rows. Each batch is tagged by a :class:`tagindex.pipeline.TaggingPipeline` built
and called exactly as the in-process ``tagindex tag`` builds and calls it (:class:`TagOptions` carries
its keyword arguments through unchanged, so every tag option works here), and committed as one
Parquet shard
``OUT_DIR/part-<source>-<n>.parquet``, written to a temporary name and renamed, so a shard either
exists complete or not at all. A rerun re-reads the source (cheap next to encoding), skips every
batch whose shard exists and tags the rest; the batch boundaries depend only on the input and
``batch_size``, which ``OUT_DIR/_run.json`` pins together with the index and the options.

Rows that cannot be read or tagged are never dropped: each is written with its source, line and
reason to ``OUT_DIR/_failures.jsonl`` (per shard under ``OUT_DIR/_failures/`` while running).
Bookkeeping names start with ``_`` or ``.`` so ``pyarrow.parquet.read_table(OUT_DIR)`` and
``pandas.read_parquet(OUT_DIR)`` see only the shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from tagindex.errors import InputError
from tagindex.io import (
    PRODUCT_FIELDS,
    DataError,
    _continuation,
    check_columns,
    product_from_row,
    stream_records,
    write_jsonl,
)
from tagindex.schema import Product
from tagindex.store import MANIFEST, read_manifest

if TYPE_CHECKING:
    from tagindex.pipeline import TaggingPipeline

logger = logging.getLogger(__name__)

RUN_KIND = "tagindex-sharded-run"
RUN_FORMAT_VERSION = 2  # 2: `assigned` and `extra` columns, options as the pipeline's arguments
RUN_FILE = "_run.json"
SUMMARY_FILE = "_summary.json"
FAILURES_FILE = "_failures.jsonl"
FAILURES_DIR = "_failures"
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_SUFFIXES[".pq"] = "parquet"

# Run-line fields as Parquet columns: `name` and `ancestor_of` are the optional fields of a run line's
# tags (null where the JSON line omits them). Scores are doubles so the 6-decimal values of the JSON
# run survive unchanged.
TAG_STRUCT = pa.struct(
    [
        pa.field("tag", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("ancestor_of", pa.string()),
    ]
)
# `assigned`: the calibrated decision of `--decide` (null without it), as the JSON line's list.
ASSIGNED_STRUCT = pa.struct(
    [
        pa.field("tag", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("level", pa.int64(), nullable=False),
        pa.field("ancestor_of", pa.string()),
    ]
)
SHARD_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("tags", pa.list_(TAG_STRUCT)),
        pa.field("assigned", pa.list_(ASSIGNED_STRUCT)),
        # Any further field a run line gains (a new pipeline option), as JSON text; null when none.
        pa.field("extra", pa.string()),
    ]
)
_TYPED_FIELDS = ("id", "tags", "assigned")
# TaggingPipeline.from_files arguments that name files: resolved to absolute paths, so actors on
# other nodes (or in another working directory) open the same files.
_PATH_ARGS = ("reranker", "calibration")


@dataclass(frozen=True)
class TagOptions:
    """Everything ``tagindex tag`` is asked for, as the tagging pipeline takes it.

    ``tag`` and ``pipeline`` are passed through unchanged, so an option the pipeline gains reaches
    every worker without a change here.

    Attributes:
        tag: Keyword arguments of :meth:`TaggingPipeline.tag` (``top_k``, ``threshold``,
            ``include_ancestors``, ``decide``, ...).
        pipeline: Keyword arguments of :meth:`TaggingPipeline.from_files` (``reranker`` and
            ``calibration`` paths, ``depth``, ``hierarchy``, ...).
        description_chars: Override of the index's description budget (``--description-chars``).
        language: Also write each tag's name in this language (``--language``).
        columns: Our product field -> the files' column (``--id-col`` ...).
    """

    tag: Mapping[str, Any] = field(default_factory=lambda: {"top_k": 10})
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    description_chars: int | None = None
    language: str | None = None
    columns: Mapping[str, str] | None = None

    @classmethod
    def of(
        cls, top_k: int = 10, threshold: float | None = None, ancestors: bool = False, **rest: Any
    ) -> TagOptions:
        """The common case: ranking options only (``rest``: the other attributes)."""
        return cls(tag={"top_k": top_k, "threshold": threshold, "include_ancestors": ancestors}, **rest)

    def resolved(self) -> TagOptions:
        """These options with the pipeline's file arguments as absolute paths and columns checked.

        Raises:
            InputError: A named file does not exist, or the column map names an unknown field.
        """
        pipeline = dict(self.pipeline)
        for name in _PATH_ARGS:
            if pipeline.get(name) is not None:
                path = Path(pipeline[name])
                if not path.exists():
                    raise InputError(f"{path}: no such file or directory (--{name})")
                pipeline[name] = str(path.resolve())
        columns = check_columns(self.columns, PRODUCT_FIELDS) or None
        return TagOptions(dict(self.tag), pipeline, self.description_chars, self.language, columns)

    def to_dict(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}


@dataclass
class Batch:
    """A run of consecutive input rows of one source file: the unit of work and of output.

    Attributes:
        name: Shard name (``<source path with / as __>-<5-digit batch number>``).
        source: The source file.
        products: The rows that parsed, in input order.
        lines: Line (JSONL/CSV) or 1-based row (Parquet) of each product.
        failures: Rows that could not be read, as failure records.
    """

    name: str
    source: str
    products: list[Product] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.products) + len(self.failures)


@dataclass
class ShardResult:
    """A tagged batch, ready to commit: run lines plus every failed row of the batch."""

    name: str
    records: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    seconds: float = 0.0
    worker: str = ""
    error: str | None = None  # set when the worker failed: the shard stays unfinished


@dataclass
class RunSummary:
    """What a sharded run did (also written to ``OUT_DIR/_summary.json``).

    Attributes:
        products: Input rows seen, finished shards included.
        tagged: Products tagged by this run (rows of shards written now).
        failures: Rows in the failures file (unreadable, untaggable or in an unfinished shard).
        shards_written: Shards committed by this run.
        shards_skipped: Shards already finished by an earlier run.
        shards_unfinished: Shards whose worker failed; a rerun retries them.
        seconds: Wall time of this run.
        products_per_s: ``tagged`` per second of wall time (worker start-up included).
        steady_products_per_s: Products of the shards committed after the first, per second between
            the first and the last commit: the rate once workers are up (0 with fewer than 2 shards).
    """

    engine: str
    workers: int
    products: int = 0
    tagged: int = 0
    failures: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    shards_unfinished: int = 0
    seconds: float = 0.0
    products_per_s: float = 0.0
    steady_products_per_s: float = 0.0
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[RunSummary], None]
Executor = Callable[[Iterator[Batch]], Iterator[ShardResult]]


# ---- the tagging call ---------------------------------------------------------------------------------
def load_index(index_dir: str | os.PathLike[str], options: TagOptions) -> Any:
    """Loads a saved index the way ``tagindex tag`` does (``--description-chars`` applied)."""
    from tagindex.index import TagIndex

    index = TagIndex.load(index_dir)
    if options.description_chars is not None:
        index.params.text.description_chars = options.description_chars
    return index


def load_pipeline(index_dir: str | os.PathLike[str], options: TagOptions) -> TaggingPipeline:
    """The index with the reranker and calibration the options name, checked as ``tagindex tag`` checks
    them, then tried on one product so that options the pipeline refuses (``decide`` without a
    calibration, a bad depth, an option it does not know) fail here, before any batch.

    Raises:
        CompatibilityError: The parts or the options do not belong together.
        ArtifactError: An index, reranker or calibration cannot be read.
    """
    from tagindex.pipeline import TaggingPipeline

    pipeline = TaggingPipeline.from_files(load_index(index_dir, options), **options.pipeline)
    try:
        tag_products(pipeline, [Product("probe", "probe")], options)
    except TypeError as exc:  # an option this pipeline does not take: a usage error, not a row's
        raise InputError(f"tag options: {exc}") from None
    return pipeline


def tag_products(
    pipeline: TaggingPipeline, products: Sequence[Product], options: TagOptions
) -> list[dict[str, Any]]:
    """Run lines for ``products``: exactly the call and the format of the in-process ``tagindex tag``."""
    records = [t.to_record() for t in pipeline.tag(products, **options.tag)]
    if options.language:
        by_id = pipeline.index.by_id
        for record in records:
            for hit in record.get("tags", []):
                if hit["tag"] in by_id:
                    hit["name"] = by_id[hit["tag"]].name_in(options.language)
    return records


def failure(source: str, line: int, product_id: str | None, reason: str) -> dict[str, Any]:
    return {"source": source, "line": line, "id": product_id, "reason": reason}


def tag_batch(pipeline: Any, batch: Batch, options: TagOptions) -> ShardResult:
    """Tags a batch; when the batch call fails, products are retried one by one to name the culprits."""
    start = time.perf_counter()
    failures = list(batch.failures)
    if not batch.products:  # a batch of failed rows only
        return ShardResult(batch.name, [], failures, time.perf_counter() - start)
    try:
        records = tag_products(pipeline, batch.products, options)
    except Exception as exc:  # any encoder/index error: isolate the rows that cause it, keep the rest
        logger.warning("%s: batch tagging failed (%s); retrying its products one by one", batch.name, exc)
        records = []
        for product, line in zip(batch.products, batch.lines, strict=True):
            try:
                records.extend(tag_products(pipeline, [product], options))
            except Exception as row_exc:  # reported per row, never dropped
                failures.append(
                    failure(
                        batch.source, line, product.id, f"tagging failed: {type(row_exc).__name__}: {row_exc}"
                    )
                )
    failures.sort(key=lambda f: f["line"])
    return ShardResult(batch.name, records, failures, time.perf_counter() - start)


# ---- reading the source as a stream --------------------------------------------------------------------
def list_sources(src: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """The root and the product files of ``src`` (a file, or a directory searched recursively).

    Raises:
        InputError: ``src`` does not exist, has an unknown type or holds no product files.
    """
    root = Path(src)
    if root.is_file():
        if _format_of(root) is None:
            raise InputError(f"{root}: unknown file type (expected .csv, .jsonl/.json or .parquet)")
        return root.parent, [root]
    if not root.is_dir():
        raise InputError(f"{root}: no such file or directory")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and _format_of(p) is not None and not p.name.startswith((".", "_"))
    )
    if not files:
        raise InputError(f"{root}: no .jsonl, .csv or .parquet product files in this directory")
    return root, files


def _format_of(path: Path) -> str | None:
    return _SUFFIXES.get(path.suffix.lower())


def shard_stem(root: Path, source: Path) -> str:
    """A file-name-safe, unique stem for a source file below ``root``."""
    return "__".join(source.relative_to(root).parts)


def _records(source: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """The rows of one file; a file that cannot be read on ends with one row naming where and why."""
    line = 0
    try:
        for line, record in stream_records(source):
            yield line, record
    except DataError as exc:
        # Not past this point (a broken Parquet row group, a CSV field over the limit): the rows
        # after it cannot be told apart, so the rest of the file is one failure, reported, never skipped.
        yield line + 1, f"the rest of this file cannot be read: {exc}"


def iter_batches(
    root: Path, sources: Sequence[Path], batch_size: int, columns: Mapping[str, str] | None = None
) -> Iterator[Batch]:
    """Cuts the sources into batches of ``batch_size`` input rows, streaming.

    Rows are read with the loaders' limits (:func:`tagindex.io.stream_records`,
    :func:`tagindex.io.product_from_row`). Every row lands in exactly one batch, as a product or as a
    failure (unreadable row, a row over a limit, duplicate id), except the variant rows of a Shopify
    export (an id seen before with an empty title), which ``tagindex tag`` skips too; boundaries
    depend only on the files and ``batch_size``, so reruns cut the same batches.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    columns = check_columns(columns, PRODUCT_FIELDS)
    # First place of every id (source number, line) packed in one int: ~100 bytes an id.
    seen: dict[str, int] = {}
    for number, source in enumerate(sources):
        stem, shown = shard_stem(root, source), str(source)
        count = 0
        batch = Batch(f"{stem}-{count:05d}", shown)
        for line, record in _records(source):
            try:
                if isinstance(record, str):
                    raise ValueError(record)
                if _continuation(record, seen.keys(), columns):
                    continue
                product = product_from_row(record, columns)
                first = seen.setdefault(product.id, (number << 40) | line)
                if first != (number << 40) | line:
                    where = f"{sources[first >> 40]}:{first & ((1 << 40) - 1)}"
                    raise ValueError(f"duplicate id '{product.id}' (first at {where})")
                batch.products.append(product)
                batch.lines.append(line)
            except ValueError as exc:
                raw_id = record.get(columns.get("id", "id")) if isinstance(record, dict) else None
                batch.failures.append(failure(shown, line, None if raw_id is None else str(raw_id), str(exc)))
            if batch.n_rows >= batch_size:
                yield batch
                count += 1
                batch = Batch(f"{stem}-{count:05d}", shown)
        if batch.n_rows:
            yield batch


# ---- output ----------------------------------------------------------------------------------------------
def _struct_row(item: Mapping[str, Any], struct: pa.StructType) -> dict[str, Any]:
    return {struct.field(i).name: item.get(struct.field(i).name) for i in range(struct.num_fields)}


def records_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """Run lines as a table of :data:`SHARD_SCHEMA`."""
    rows = []
    for r in records:
        extra = {k: v for k, v in r.items() if k not in _TYPED_FIELDS}
        assigned = r.get("assigned")
        rows.append(
            {
                "id": r["id"],
                "tags": [_struct_row(t, TAG_STRUCT) for t in r["tags"]],
                "assigned": None if assigned is None else [_struct_row(a, ASSIGNED_STRUCT) for a in assigned],
                "extra": json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else None,
            }
        )
    return pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)


def table_records(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Shard rows back as run lines (optional fields only where set, as in the JSON run)."""
    for row in table.to_pylist():
        record: dict[str, Any] = {
            "id": row["id"],
            "tags": [{k: v for k, v in t.items() if v is not None} for t in row["tags"]],
        }
        if row.get("assigned") is not None:
            record["assigned"] = [{k: v for k, v in a.items() if v is not None} for a in row["assigned"]]
        if row.get("extra"):
            record.update(json.loads(row["extra"]))
        yield record


def read_shards(out_dir: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every run line of a sharded run's output directory, shard by shard."""
    for path in sorted(Path(out_dir).glob("part-*.parquet")):
        yield from table_records(pq.read_table(path))


def shard_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"part-{name}.parquet"


def commit_shard(out_dir: Path, result: ShardResult) -> None:
    """Writes a shard's failures, then its Parquet file; the shard counts as finished once the latter
    exists, and both are renamed into place whole."""
    sidecar = out_dir / FAILURES_DIR / f"{result.name}.jsonl"
    if result.failures:
        write_jsonl(sidecar, result.failures)
    else:
        sidecar.unlink(missing_ok=True)
    target = shard_path(out_dir, result.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    try:
        pq.write_table(records_table(result.records), tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_identity(
    index_dir: Path, root: Path, sources: Sequence[Path], options: TagOptions, batch_size: int
) -> dict[str, Any]:
    live = read_manifest(index_dir, "tagindex", verify=False).root  # the version CURRENT names
    digest = hashlib.sha256((live / MANIFEST).read_bytes()).hexdigest()
    identity = {
        "kind": RUN_KIND,
        "format_version": RUN_FORMAT_VERSION,
        "index_manifest_sha256": digest,
        "options": options.to_dict(),
        "artifacts_sha256": _artifact_digests(options),
        "batch_size": batch_size,
        "sources": [
            {"path": str(s.relative_to(root)), "bytes": s.stat().st_size, "mtime_ns": s.stat().st_mtime_ns}
            for s in sources
        ],
    }
    # As it reads back from _run.json (tuples as lists, option objects as their fields), so that a
    # rerun compares equal whatever types the pipeline's options use.
    return dict(json.loads(json.dumps(identity, sort_keys=True, default=_jsonable)))


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def _artifact_digests(options: TagOptions) -> dict[str, str]:
    """A digest of each file the pipeline options name: a reranker retrained or a calibration refitted
    in place is another run, not one to resume."""
    out = {}
    for name in _PATH_ARGS:
        value = options.pipeline.get(name)
        if value is None:
            continue
        path = Path(value)
        if path.is_dir():  # a saved model directory: its manifest (checksums of every file)
            from tagindex.cross_encoder import KIND

            path = read_manifest(path, KIND, verify=False).root / MANIFEST
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def prepare_out_dir(out_dir: Path, identity: dict[str, Any]) -> set[str]:
    """Creates or reopens an output directory; returns the names of its finished shards.

    Raises:
        InputError: The directory holds a run of another index, input, batch size or options (its
            shards cannot be mixed with this run's), or other files.
    """
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{run_file}: unreadable run file ({exc}); use another --out") from None
        if previous != identity:
            changed = sorted(k for k in identity if previous.get(k) != identity[k])
            raise InputError(
                f"{out_dir}: holds a run with another {', '.join(changed) or 'format'}; "
                "its shards cannot be resumed by this run: use another --out or delete it"
            )
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise InputError(f"{out_dir}: exists and is not a tagindex sharded run; use another --out")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl_object(run_file, identity)
    for stale in out_dir.glob(".part-*.tmp"):  # left by a run killed while writing a shard
        stale.unlink(missing_ok=True)
    return {p.name[len("part-") : -len(".parquet")] for p in out_dir.glob("part-*.parquet")}


def write_jsonl_object(path: Path, obj: dict[str, Any]) -> None:
    """Writes one JSON document atomically (temp file + rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- the driver ------------------------------------------------------------------------------------------
def run_sharded(
    index_dir: str | os.PathLike[str],
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    execute: Executor,
    options: TagOptions | None = None,
    batch_size: int = 4096,
    engine: str = "local",
    workers: int = 1,
    progress: Progress | None = None,
) -> RunSummary:
    """Tags ``src`` into Parquet shards under ``out_dir``, skipping shards an earlier run finished.

    Args:
        index_dir: Saved index directory (read by every worker).
        src: Products file or directory of product files.
        out_dir: Output directory (created; reopened to resume).
        execute: Turns a stream of batches into a stream of results in any order (see
            :func:`local_executor` and :mod:`tagindex.engines.ray_engine`).
        options: Tagging options.
        batch_size: Input rows per batch and per shard.
        engine: Name recorded in the summary.
        workers: Worker count recorded in the summary.
        progress: Called with the running summary after every committed shard.

    Returns:
        The summary, also written to ``out_dir/_summary.json``; failed rows are in
        ``out_dir/_failures.jsonl``.

    Raises:
        InputError: Missing/unknown source, or an output directory of another run.
        IndexFormatError: The index directory is not an intact saved index.
    """
    options = (options or TagOptions()).resolved()
    start = time.perf_counter()
    index_path, out = Path(index_dir), Path(out_dir)
    read_manifest(index_path, "tagindex", verify=False)  # a clear error before any worker starts
    root, sources = list_sources(src)
    finished = prepare_out_dir(out, _run_identity(index_path, root, sources, options, batch_size))
    summary = RunSummary(engine=engine, workers=workers, out=str(out))
    unfinished: list[dict[str, Any]] = []
    rows_of: dict[str, Batch] = {}
    first_commit: tuple[float, int] | None = None  # (time, products tagged) at the first commit

    def pending() -> Iterator[Batch]:
        for batch in iter_batches(root, sources, batch_size, options.columns):
            summary.products += batch.n_rows
            if batch.name in finished:
                summary.shards_skipped += 1
                continue
            rows_of[batch.name] = batch  # kept until committed, to report its rows if its worker dies
            yield batch

    for result in execute(pending()):
        batch = rows_of.pop(result.name)
        if result.error is not None:
            summary.shards_unfinished += 1
            reason = f"shard {batch.name} not finished (a rerun retries it): {result.error}"
            unfinished.extend(
                failure(batch.source, line, p.id, reason)
                for p, line in zip(batch.products, batch.lines, strict=True)
            )
            unfinished.extend(batch.failures)
            continue
        commit_shard(out, result)
        summary.shards_written += 1
        summary.tagged += len(result.records)
        now = time.perf_counter()
        summary.seconds = now - start
        summary.products_per_s = summary.tagged / max(summary.seconds, 1e-9)
        if first_commit is None:
            first_commit = (now, summary.tagged)
        elif now > first_commit[0]:
            summary.steady_products_per_s = (summary.tagged - first_commit[1]) / (now - first_commit[0])
        if progress is not None:
            progress(summary)
    summary.failures = _collect_failures(out, unfinished)
    summary.seconds = time.perf_counter() - start
    summary.products_per_s = summary.tagged / max(summary.seconds, 1e-9)
    write_jsonl_object(out / SUMMARY_FILE, summary.to_dict())
    return summary


def _collect_failures(out: Path, unfinished: list[dict[str, Any]]) -> int:
    """Writes ``_failures.jsonl``: every finished shard's failed rows plus the rows of unfinished shards."""
    rows: list[dict[str, Any]] = []
    for sidecar in sorted((out / FAILURES_DIR).glob("*.jsonl")):
        if not sidecar.name.startswith(".") and shard_path(out, sidecar.stem).exists():
            rows.extend(json.loads(line) for line in sidecar.read_text(encoding="utf-8").splitlines() if line)
    rows.extend(unfinished)
    write_jsonl(out / FAILURES_FILE, rows)
    return len(rows)


def local_executor(index_dir: str | os.PathLike[str], options: TagOptions) -> Executor:
    """Runs every batch in this process, one after another (the pipeline is loaded once)."""

    def execute(batches: Iterator[Batch]) -> Iterator[ShardResult]:
        pipeline = None
        for batch in batches:
            if pipeline is None:
                pipeline = load_pipeline(index_dir, options)
            result = tag_batch(pipeline, batch, options)
            result.worker = "local"
            yield result

    return execute
