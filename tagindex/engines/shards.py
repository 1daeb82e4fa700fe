"""Sharded, resumable batch tagging: the engine-independent half of ``tagindex tag --engine ray``.

A products source (one file, or a directory of JSONL/CSV/Parquet files) is read as a stream and cut
into numbered batches of ``batch_size`` input rows. Each batch is tagged with :func:`tag_products` --
the call the in-process ``tagindex tag`` makes -- and committed as one Parquet shard
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

import csv
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tagindex.errors import InputError
from tagindex.io import _parse_csv_cell, product_from_row, write_jsonl
from tagindex.schema import Product
from tagindex.store import MANIFEST, read_manifest

logger = logging.getLogger(__name__)

RUN_KIND = "tagindex-sharded-run"
RUN_FORMAT_VERSION = 1
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
SHARD_SCHEMA = pa.schema(
    [pa.field("id", pa.string(), nullable=False), pa.field("tags", pa.list_(TAG_STRUCT))]
)


@dataclass(frozen=True)
class TagOptions:
    """What ``tagindex tag`` is asked for; the same meaning as its options."""

    top_k: int = 10
    threshold: float | None = None
    ancestors: bool = False
    description_chars: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def tag_products(index: Any, products: Sequence[Product], options: TagOptions) -> list[dict[str, Any]]:
    """Run lines for ``products``: exactly the call and the format of the in-process ``tagindex tag``."""
    results = index.tag(
        products, top_k=options.top_k, threshold=options.threshold, include_ancestors=options.ancestors
    )
    return [r.to_dict() for r in results]


def failure(source: str, line: int, product_id: str | None, reason: str) -> dict[str, Any]:
    return {"source": source, "line": line, "id": product_id, "reason": reason}


def tag_batch(index: Any, batch: Batch, options: TagOptions) -> ShardResult:
    """Tags a batch; when the batch call fails, products are retried one by one to name the culprits."""
    start = time.perf_counter()
    failures = list(batch.failures)
    try:
        records = tag_products(index, batch.products, options)
    except Exception as exc:  # any encoder/index error: isolate the rows that cause it, keep the rest
        logger.warning("%s: batch tagging failed (%s); retrying its products one by one", batch.name, exc)
        records = []
        for product, line in zip(batch.products, batch.lines, strict=True):
            try:
                records.extend(tag_products(index, [product], options))
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


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yields ``(line, record)`` one row at a time; an unreadable row is yielded as its reason.

    Unlike :func:`tagindex.io.read_records` this never holds the file in memory, and a JSONL line
    that is not UTF-8 fails alone.

    Raises:
        InputError: A CSV file that is not UTF-8 or a Parquet file that cannot be read (the rows of a
            broken file cannot be told apart).
    """
    fmt = _format_of(path)
    if fmt == "jsonl":
        with path.open("rb") as f:
            for i, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8-sig" if i == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    yield i, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
                    continue
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield i, f"invalid JSON ({exc.msg} at column {exc.colno})"
                    continue
                yield i, obj if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"
        return
    if fmt == "csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            try:
                for cells in reader:
                    if None in cells:
                        yield reader.line_num, "more fields than the header has"
                        continue
                    yield reader.line_num, {k: _parse_csv_cell(v) for k, v in cells.items() if k is not None}
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{reader.line_num + 1}: not valid UTF-8 ({exc.reason})") from None
            except csv.Error as exc:
                raise InputError(f"{path}:{reader.line_num}: unreadable CSV ({exc})") from None
        return
    try:
        parquet = pq.ParquetFile(path)
        number = 0
        for record_batch in parquet.iter_batches(batch_size=4096):
            for record in record_batch.to_pylist():
                number += 1
                yield number, record
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read Parquet file: {exc}") from None


def shard_stem(root: Path, source: Path) -> str:
    """A file-name-safe, unique stem for a source file below ``root``."""
    return "__".join(source.relative_to(root).parts)


def iter_batches(root: Path, sources: Sequence[Path], batch_size: int) -> Iterator[Batch]:
    """Cuts the sources into batches of ``batch_size`` input rows, streaming.

    Every row lands in exactly one batch, as a product or as a failure (unparsable row, duplicate
    id); boundaries depend only on the files and ``batch_size``, so reruns cut the same batches.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    # First place of every id (source number, line) packed in one int: ~100 bytes an id.
    seen: dict[str, int] = {}
    for number, source in enumerate(sources):
        stem, shown = shard_stem(root, source), str(source)
        count = 0
        batch = Batch(f"{stem}-{count:05d}", shown)
        for line, record in iter_records(source):
            try:
                if isinstance(record, str):
                    raise ValueError(record)
                product = product_from_row(record)
                first = seen.setdefault(product.id, (number << 40) | line)
                if first != (number << 40) | line:
                    where = f"{sources[first >> 40]}:{first & ((1 << 40) - 1)}"
                    raise ValueError(f"duplicate id '{product.id}' (first at {where})")
                batch.products.append(product)
                batch.lines.append(line)
            except ValueError as exc:
                raw_id = record.get("id") if isinstance(record, dict) else None
                batch.failures.append(failure(shown, line, None if raw_id is None else str(raw_id), str(exc)))
            if batch.n_rows >= batch_size:
                yield batch
                count += 1
                batch = Batch(f"{stem}-{count:05d}", shown)
        if batch.n_rows:
            yield batch


# ---- output ----------------------------------------------------------------------------------------------
def records_table(records: Iterable[dict[str, Any]]) -> pa.Table:
    """Run lines as a table of :data:`SHARD_SCHEMA`."""
    rows = [
        {
            "id": r["id"],
            "tags": [
                {
                    "tag": t["tag"],
                    "score": t["score"],
                    "name": t.get("name"),
                    "ancestor_of": t.get("ancestor_of"),
                }
                for t in r["tags"]
            ],
        }
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)


def table_records(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Shard rows back as run lines (the optional tag fields only where set, as in the JSON run)."""
    for row in table.to_pylist():
        yield {"id": row["id"], "tags": [{k: v for k, v in t.items() if v is not None} for t in row["tags"]]}


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
    return {
        "kind": RUN_KIND,
        "format_version": RUN_FORMAT_VERSION,
        "index_manifest_sha256": digest,
        "options": options.to_dict(),
        "batch_size": batch_size,
        "sources": [
            {"path": str(s.relative_to(root)), "bytes": s.stat().st_size, "mtime_ns": s.stat().st_mtime_ns}
            for s in sources
        ],
    }


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
    options = options or TagOptions()
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
        for batch in iter_batches(root, sources, batch_size):
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
    """Runs every batch in this process, one after another (the index is loaded once)."""

    def execute(batches: Iterator[Batch]) -> Iterator[ShardResult]:
        index = None
        for batch in batches:
            if index is None:
                index = load_index(index_dir, options)
            result = tag_batch(index, batch, options)
            result.worker = "local"
            yield result

    return execute
