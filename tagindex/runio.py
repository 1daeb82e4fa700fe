"""Run files in three formats, chosen by extension or by name.

- ``jsonl`` (``.jsonl``, ``.json``, ``.ndjson`` and any other extension): the contract format, one
  JSON line per product ``{"id": ..., "tags": [{"tag": ..., "score": ...}, ...]}``, best first.
- ``csv`` (``.csv``): one row per product-tag, columns ``id,tag,score,rank`` (rank 1 = best), then
  ``name`` and ``ancestor_of`` when any tag has them. Products without tags have no row.
- ``parquet`` (``.parquet``, ``.pq``): one row per product, ``id: string`` and
  ``tags: list<struct<tag: string, score: double[, name, ancestor_of: string]>>``, plus any other
  per-product field (such as ``assigned``) as its own column.

:func:`read_run_records` reads all three back as JSON-line records, so ``evaluate`` and ``show``
take any of them. Writes are atomic (temporary file, then rename) with the user's umask.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from tagindex.errors import InputError
from tagindex.io import read_records, write_jsonl
from tagindex.umask import apply_umask

RUN_FORMATS = ("jsonl", "csv", "parquet")
_BY_SUFFIX = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CSV_COLUMNS = ("id", "tag", "score", "rank")
_OPTIONAL_TAG_FIELDS = ("name", "ancestor_of")  # TagScore's optional fields, in this order

Record = dict[str, Any]


def run_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The run format for ``path``: ``fmt`` when given, else from the extension (JSON lines by default).

    Raises:
        InputError: ``fmt`` is not one of :data:`RUN_FORMATS`.
    """
    if fmt is not None:
        if fmt not in RUN_FORMATS:
            raise InputError(f"unknown run format '{fmt}'; known: {', '.join(RUN_FORMATS)}")
        return fmt
    return _BY_SUFFIX.get(Path(path).suffix.lower(), "jsonl")


def write_run(
    path: str | os.PathLike[str],
    records: Iterable[Record],
    fmt: str | None = None,
    names: Mapping[str, str] | None = None,
) -> int:
    """Writes run records atomically in the format :func:`run_format` picks.

    Args:
        path: File to write.
        records: ``{"id": ..., "tags": [{"tag": ..., "score": ...}, ...]}`` dicts, best tag first.
        fmt: ``jsonl``, ``csv`` or ``parquet``; default from the extension.
        names: Tag id -> name, filling the CSV ``name`` column for tags that carry no name.

    Returns:
        The number of products written.

    Raises:
        InputError: CSV was asked for records carrying per-product fields other than ``id`` and
            ``tags`` (e.g. ``assigned`` from ``--decide``), which one row per tag cannot hold.
    """
    chosen = run_format(path, fmt)
    if chosen == "jsonl":
        return write_jsonl(path, records)
    rows = list(records)
    if chosen == "csv":
        return _atomic(path, "w", lambda f: _write_csv(f, rows, names, path))
    return _atomic(path, "wb", lambda f: _write_parquet(f, rows))


def read_run_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, Record | str]]:
    """Yields ``(line, record)`` from a run file of any format; a malformed row is an error string.

    For CSV the line is that of the product's first row; for Parquet it is the row number (from 1).
    """
    fmt = run_format(path)
    if fmt == "csv":
        yield from _read_csv(Path(path))
    elif fmt == "parquet":
        yield from _read_parquet(Path(path))
    else:
        yield from read_records(path)


# ---- writing ----------------------------------------------------------------------------------------
def _atomic(path: str | os.PathLike[str], mode: str, write: Callable[[IO[Any]], int]) -> int:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        if "b" in mode:
            with os.fdopen(fd, mode) as f:
                count = write(f)
        else:
            with os.fdopen(fd, mode, encoding="utf-8", newline="") as f:
                count = write(f)
        apply_umask(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _tag_fields(rows: list[Record]) -> list[str]:
    present = {k for row in rows for hit in row.get("tags", []) for k in hit}
    return [k for k in _OPTIONAL_TAG_FIELDS if k in present]


def _write_csv(f: IO[str], rows: list[Record], names: Mapping[str, str] | None, path: Any) -> int:
    extra = sorted({k for row in rows for k in row} - {"id", "tags"})
    if extra:
        raise InputError(
            f"{path}: a CSV run holds one row per tag and cannot keep {extra}; write .jsonl or .parquet"
        )
    fields = _tag_fields(rows)
    if names is not None and "name" not in fields:
        fields = ["name", *fields]
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *fields])
    for row in rows:
        for rank, hit in enumerate(row.get("tags", []), start=1):
            name = hit.get("name") or (names or {}).get(hit["tag"], "")
            values = {"name": name, "ancestor_of": hit.get("ancestor_of") or ""}
            writer.writerow([row["id"], hit["tag"], hit["score"], rank, *(values[k] for k in fields)])
    return len(rows)


def _write_parquet(f: IO[bytes], rows: list[Record]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = _tag_fields(rows)
    tag_type = pa.struct(
        [pa.field("tag", pa.string()), pa.field("score", pa.float64())]
        + [pa.field(k, pa.string()) for k in fields]
    )
    columns: dict[str, Any] = {
        "id": pa.array([str(row["id"]) for row in rows], pa.string()),
        "tags": pa.array(
            [
                [
                    {"tag": h["tag"], "score": float(h["score"]), **{k: h.get(k) for k in fields}}
                    for h in row["tags"]
                ]
                for row in rows
            ],
            pa.list_(tag_type),
        ),
    }
    for key in sorted({k for row in rows for k in row} - {"id", "tags"}):
        columns[key] = pa.array([row.get(key) for row in rows])  # e.g. ``assigned``: types inferred
    pq.write_table(pa.table(columns), f)
    return len(rows)


# ---- reading ----------------------------------------------------------------------------------------
def _read_csv(path: Path) -> Iterator[tuple[int, Record | str]]:
    from tagindex.io import DataError

    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in ("id", "tag") if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}:1: a CSV run needs columns id,tag[,score,rank]; missing {missing}")
    products: dict[str, tuple[int, list[tuple[float, int, dict[str, Any]]]]] = {}
    for i, row in enumerate(reader):
        line = reader.line_num
        pid, tag = (row.get("id") or "").strip(), (row.get("tag") or "").strip()
        if not pid or not tag:
            yield line, "a CSV run row needs an id and a tag"
            continue
        try:
            score = float(row["score"]) if row.get("score") not in (None, "") else 0.0
            rank = float(row["rank"]) if row.get("rank") not in (None, "") else math.inf
        except ValueError:
            yield line, f"score and rank must be numbers, got {row.get('score')!r}, {row.get('rank')!r}"
            continue
        hit: dict[str, Any] = {"tag": tag, "score": score}
        hit.update({k: row[k] for k in _OPTIONAL_TAG_FIELDS if row.get(k)})
        products.setdefault(pid, (line, []))[1].append((rank, i, hit))
    for pid, (line, hits) in products.items():
        yield line, {"id": pid, "tags": [hit for _, _, hit in sorted(hits, key=lambda h: (h[0], h[1]))]}


def _read_parquet(path: Path) -> Iterator[tuple[int, Record | str]]:
    import pyarrow.parquet as pq

    from tagindex.io import DataError

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if "id" not in table.column_names or "tags" not in table.column_names:
        raise DataError(f"{path}: a Parquet run needs columns 'id' and 'tags'")
    for i, row in enumerate(table.to_pylist(), start=1):
        tags = row.get("tags")
        if not isinstance(tags, list):
            yield i, "a run row needs a 'tags' list"
            continue
        hits = [{k: v for k, v in (h or {}).items() if v is not None} for h in tags]
        yield i, {**{k: v for k, v in row.items() if v is not None}, "id": str(row["id"]), "tags": hits}


__all__ = ["CSV_COLUMNS", "RUN_FORMATS", "read_run_records", "run_format", "write_run"]
