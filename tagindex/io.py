"""Catalog and vocabulary loaders (CSV, JSONL, Parquet) with line-numbered errors.

Every malformed row is reported with its file and line (or Parquet row). By default any malformed
row fails the load; with ``on_error="skip"`` the bad rows are dropped and their count is logged,
never silently.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from tagindex.errors import InputError
from tagindex.schema import Product, Tag

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
_MAX_REPORTED = 20


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
    ):
        if suffixes.endswith(ext):
            return fmt
    raise DataError(f"{path}: unknown file type (expected .csv, .jsonl/.json or .parquet)")


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None


def read_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yields ``(line_number, record)``; a record that cannot be parsed is yielded as an error string."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    fmt = _format_of(p)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as exc:  # pyarrow raises several unrelated types for broken files
            raise DataError(f"{p}: cannot read Parquet file: {exc}") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield i, row
        return
    text = _decode(p)
    if fmt == "jsonl":
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield i, f"invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            yield i, obj if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None:
        return
    for row in reader:
        line_no = reader.line_num
        if None in row:
            yield line_no, "more fields than the header has"
            continue
        yield line_no, {k: _parse_csv_cell(v) for k, v in row.items() if k is not None}


def _parse_csv_cell(value: str | None) -> Any:
    if value is None or value == "":
        return None
    stripped = value.strip()
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return value
    return value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_id(value: Any, column: str) -> str:
    if _is_missing(value) or isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"column '{column}' must be a non-empty string or integer")
    text = str(value).strip()
    if not text:
        raise ValueError(f"column '{column}' is empty")
    return text


def _as_text(value: Any, column: str, required: bool = False) -> str:
    if _is_missing(value):
        if required:
            raise ValueError(f"missing required column '{column}'")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"column '{column}' must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"column '{column}' is empty")
    return value.strip()


def _as_str_list(value: Any, column: str) -> list[str]:
    if _is_missing(value):
        return []
    if isinstance(value, str):
        # CSV convenience: "a|b|c"
        return [v.strip() for v in value.split("|") if v.strip()]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"column '{column}' must be a list of strings")
    return [str(v).strip() for v in value if str(v).strip()]


def _as_attributes(value: Any) -> dict[str, str | list[str]]:
    if _is_missing(value):
        return {}
    if isinstance(value, list) and all(isinstance(kv, tuple | list) and len(kv) == 2 for kv in value):
        value = dict(value)  # Parquet map columns come back as key/value pairs
    if not isinstance(value, dict):
        raise ValueError("column 'attributes' must be an object of name -> value or list of values")
    out: dict[str, str | list[str]] = {}
    for name, v in value.items():
        if _is_missing(v):
            continue
        if isinstance(v, str | int | float) and not isinstance(v, bool):
            out[str(name)] = str(v)
        else:
            out[str(name)] = _as_str_list(v, f"attributes.{name}")
    return out


def _collect(path: str | os.PathLike[str], parse: Any, on_error: OnError, what: str) -> list[Any]:
    items: list[Any] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for line, record in read_records(path):
        try:
            if isinstance(record, str):
                raise ValueError(record)
            item = parse(record)
            if item.id in seen:
                raise ValueError(f"duplicate id '{item.id}' (first on line {seen[item.id]})")
            seen[item.id] = line
            items.append(item)
        except ValueError as exc:
            errors.append(f"{path}:{line}: {exc}")
    if errors:
        shown = "\n  ".join(errors[:_MAX_REPORTED])
        more = f"\n  ... and {len(errors) - _MAX_REPORTED} more" if len(errors) > _MAX_REPORTED else ""
        if on_error == "raise":
            raise DataError(f"{len(errors)} malformed {what} row(s):\n  {shown}{more}")
        logger.warning("skipped %d malformed %s row(s):\n  %s%s", len(errors), what, shown, more)
    if not items:
        raise DataError(f"{path}: no valid {what} rows")
    return items


def _parse_product(record: dict[str, Any]) -> Product:
    if "id" not in record:
        raise ValueError("missing required column 'id'")
    if "title" not in record:
        raise ValueError("missing required column 'title'")
    return Product(
        id=_as_id(record["id"], "id"),
        title=_as_text(record["title"], "title", required=True),
        description=_as_text(record.get("description"), "description"),
        attributes=_as_attributes(record.get("attributes")),
        tags=_as_str_list(record.get("tags"), "tags"),
    )


def _parse_tag(record: dict[str, Any]) -> Tag:
    if "id" not in record:
        raise ValueError("missing required column 'id'")
    if "name" not in record:
        raise ValueError("missing required column 'name'")
    parent = record.get("parent")
    return Tag(
        id=_as_id(record["id"], "id"),
        name=_as_text(record["name"], "name", required=True),
        description=_as_text(record.get("description"), "description"),
        parent=None if _is_missing(parent) or parent == "" else _as_id(parent, "parent"),
        kind=_as_text(record.get("kind"), "kind") or "tag",
        synonyms=_as_str_list(record.get("synonyms"), "synonyms"),
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
    return {k.strip(): v.strip() for k, v in value.items()}


def load_products(path: str | os.PathLike[str], on_error: OnError = "raise") -> list[Product]:
    """Loads a products file (CSV, JSONL or Parquet).

    Args:
        path: File with columns ``id``, ``title`` and optional ``description``, ``attributes``, ``tags``.
        on_error: ``"raise"`` fails on the first file with malformed rows (all are listed);
            ``"skip"`` drops them and logs their count and line numbers.

    Raises:
        DataError: The file is missing, unreadable or has malformed rows.
    """
    products: list[Product] = _collect(path, _parse_product, on_error, "product")
    return products


def load_tags(
    path: str | os.PathLike[str], on_error: OnError = "raise", known_parents: Collection[str] = ()
) -> list[Tag]:
    """Loads a tag vocabulary and checks that every parent exists and the hierarchy has no cycle.

    Args:
        path: Tags file (CSV, JSONL or Parquet).
        on_error: ``"raise"`` or ``"skip"`` malformed rows (see :func:`load_products`).
        known_parents: Ids outside the file that parents may name (tags already in an index).

    Raises:
        DataError: The file is missing, has malformed rows, unknown parents or a cycle.
    """
    tags: list[Tag] = _collect(path, _parse_tag, on_error, "tag")
    by_id = {t.id: t for t in tags}
    unknown = [
        t for t in tags if t.parent is not None and t.parent not in by_id and t.parent not in known_parents
    ]
    if unknown:
        listed = ", ".join(f"'{t.id}' -> '{t.parent}'" for t in unknown[:_MAX_REPORTED])
        if on_error == "raise":
            raise DataError(f"{path}: {len(unknown)} tag(s) name an unknown parent: {listed}")
        logger.warning(
            "%s: %d tag(s) name an unknown parent; treated as roots: %s", path, len(unknown), listed
        )
        for t in unknown:
            t.parent = None
    for t in tags:
        seen = {t.id}
        node = t
        while node.parent is not None and node.parent in by_id:
            if node.parent in seen:
                raise DataError(f"{path}: the parent chain of tag '{t.id}' has a cycle")
            seen.add(node.parent)
            node = by_id[node.parent]
    return tags


def check_gold_tags(products: Iterable[Product], tag_ids: set[str], source: str = "products") -> None:
    """Raises DataError when gold tags name ids that are not in the vocabulary."""
    unknown = sorted({t for p in products for t in p.tags if t not in tag_ids})
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:_MAX_REPORTED])
        raise DataError(f"{source}: {len(unknown)} gold tag id(s) are not in the vocabulary: {shown}")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> int:
    """Writes rows atomically (temp file + rename) so a failed run never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
