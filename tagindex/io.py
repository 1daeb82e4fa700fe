"""Catalog and vocabulary loaders with line-numbered, one-line errors.

Products come from CSV, JSONL or Parquet files (or a pandas DataFrame), with an optional column map
for exports whose columns have other names (a Shopify export: ``Handle``, ``Title``,
``Body (HTML)``). Tags come from the same formats, from a plain text file (one name per line) or
from a SKOS vocabulary (``.ttl``, ``.rdf``, ``.skos``; needs the ``skos`` extra). A tag without an id
gets one derived from its name (:func:`tagindex.text.ids_from_names`).

Every row goes through one normaliser (:func:`product_from_row`, :func:`tag_from_row`) that applies
the field limits of :data:`tagindex.schema.LIMITS` (published in docs/limits.md). Every error is one
line that starts with the file name (and line). By default any malformed row fails the load; with
``on_error="skip"`` the bad rows are dropped and their count is logged, never silently.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import numbers
import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tagindex.errors import InputError
from tagindex.schema import LIMITS, Product, Tag, TagResult
from tagindex.text import html_to_text, ids_from_names, unescape_entities
from tagindex.umask import apply_umask

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
_SHOWN_LINES = 10
PRODUCT_FIELDS = ("id", "title", "description", "attributes", "tags")
TAG_FIELDS = ("id", "name", "description", "parent", "kind", "synonyms")
SKOS_SUFFIXES = {".ttl": "turtle", ".rdf": "xml", ".skos": "xml", ".owl": "xml", ".nt": "nt"}
T = TypeVar("T", Product, Tag)
Records = list[tuple[int, dict[str, Any] | str]]


class DataError(InputError):
    """Raised when an input file cannot be used; the message names file and line."""


def _format_of(path: Path) -> str:
    suffixes = "".join(path.suffixes[-2:]).lower()
    for ext, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".csv", "csv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".txt", "txt"),
        *((ext, "skos") for ext in SKOS_SUFFIXES),
    ):
        if suffixes.endswith(ext):
            return fmt
    raise DataError(
        f"{path}: unknown file type (expected .csv, .jsonl/.json or .parquet; "
        "for tags also .txt or a SKOS .ttl/.rdf/.skos)"
    )


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _too_deep(value: Any, limit: int) -> bool:
    """Whether lists/objects nest deeper than ``limit`` (iterative, so any depth is safe to check)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json_value(text: str) -> Any:
    """``json.loads`` within the limits: raises ValueError with a short reason for anything it refuses
    (invalid JSON, nesting deeper than the limit, numbers of thousands of digits)."""
    if len(text) > LIMITS.line_chars:
        raise ValueError(f"longer than {LIMITS.line_chars:,} characters")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"invalid JSON (nested deeper than {LIMITS.json_depth} levels)") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ValueError(f"invalid JSON ({str(exc).splitlines()[0]})") from None
    if _too_deep(value, LIMITS.json_depth):
        raise ValueError(f"invalid JSON (nested deeper than {LIMITS.json_depth} levels)")
    return value


def read_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yields ``(line_number, record)``; a record that cannot be parsed is yielded as an error string.

    Raises:
        DataError: The file as a whole cannot be read (missing, not UTF-8, a CSV field over the limit).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found" if not p.exists() else f"{p}: not a file")
    fmt = _format_of(p)
    if fmt == "parquet":
        yield from _parquet_records(p)
    elif fmt == "skos":
        yield from _skos_records(p)
    elif fmt == "jsonl":
        for i, line in enumerate(_decode(p).splitlines(), start=1):
            if line.strip():
                yield i, _json_record(line)
    elif fmt == "txt":
        for i, line in enumerate(_decode(p).splitlines(), start=1):
            name = line.strip()
            if name and not name.startswith("#"):
                yield i, {"name": name}
    else:
        yield from _csv_records(p, io.StringIO(_decode(p), newline=""))


def stream_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """:func:`read_records` one row at a time, in memory bounded by the limits, for catalogs of any size.

    The same rows, limits and reasons as :func:`read_records`, except that bytes that are not UTF-8
    fail only their own JSONL line or CSV row (``read_records`` refuses the whole file), and a JSONL
    line over ``LIMITS.line_chars`` is skipped without being held in memory.

    Raises:
        DataError: The file cannot be read (missing, unknown type), or not past some point (a CSV
            field over the limit, a broken Parquet row group): the message names the line or row
            where reading stopped; the rows before it have been yielded.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found" if not p.exists() else f"{p}: not a file")
    fmt = _format_of(p)
    if fmt == "jsonl":
        yield from _stream_jsonl(p)
    elif fmt == "csv":
        # surrogateescape: an undecodable byte becomes a lone surrogate that fails its row, not the file
        with p.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            yield from _csv_records(p, f, check_utf8=True)
    else:
        yield from read_records(p)  # Parquet already streams; .txt and SKOS are small vocabularies


def _json_record(text: str) -> dict[str, Any] | str:
    """One JSONL line as a record, or the reason it is refused."""
    try:
        obj = parse_json_value(text)
    except ValueError as exc:
        return str(exc)
    return obj if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"


def _stream_jsonl(p: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    # A line of LIMITS.line_chars characters has at most 4 bytes per character in UTF-8; a longer
    # line is read on in chunks of that size and refused without ever being held whole.
    most = 4 * LIMITS.line_chars + 2
    with p.open("rb") as f:
        for i in itertools.count(1):
            raw = f.readline(most)
            if not raw:
                return
            if len(raw) == most and not raw.endswith(b"\n"):
                while (rest := f.readline(most)) and not rest.endswith(b"\n"):
                    pass
                yield i, f"longer than {LIMITS.line_chars:,} characters"
                continue
            try:
                text = raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield i, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
                continue
            if text.strip():
                yield i, _json_record(text)


def _parquet_records(p: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    import pyarrow.parquet as pq

    i = 0
    try:  # row group by row group: memory is bounded by the largest batch, not the file
        for batch in pq.ParquetFile(p).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                i += 1
                too_deep = _too_deep(row, LIMITS.json_depth)
                yield i, f"nested deeper than {LIMITS.json_depth} levels" if too_deep else row
    except Exception as exc:  # pyarrow raises several unrelated types for broken files
        where = f"{p}:{i + 1}: cannot read Parquet rows from here" if i else f"{p}: cannot read Parquet file"
        raise DataError(f"{where}: {_first_line(exc)}") from None


_SURROGATE = re.compile("[\udc80-\udcff]")


def _csv_records(
    p: Path, lines: Iterable[str], check_utf8: bool = False
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    # The limit is process-wide; set it to the published bound (the default, 128 KiB, is too small for
    # long descriptions, and an unbounded one lets a 100 MB field through).
    csv.field_size_limit(LIMITS.csv_field_chars)
    reader = csv.DictReader(lines)
    try:
        if reader.fieldnames is None:
            return
        for row in reader:
            line_no = reader.line_num
            if None in row:
                yield line_no, "more fields than the header has"
                continue
            if check_utf8 and any(isinstance(v, str) and _SURROGATE.search(v) for v in row.values()):
                yield line_no, "not valid UTF-8"
                continue
            yield line_no, {k: _parse_csv_cell(v) for k, v in row.items() if k is not None}
    except csv.Error as exc:
        raise DataError(
            f"{p}:{reader.line_num + 1}: cannot read CSV ({exc}; fields are limited to "
            f"{LIMITS.csv_field_chars:,} characters)"
        ) from None


def _parse_csv_cell(value: str | None) -> Any:
    if value is None or value == "":
        return None
    stripped = value.strip()
    if stripped[:1] in "[{":
        try:
            return parse_json_value(stripped)
        except ValueError:
            return value
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---- field values --------------------------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return type(value).__name__ in ("NAType", "NaTType")  # pandas' missing markers


def _check_length(text: str, limit: int, column: str) -> str:
    if len(text) > limit:
        raise ValueError(f"column '{column}' is longer than {limit:,} characters ({len(text):,})")
    return text


def as_id(value: Any, column: str = "id") -> str:
    """A non-empty id of at most ``LIMITS.id_chars`` characters from a string or an integer.

    Raises:
        ValueError: Missing, empty, too long, or of another type (an object, a list, a float).
    """
    if _is_missing(value) or isinstance(value, bool) or not isinstance(value, str | numbers.Integral):
        kind = "missing" if _is_missing(value) else type(value).__name__
        raise ValueError(f"column '{column}' must be a non-empty string or integer, got {kind}")
    if isinstance(value, numbers.Integral):
        # Checked before str(): Python refuses to print integers of more than 4,300 digits.
        if int(value).bit_length() > LIMITS.id_chars * 3.33:
            raise ValueError(f"column '{column}' is longer than {LIMITS.id_chars:,} characters")
        value = str(int(value))
    text = _check_length(value.strip(), LIMITS.id_chars, column)
    if not text:
        raise ValueError(f"column '{column}' is empty")
    return text


def as_text(value: Any, column: str, limit: int, required: bool = False) -> str:
    """Stripped text of at most ``limit`` characters (empty when missing and not required).

    Raises:
        ValueError: Missing or blank while required, not text, or too long.
    """
    if _is_missing(value):
        if required:
            raise ValueError(f"missing required column '{column}'")
        return ""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        value = str(value)  # a spreadsheet turns titles such as "1984" into numbers
    if not isinstance(value, str):
        raise ValueError(f"column '{column}' must be text, got {type(value).__name__}")
    text = _check_length(value.strip(), limit, column)
    if required and not text:
        raise ValueError(f"column '{column}' is empty")
    return text


def _as_str_list(value: Any, column: str, max_items: int, item_chars: int) -> list[str]:
    if _is_missing(value):
        return []
    if isinstance(value, str):
        value = value.split("|")  # CSV convenience: "a|b|c"
    elif hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"column '{column}' must be a list of strings")
    if len(value) > max_items:
        raise ValueError(f"column '{column}' has {len(value):,} entries (at most {max_items:,})")
    items = [str(v).strip() if isinstance(v, str) else as_id(v, column) for v in value]
    return [_check_length(v, item_chars, column) for v in items if v]


def _as_attributes(value: Any) -> dict[str, str | list[str]]:
    if _is_missing(value):
        return {}
    if isinstance(value, list) and all(isinstance(kv, tuple | list) and len(kv) == 2 for kv in value):
        value = dict(value)  # Parquet map columns come back as key/value pairs
    if not isinstance(value, dict):
        raise ValueError("column 'attributes' must be an object of name -> value or list of values")
    if len(value) > LIMITS.attributes:
        raise ValueError(f"column 'attributes' has {len(value):,} entries (at most {LIMITS.attributes:,})")
    out: dict[str, str | list[str]] = {}
    for name, v in value.items():
        key = _check_length(str(name).strip(), LIMITS.attribute_name_chars, "attributes")
        if _is_missing(v) or not key:
            continue
        if isinstance(v, str | int | float) and not isinstance(v, bool):
            out[key] = _check_length(str(v).strip(), LIMITS.attribute_value_chars, f"attributes.{key}")
        else:
            out[key] = _as_str_list(
                v, f"attributes.{key}", LIMITS.attribute_values, LIMITS.attribute_value_chars
            )
    return out


def _remap(record: Mapping[str, Any], columns: Mapping[str, str] | None) -> Mapping[str, Any]:
    if not columns:
        return record
    out = dict(record)
    for field, source in columns.items():
        if source not in record:
            raise ValueError(f"missing column '{source}' (mapped to '{field}')")
        out[field] = record[source]
    return out


def check_columns(columns: Mapping[str, str] | None, fields: Sequence[str]) -> dict[str, str]:
    """Validates a column map (``{"id": "Handle", ...}``: our field -> the file's column).

    Raises:
        InputError: A key is not one of ``fields`` or a value is not a column name.
    """
    columns = dict(columns or {})
    for field, source in columns.items():
        if field not in fields:
            raise InputError(f"column map: unknown field '{field}' (fields: {', '.join(fields)})")
        if not isinstance(source, str) or not source:
            raise InputError(f"column map: the column for '{field}' must be a non-empty name")
    return columns


# ---- rows -> records: written once ---------------------------------------------------------------
def product_from_row(row: Mapping[str, Any], columns: Mapping[str, str] | None = None) -> Product:
    """A :class:`Product` from one row (file record, DataFrame row or request body).

    HTML in the description is reduced to text (:func:`tagindex.text.html_to_text`); character
    references in the title are decoded (:func:`tagindex.text.unescape_entities`).

    Args:
        row: Field name -> value; ``id`` and ``title`` are required.
        columns: Optional map from our field to the row's column (``{"id": "Handle"}``).

    Raises:
        ValueError: The row is malformed or exceeds a limit (a one-line reason, without location).
    """
    record = _remap(row, columns)
    for required in ("id", "title"):
        if required not in record:
            raise ValueError(f"missing required column '{required}'")
    return Product(
        id=as_id(record["id"], "id"),
        title=unescape_entities(as_text(record["title"], "title", LIMITS.title_chars, required=True)),
        description=html_to_text(as_text(record.get("description"), "description", LIMITS.description_chars)),
        attributes=_as_attributes(record.get("attributes")),
        tags=_as_str_list(record.get("tags"), "tags", LIMITS.gold_tags, LIMITS.id_chars),
    )


def tag_from_row(
    row: Mapping[str, Any], columns: Mapping[str, str] | None = None, require_id: bool = True
) -> Tag:
    """A :class:`Tag` from one row (file record, DataFrame row or request body).

    Args:
        row: Field name -> value; ``name`` is required, ``id`` too unless ``require_id`` is False
            (then a missing id comes back as ``""`` for the caller to derive).
        columns: Optional map from our field to the row's column.
        require_id: Refuse rows without an id.

    Raises:
        ValueError: The row is malformed or exceeds a limit (a one-line reason, without location).
    """
    record = _remap(row, columns)
    has_id = not _is_missing(record.get("id")) and record.get("id") != ""
    if require_id and "id" not in record:
        raise ValueError("missing required column 'id'")
    if "name" not in record:
        raise ValueError("missing required column 'name'")
    parent = record.get("parent")
    return Tag(
        id=as_id(record["id"], "id") if has_id or require_id else "",
        name=as_text(record["name"], "name", LIMITS.tag_name_chars, required=True),
        description=as_text(record.get("description"), "description", LIMITS.tag_description_chars),
        parent=None if _is_missing(parent) or parent == "" else as_id(parent, "parent"),
        kind=as_text(record.get("kind"), "kind", LIMITS.kind_chars) or "tag",
        synonyms=_as_str_list(record.get("synonyms"), "synonyms", LIMITS.synonyms, LIMITS.synonym_chars),
        names=_as_names(record.get("names")),
    )


def _as_names(value: Any) -> dict[str, str]:
    """``names``: a mapping language -> name (a JSON object; CSV cells may hold it as JSON text)."""
    if _is_missing(value) or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"'names' is not a JSON object: {exc.msg}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip() for k, v in value.items()
    ):
        raise ValueError("'names' must map language tags to non-empty names")
    return {k.strip(): as_text(v, "names", LIMITS.tag_name_chars) for k, v in value.items()}


def _rows(
    records: Iterable[tuple[int, dict[str, Any] | str]],
    parse: Callable[[Mapping[str, Any]], T],
    where: Callable[[int], str],
    skip: Callable[[Mapping[str, Any], set[str]], bool] | None = None,
) -> tuple[list[tuple[int, T]], list[tuple[str, str]]]:
    items: list[tuple[int, T]] = []
    errors: list[tuple[str, str]] = []
    ids: set[str] = set()
    for line, record in records:
        try:
            if isinstance(record, str):
                raise ValueError(record)
            if skip is not None and skip(record, ids):
                continue
            item = parse(record)
            ids.add(item.id)
            items.append((line, item))
        except ValueError as exc:
            errors.append((where(line), str(exc)))
    return items, errors


def _duplicates(items: list[tuple[int, T]], where: Callable[[int], str]) -> list[tuple[str, str]]:
    first: dict[str, int] = {}
    errors = []
    for line, item in items:
        if item.id in first:
            errors.append((where(line), f"duplicate id '{item.id}' (first on line {first[item.id]})"))
        else:
            first[item.id] = line
    return errors


def raise_or_log(errors: list[tuple[str, str]], on_error: OnError, what: str) -> None:
    """Reports malformed rows as ONE line: the first with its location, then how many more and where.

    Args:
        errors: ``(location, reason)`` pairs, locations such as ``path:line``.
        on_error: ``"raise"`` raises :class:`DataError`; ``"skip"`` logs a warning.
        what: Row kind for the message (``product``, ``tag``...).
    """
    if not errors:
        return
    (where, reason), rest = errors[0], errors[1:]
    message = f"{where}: {reason}"
    if rest:
        shown = ", ".join(loc.rsplit(":", 1)[-1] for loc, _ in rest[:_SHOWN_LINES])
        etc = ", ..." if len(rest) > _SHOWN_LINES else ""
        message += f" (and {len(rest):,} more malformed {what} row(s), at {shown}{etc})"
    if on_error == "raise":
        raise DataError(message)
    logger.warning("skipped %d malformed %s row(s): %s", len(errors), what, message)


def _finish(
    items: list[tuple[int, T]],
    errors: list[tuple[str, str]],
    on_error: OnError,
    what: str,
    source: str,
    where: Callable[[int], str],
) -> list[T]:
    duplicates = _duplicates(items, where)
    raise_or_log(sorted(errors + duplicates, key=lambda e: _line_key(e[0])), on_error, what)
    dropped = {loc for loc, _ in duplicates}
    kept = [item for line, item in items if where(line) not in dropped]
    if not kept:
        raise DataError(f"{source}: no valid {what} rows")
    return kept


def _line_key(location: str) -> tuple[int, str]:
    tail = location.rsplit(":", 1)[-1].rsplit(" ", 1)[-1]
    return (int(tail), location) if tail.isdigit() else (0, location)


def _file_where(path: str | os.PathLike[str]) -> Callable[[int], str]:
    return lambda line: f"{path}:{line}"


# ---- products -------------------------------------------------------------------------------------
def _continuation(record: Mapping[str, Any], seen: Collection[str], columns: Mapping[str, str]) -> bool:
    """A Shopify export repeats the handle on variant and image rows with an empty title."""
    title = record.get(columns.get("title", "title"))
    pid = record.get(columns.get("id", "id"))
    return (_is_missing(title) or title == "") and isinstance(pid, str | int) and str(pid).strip() in seen


def _load_products(
    records: Iterable[tuple[int, dict[str, Any] | str]],
    source: str,
    where: Callable[[int], str],
    columns: Mapping[str, str] | None,
    on_error: OnError,
) -> list[Product]:
    columns = check_columns(columns, PRODUCT_FIELDS)
    items, errors = _rows(
        records,
        lambda r: product_from_row(r, columns),
        where,
        skip=lambda r, seen: _continuation(r, seen, columns),
    )
    return _finish(items, errors, on_error, "product", source, where)


def load_products(
    path: str | os.PathLike[str], on_error: OnError = "raise", columns: Mapping[str, str] | None = None
) -> list[Product]:
    """Loads a products file (CSV, JSONL or Parquet).

    Args:
        path: File with columns ``id``, ``title`` and optional ``description`` (HTML is reduced to
            text), ``attributes``, ``tags``.
        on_error: ``"raise"`` fails on the first file with malformed rows (the first is named, the
            others counted); ``"skip"`` drops them and logs their count and line numbers.
        columns: Our field -> the file's column, e.g. for a Shopify export
            ``{"id": "Handle", "title": "Title", "description": "Body (HTML)"}``. Rows repeating an
            id with an empty title (Shopify's variant rows) are skipped.

    Raises:
        DataError: The file is missing, unreadable or has malformed rows.
        InputError: The column map names an unknown field.
    """
    if _format_of(Path(path)) in ("txt", "skos"):
        raise DataError(f"{path}: products must be CSV, JSONL or Parquet (.txt and SKOS are for tags)")
    return _load_products(read_records(path), str(path), _file_where(path), columns, on_error)


@dataclass
class ProductsReport:
    """Products read leniently: the good rows, each bad row's ``(location, reason)``, the columns."""

    products: list[Product]
    errors: list[tuple[str, str]]
    columns: list[str]


def read_products_report(
    path: str | os.PathLike[str],
    columns: Mapping[str, str] | None = None,
    source: str | None = None,
    fmt: str | None = None,
) -> ProductsReport:
    """Reads a products file like ``load_products(on_error="skip")`` and returns the skipped rows.

    For callers that show the reasons to a person (the service's upload): every malformed or
    duplicate row is reported as ``(source:line, reason)`` instead of only being logged.

    Args:
        path: CSV, JSONL or Parquet file.
        columns: Our field -> the file's column (as in :func:`load_products`).
        source: Name used in locations and messages instead of ``path`` (e.g. the uploaded file's name).
        fmt: ``csv``, ``jsonl`` or ``parquet`` instead of the format the file name implies.

    Raises:
        DataError: The file is unreadable, of an unknown type, or has no valid row.
        InputError: The column map names an unknown field.
    """
    p = Path(path)
    name = source or str(path)
    where = _file_where(name)
    if (fmt or _format_of(Path(name))) not in ("csv", "jsonl", "parquet"):
        raise DataError(f"{name}: products must be CSV, JSONL or Parquet")
    if fmt is not None and _format_of(p) != fmt:
        raise DataError(f"{name}: the file is stored as {_format_of(p)}, not {fmt}")
    columns = check_columns(columns, PRODUCT_FIELDS)
    seen: list[str] = []

    def noted(
        records: Iterable[tuple[int, dict[str, Any] | str]],
    ) -> Iterator[tuple[int, dict[str, Any] | str]]:
        for line, record in records:
            if isinstance(record, dict):
                seen.extend(k for k in record if k not in seen)
            yield line, record

    try:
        items, errors = _rows(
            noted(read_records(p)),
            lambda r: product_from_row(r, columns),
            where,
            skip=lambda r, ids: _continuation(r, ids, columns),
        )
    except DataError as exc:
        raise DataError(str(exc).replace(str(p), name)) from None
    duplicates = _duplicates(items, where)
    dropped = {loc for loc, _ in duplicates}
    kept = [item for line, item in items if where(line) not in dropped]
    problems = sorted(errors + duplicates, key=lambda e: _line_key(e[0]))
    if not kept:
        first = f" (first: {problems[0][0]}: {problems[0][1]})" if problems else ""
        raise DataError(f"{name}: no valid product rows{first}; columns: {', '.join(seen) or 'none'}")
    return ProductsReport(kept, problems, seen)


def products_from_frame(
    frame: pd.DataFrame, columns: Mapping[str, str] | None = None, on_error: OnError = "raise"
) -> list[Product]:
    """Products from a pandas DataFrame, checked like a products file (rows named by index label).

    Args:
        frame: One row per product; columns as in :func:`load_products`.
        columns: Our field -> the frame's column.
        on_error: ``"raise"`` or ``"skip"`` malformed rows.
    """
    records, where = _frame_records(frame)
    return _load_products(records, "DataFrame", where, columns, on_error)


def _frame_records(
    frame: pd.DataFrame,
) -> tuple[Records, Callable[[int], str]]:
    labels = list(frame.index)
    records: Records = [
        (i, {str(k): v for k, v in row.items()}) for i, row in enumerate(frame.to_dict("records"))
    ]
    return records, lambda i: f"DataFrame row {labels[i]!r}"


# ---- tags -----------------------------------------------------------------------------------------
def _load_tags(
    records: Iterable[tuple[int, dict[str, Any] | str]],
    source: str,
    where: Callable[[int], str],
    columns: Mapping[str, str] | None,
    on_error: OnError,
    known_parents: Collection[str],
) -> list[Tag]:
    columns = check_columns(columns, TAG_FIELDS)
    items, errors = _rows(records, lambda r: tag_from_row(r, columns, require_id=False), where)
    unnamed = [t for _, t in items if not t.id]
    for tag, derived in zip(unnamed, ids_from_names([t.name for t in unnamed]), strict=True):
        tag.id = derived
    tags = _finish(items, errors, on_error, "tag", source, where)
    by_id = {t.id: t for t in tags}
    if unnamed:
        # Files without ids name parents by name ("Shoes,Clothing").
        by_name = {t.name: t.id for t in tags} | {
            t.name.casefold(): t.id for t in reversed(tags) if t.name.casefold() not in by_id
        }
        for t in tags:
            if t.parent is not None and t.parent not in by_id and t.parent not in known_parents:
                t.parent = by_name.get(t.parent, by_name.get(t.parent.casefold(), t.parent))
    unknown = [
        t for t in tags if t.parent is not None and t.parent not in by_id and t.parent not in known_parents
    ]
    if unknown:
        listed = ", ".join(f"'{t.id}' -> '{t.parent}'" for t in unknown[:_SHOWN_LINES])
        if on_error == "raise":
            raise DataError(f"{source}: {len(unknown)} tag(s) name an unknown parent: {listed}")
        logger.warning(
            "%s: %d tag(s) name an unknown parent; treated as roots: %s", source, len(unknown), listed
        )
        for t in unknown:
            t.parent = None
    for t in tags:
        seen = {t.id}
        node = t
        while node.parent is not None and node.parent in by_id:
            if node.parent in seen:
                raise DataError(f"{source}: the parent chain of tag '{t.id}' has a cycle")
            seen.add(node.parent)
            node = by_id[node.parent]
    return tags


def load_tags(
    path: str | os.PathLike[str],
    on_error: OnError = "raise",
    known_parents: Collection[str] = (),
    columns: Mapping[str, str] | None = None,
    language: str = "en",
) -> list[Tag]:
    """Loads a tag vocabulary and checks that every parent exists and the hierarchy has no cycle.

    Args:
        path: Tags file: CSV, JSONL or Parquet (``name`` required; ``id`` derived from the name when
            absent; then ``parent`` may name the parent by name); ``.txt`` with one name per line
            (blank lines and ``#`` comments skipped); or a SKOS vocabulary (``.ttl``, ``.rdf``,
            ``.skos``, ``.nt``): prefLabel -> name, altLabel -> synonyms, broader -> parent,
            definition -> description.
        on_error: ``"raise"`` or ``"skip"`` malformed rows (see :func:`load_products`).
        known_parents: Ids outside the file that parents may name (tags already in an index).
        columns: Our field -> the file's column (``{"name": "Label"}``).
        language: SKOS only: preferred label language (then labels without a language, then any).

    Raises:
        DataError: The file is missing, has malformed rows, unknown parents or a cycle.
    """
    records = _skos_records(Path(path), language) if _format_of(Path(path)) == "skos" else read_records(path)
    return _load_tags(records, str(path), _file_where(path), columns, on_error, known_parents)


def tags_from_frame(
    frame: pd.DataFrame,
    columns: Mapping[str, str] | None = None,
    on_error: OnError = "raise",
    known_parents: Collection[str] = (),
) -> list[Tag]:
    """Tags from a pandas DataFrame, checked like a tags file (``id`` optional, as there)."""
    records, where = _frame_records(frame)
    return _load_tags(records, "DataFrame", where, columns, on_error, known_parents)


# ---- SKOS -----------------------------------------------------------------------------------------
def _skos_records(path: Path, language: str = "en") -> Iterator[tuple[int, dict[str, Any] | str]]:
    """One record per SKOS concept, in URI order; ``line`` is the concept's position."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        from rdflib import RDF, Graph, Literal, URIRef
        from rdflib.namespace import SKOS
    except ImportError:
        raise DataError(f"{path}: reading SKOS needs rdflib: pip install 'tagindex[skos]'") from None
    graph = Graph()
    try:
        graph.parse(path, format=SKOS_SUFFIXES[path.suffix.lower()])
    except Exception as exc:  # rdflib raises parser-specific types
        raise DataError(f"{path}: cannot read SKOS ({_first_line(exc)})") from None

    def pick(values: list[Any]) -> list[str]:
        texts = [v for v in values if isinstance(v, Literal)]
        for wanted in (language, None):
            chosen = [str(v) for v in texts if v.language == wanted]
            if chosen:
                return sorted(chosen)
        return sorted(str(v) for v in texts)

    concepts = set(graph.subjects(RDF.type, SKOS.Concept)) | set(graph.subjects(SKOS.prefLabel, None))
    concepts = {c for c in concepts if isinstance(c, URIRef)}
    parents: dict[Any, list[Any]] = {c: sorted(graph.objects(c, SKOS.broader)) for c in concepts}
    for parent, child in graph.subject_objects(SKOS.narrower):
        if child in parents and parent not in parents[child]:
            parents[child].append(parent)
    local = {c: str(c).rstrip("/#").rsplit("#", 1)[-1].rsplit("/", 1)[-1] for c in concepts}
    counts: dict[str, int] = {}
    for name in local.values():
        counts[name] = counts.get(name, 0) + 1
    id_of = {c: local[c] if local[c] and counts[local[c]] == 1 else str(c) for c in concepts}
    for position, concept in enumerate(sorted(concepts, key=str), start=1):
        names = pick(list(graph.objects(concept, SKOS.prefLabel)))
        if not names:
            yield position, f"concept <{concept}> has no skos:prefLabel"
            continue
        in_file = [p for p in parents[concept] if p in id_of]
        if len(in_file) > 1:
            logger.info("%s: <%s> has %d broader concepts; using the first", path, concept, len(in_file))
        definitions = pick(list(graph.objects(concept, SKOS.definition)))
        yield (
            position,
            {
                "id": id_of[concept],
                "name": names[0],
                "synonyms": pick(list(graph.objects(concept, SKOS.altLabel))),
                "parent": id_of[in_file[0]] if in_file else None,
                "description": definitions[0] if definitions else None,
            },
        )


# ---- results out --------------------------------------------------------------------------------
def results_to_frame(results: Iterable[TagResult]) -> pd.DataFrame:
    """Tagging results as a DataFrame with one row per product-tag, best first within a product.

    Columns: ``id`` (product), ``rank`` (1 = best), ``tag``, ``score``, ``name`` (tag name, may be
    empty) and ``ancestor_of`` (set when the tag was added as an ancestor of a ranked tag).
    """
    import pandas as pd

    rows = [
        {
            "id": r.id,
            "rank": rank,
            "tag": t.tag,
            "score": float(t.score),
            "name": t.name,
            "ancestor_of": t.ancestor_of,
        }
        for r in results
        for rank, t in enumerate(r.tags, start=1)
    ]
    columns = ["id", "rank", "tag", "score", "name", "ancestor_of"]
    return pd.DataFrame(rows, columns=columns).astype({"rank": "int64", "score": "float64"})


# ---- other inputs and outputs ---------------------------------------------------------------------
def check_gold_tags(products: Iterable[Product], tag_ids: set[str], source: str = "products") -> None:
    """Raises DataError when gold tags name ids that are not in the vocabulary."""
    unknown = sorted({t for p in products for t in p.tags if t not in tag_ids})
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:_SHOWN_LINES])
        raise DataError(f"{source}: {len(unknown)} gold tag id(s) are not in the vocabulary: {shown}")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> int:
    """Writes rows atomically (temp file + rename) so a failed run never leaves half a file."""
    return write_jsonl_files({path: rows})[str(path)]


def write_jsonl_files(files: Mapping[str | os.PathLike[str], Iterable[dict[str, Any]]]) -> dict[str, int]:
    """Writes several JSON-lines files as one unit: every file is written to a temporary sibling
    first and the targets are replaced only once all of them are complete.

    Returns:
        Path -> rows written.
    """
    pending: list[tuple[str, Path]] = []
    counts: dict[str, int] = {}
    try:
        for path, rows in files.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            pending.append((tmp, target))
            count = 0
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    count += 1
                f.flush()
                os.fsync(f.fileno())
            apply_umask(tmp)  # mkstemp made it 0600
            counts[str(path)] = count
        for tmp, target in pending:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    return counts
