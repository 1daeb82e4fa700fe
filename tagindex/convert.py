"""Converters from the public source formats to tagindex's products and tags files.

Each converter writes ``OUT/tags.jsonl`` and one products file per split of the source
(``train.jsonl``, ``validation.json`` -> ``validation.jsonl``, ``test.jsonl``). Every source file is
read and checked before anything is written, and the outputs are written as one unit
(:func:`tagindex.io.write_jsonl_files`): a bad or empty input leaves existing outputs untouched.
Sources (see README):

- MWPD 2020 task 2: github.com/ir-ischool-uos/mwpd ``data/task2_train_val_with_labels.zip``
- AE-110K / OA-Mine: github.com/wbsg-uni-mannheim/ExtractGPT ``data/processed_datasets/{ae-110k,oa-mine}``
- Shopify product taxonomy (with Google's taxonomy): github.com/Shopify/product-taxonomy
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tagindex.io import DataError, as_id, as_text, raise_or_log, read_records, write_jsonl_files
from tagindex.schema import LIMITS, Product, Tag

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class ConvertReport:
    """What a conversion wrote and what it left out, and why."""

    files: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def __str__(self) -> str:
        lines = [f"wrote {name}: {n} rows" for name, n in self.files.items()]
        lines += [f"left out {n} ({reason})" for reason, n in self.skipped.items()]
        return "\n".join(lines)


def _clean(text: Any) -> str:
    # MWPD carries U+FFFD where the crawl lost a character; it only adds noise for the encoder.
    return " ".join(str(text or "").replace("\ufffd", " ").split())


def _text(record: dict[str, Any], column: str, limit: int) -> str:
    """A source text field: missing -> "", numbers as text, anything else refused."""
    return _clean(as_text(record.get(column), column, limit))


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    bad: list[tuple[str, str]] = []
    for line, record in read_records(path):
        if isinstance(record, str):
            bad.append((f"{path}:{line}", record))
            continue
        yield line, record
    raise_or_log(bad, "raise", "source")


def _checked(path: Path, line: int, make: Any) -> Any:
    """Runs ``make()``; a ValueError (bad id, non-text field, over a limit) names file and line."""
    try:
        return make()
    except ValueError as exc:
        raise DataError(f"{path}:{line}: {exc}") from None


def _write(out: Path, report: ConvertReport, outputs: dict[str, list[dict[str, Any]]]) -> ConvertReport:
    """Writes every output file as one unit, after refusing an empty one."""
    for name, rows in outputs.items():
        if not rows:
            raise DataError(
                f"{out / name}: nothing to write (its source has no usable rows); nothing written"
            )
    counts = write_jsonl_files({out / name: rows for name, rows in outputs.items()})
    report.files.update({name: counts[str(out / name)] for name in outputs})
    return report


def _split_files(src: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found = {}
    for split in SPLITS:
        for suffix in suffixes:
            if (src / f"{split}{suffix}").exists():
                found[split] = src / f"{split}{suffix}"
                break
    if not found:
        raise DataError(f"{src}: no split files found (expected train/validation/test with {suffixes})")
    return found


def convert_mwpd(src: Path, out: Path) -> ConvertReport:
    """MWPD offers: tags are the three GS1 levels, each linked to its parent level."""
    report = ConvertReport()
    tags: dict[str, Tag] = {}
    outputs: dict[str, list[dict[str, Any]]] = {}
    for split, path in _split_files(src, (".json", ".jsonl")).items():
        products = []
        for line, r in _records(path):
            title, description, breadcrumb, levels = _checked(
                path,
                line,
                lambda r=r: (
                    _text(r, "Name", LIMITS.title_chars),
                    _text(r, "Description", LIMITS.description_chars),
                    _text(r, "CategoryText", LIMITS.attribute_value_chars),
                    [as_id(r[f"lvl{i}"], f"lvl{i}") if r.get(f"lvl{i}") else "" for i in (1, 2, 3)],
                ),
            )
            if not title or r.get("ID") in (None, ""):
                report.skip(f"{split}: no ID or empty Name")
                logger.warning("%s:%d: skipped (no ID or empty Name)", path, line)
                continue
            product_id = _checked(path, line, lambda r=r: as_id(r["ID"], "ID"))
            parent = None
            for level in levels:
                if not level:
                    break
                if level not in tags:
                    _, _, name = level.partition("_")
                    tags[level] = Tag(id=level, name=_clean(name) or level, parent=parent, kind="category")
                parent = level
            products.append(
                Product(
                    id=product_id,
                    title=title,
                    description=description,
                    attributes={"breadcrumb": breadcrumb} if breadcrumb else {},
                    tags=[level for level in levels if level],
                ).to_dict()
            )
        if not products:
            raise DataError(f"{path}: no usable rows (empty, or every row skipped); nothing written")
        outputs[f"{split}.jsonl"] = products
    outputs["tags.jsonl"] = [t.to_dict() for t in tags.values()]
    return _write(out, report, outputs)


def attribute_tag_id(attribute: str, value: str) -> str:
    return f"{attribute.strip()}: {value.strip()}"


def convert_attribute_tags(src: Path, out: Path) -> ConvertReport:
    """AE-110K / OA-Mine titles with ``attribute: value`` tags; ``n/a`` ("absent") values are left out."""
    report = ConvertReport()
    tags: dict[str, Tag] = {}
    outputs: dict[str, list[dict[str, Any]]] = {}
    for split, path in _split_files(src, (".jsonl", ".json")).items():
        products = []
        for line, r in _records(path):
            title, category = _checked(
                path,
                line,
                lambda r=r: (
                    _text(r, "input", LIMITS.title_chars),
                    _text(r, "category", LIMITS.attribute_value_chars),
                ),
            )
            if not title:
                report.skip(f"{split}: empty title")
                logger.warning("%s:%d: skipped (empty title)", path, line)
                continue
            scores = r.get("target_scores") or {}
            # Values per attribute: a list, or (AE-110K / OA-Mine) an object value -> score.
            if not isinstance(scores, dict) or not all(isinstance(v, list | dict) for v in scores.values()):
                raise DataError(f"{path}:{line}: 'target_scores' must map attributes to values")
            gold = []
            for attribute, values in scores.items():
                for value in values:
                    if str(value).strip().lower() in {"n/a", ""}:
                        report.skip("n/a attribute values")
                        continue
                    tag_id = _checked(
                        path, line, lambda a=attribute, v=value: as_id(attribute_tag_id(a, str(v)), "tag")
                    )
                    tags.setdefault(tag_id, Tag(id=tag_id, name=tag_id, kind="attribute_value"))
                    gold.append(tag_id)
            products.append(
                Product(
                    id=f"{split}-{line}",
                    title=title,
                    attributes={"category": category} if category else {},
                    tags=list(dict.fromkeys(gold)),
                ).to_dict()
            )
        if not products:
            raise DataError(f"{path}: no usable rows (empty, or every row skipped); nothing written")
        outputs[f"{split}.jsonl"] = products
    outputs["tags.jsonl"] = [t.to_dict() for t in tags.values()]
    return _write(out, report, outputs)


_CATEGORY_LINE = re.compile(r"^gid://shopify/TaxonomyCategory/(\S+)\s*:\s*(.+)$")


def shopify_categories(src: Path) -> list[Tag]:
    path = src / "dist" / "en" / "categories.txt"
    if not path.exists():
        raise DataError(f"{src}: not a Shopify product-taxonomy checkout (no dist/en/categories.txt)")
    tags = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        match = _CATEGORY_LINE.match(raw.strip())
        if not match:
            raise DataError(f"{path}:{number}: not a category line")
        short_id, full = match.groups()
        parent = short_id.rsplit("-", 1)[0] if "-" in short_id else None
        tags.append(Tag(id=short_id, name=full.split(" > ")[-1].strip(), parent=parent, kind="category"))
    return tags


def shopify_attribute_values(src: Path) -> list[Tag]:
    path = src / "dist" / "en" / "attributes.json"
    if not path.exists():
        raise DataError(f"{src}: no dist/en/attributes.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    tags: dict[str, Tag] = {}
    try:
        for attribute in data["attributes"]:
            for value in attribute.get("values", []):
                handle = as_id(value["handle"], "handle")
                if handle in tags:
                    continue
                tags[handle] = Tag(
                    id=handle,
                    name=f"{attribute['name']}: {value['name']}",
                    description=str(attribute.get("description", "")),
                    kind="attribute_value",
                )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DataError(f"{path}: not a Shopify attributes file ({type(exc).__name__}: {exc})") from None
    return list(tags.values())


def convert_shopify(src: Path, out: Path, include: str = "all") -> ConvertReport:
    """Shopify categories (with parents) and attribute values (with their attribute's description)."""
    if include not in ("all", "categories", "values"):
        raise DataError(f"unknown include '{include}' (all, categories or values)")
    report = ConvertReport()
    tags: list[Tag] = []
    if include in ("all", "categories"):
        tags += shopify_categories(src)
    if include in ("all", "values"):
        tags += shopify_attribute_values(src)
    return _write(out, report, {"tags.jsonl": [t.to_dict() for t in tags]})


def google_categories(src: Path) -> list[Tag]:
    path = (
        src if src.is_file() else src / "data" / "integrations" / "google" / "2021-09-21" / "full_names.yml"
    )
    if not path.exists():
        raise DataError(f"{src}: Google taxonomy full_names.yml not found")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        entries = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        id_of = {e["full_name"]: f"google:{e['id']}" for e in entries}
    except (yaml.YAMLError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise DataError(f"{path}: not a Google taxonomy full_names.yml ({type(exc).__name__})") from None
    tags = []
    for e in entries:
        parts = e["full_name"].split(" > ")
        parent_name = " > ".join(parts[:-1])
        if parent_name and parent_name not in id_of:
            raise DataError(f"{path}: category '{e['full_name']}' has no parent entry")
        tags.append(
            Tag(id=id_of[e["full_name"]], name=parts[-1], parent=id_of.get(parent_name), kind="category")
        )
    return tags


def convert_google(src: Path, out: Path) -> ConvertReport:
    """Google's product taxonomy (ids ``google:<number>``, with parents)."""
    return _write(out, ConvertReport(), {"tags.jsonl": [t.to_dict() for t in google_categories(src)]})


CONVERTERS = {
    "mwpd": convert_mwpd,
    "attribute-tags": convert_attribute_tags,
    "shopify": convert_shopify,
    "google": convert_google,
}


def convert(source: str, src: str | Path, out: str | Path, include: str = "all") -> ConvertReport:
    """Runs the converter named ``source`` (one of :data:`CONVERTERS`).

    Args:
        source: Converter name.
        src: Source directory (or file, for ``google``).
        out: Output directory.
        include: ``shopify`` only: ``all``, ``categories`` or ``values`` (attribute values).
    """
    src, out = Path(src), Path(out)
    if source not in CONVERTERS:
        raise DataError(f"unknown source '{source}'; known: {sorted(CONVERTERS)}")
    if not src.exists():
        raise DataError(f"{src}: source path does not exist")
    if source == "shopify":
        return convert_shopify(src, out, include)
    if include != "all":
        raise DataError(f"--include applies to the shopify source only, not '{source}'")
    report: ConvertReport = CONVERTERS[source](src, out)
    return report
