"""Converters from the public source formats to tagindex's products and tags files.

Each converter writes ``OUT/tags.jsonl`` and one products file per split of the source
(``train.jsonl``, ``validation.json`` -> ``validation.jsonl``, ``test.jsonl``). Sources (see README):

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

from tagindex.io import DataError, read_records, write_jsonl
from tagindex.schema import Product, Tag

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


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    bad: list[str] = []
    for line, record in read_records(path):
        if isinstance(record, str):
            bad.append(f"{path}:{line}: {record}")
            continue
        yield line, record
    if bad:
        raise DataError(f"{len(bad)} unreadable row(s):\n  " + "\n  ".join(bad[:20]))


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
    for split, path in _split_files(src, (".json", ".jsonl")).items():
        products = []
        for line, r in _records(path):
            title = _clean(r.get("Name"))
            levels = [str(r.get(f"lvl{i}") or "").strip() for i in (1, 2, 3)]
            if not title or not r.get("ID"):
                report.skip(f"{split}: no ID or empty Name")
                logger.warning("%s:%d: skipped (no ID or empty Name)", path, line)
                continue
            parent = None
            for level in levels:
                if not level:
                    break
                if level not in tags:
                    _, _, name = level.partition("_")
                    tags[level] = Tag(id=level, name=_clean(name) or level, parent=parent, kind="category")
                parent = level
            breadcrumb = _clean(r.get("CategoryText"))
            products.append(
                Product(
                    id=str(r["ID"]),
                    title=title,
                    description=_clean(r.get("Description")),
                    attributes={"breadcrumb": breadcrumb} if breadcrumb else {},
                    tags=[level for level in levels if level],
                )
            )
        report.files[f"{split}.jsonl"] = write_jsonl(out / f"{split}.jsonl", (p.to_dict() for p in products))
    report.files["tags.jsonl"] = write_jsonl(out / "tags.jsonl", (t.to_dict() for t in tags.values()))
    return report


def attribute_tag_id(attribute: str, value: str) -> str:
    return f"{attribute.strip()}: {value.strip()}"


def convert_attribute_tags(src: Path, out: Path) -> ConvertReport:
    """AE-110K / OA-Mine titles with ``attribute: value`` tags; ``n/a`` ("absent") values are left out."""
    report = ConvertReport()
    tags: dict[str, Tag] = {}
    for split, path in _split_files(src, (".jsonl", ".json")).items():
        products = []
        for line, r in _records(path):
            title = _clean(r.get("input"))
            if not title:
                report.skip(f"{split}: empty title")
                logger.warning("%s:%d: skipped (empty title)", path, line)
                continue
            gold = []
            for attribute, values in (r.get("target_scores") or {}).items():
                for value in values:
                    if str(value).strip().lower() in {"n/a", ""}:
                        report.skip("n/a attribute values")
                        continue
                    tag_id = attribute_tag_id(attribute, str(value))
                    tags.setdefault(tag_id, Tag(id=tag_id, name=tag_id, kind="attribute_value"))
                    gold.append(tag_id)
            category = _clean(r.get("category"))
            products.append(
                Product(
                    id=f"{split}-{line}",
                    title=title,
                    attributes={"category": category} if category else {},
                    tags=list(dict.fromkeys(gold)),
                )
            )
        report.files[f"{split}.jsonl"] = write_jsonl(out / f"{split}.jsonl", (p.to_dict() for p in products))
    report.files["tags.jsonl"] = write_jsonl(out / "tags.jsonl", (t.to_dict() for t in tags.values()))
    return report


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
    data = json.loads(path.read_text(encoding="utf-8"))
    tags: dict[str, Tag] = {}
    for attribute in data["attributes"]:
        for value in attribute.get("values", []):
            handle = value["handle"]
            if handle in tags:
                continue
            tags[handle] = Tag(
                id=handle,
                name=f"{attribute['name']}: {value['name']}",
                description=attribute.get("description", ""),
                kind="attribute_value",
            )
    return list(tags.values())


def _localized(src: Path, section: str, locale: str) -> dict[str, dict[str, Any]]:
    path = src / "data" / "localizations" / section / f"{locale}.yml"
    if not path.exists():
        raise DataError(f"{path}: no '{locale}' localisation in this Shopify taxonomy checkout")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML ({exc})") from exc
    entries = (data or {}).get(locale, {}).get(section) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise DataError(f"{path}: expected '{locale}: {section}: {{handle: {{name: ...}}}}'")
    return {str(k): v for k, v in entries.items() if isinstance(v, dict)}


def localize_shopify(src: Path, tags: list[Tag], locale: str, report: ConvertReport) -> None:
    """Names (and attribute descriptions) in ``locale``; English goes to ``names["en"]``.

    Tags without a translation keep their English name (counted in the report).
    """
    categories = _localized(src, "categories", locale)
    values = _localized(src, "values", locale)
    attributes = _localized(src, "attributes", locale)
    en_attributes = _localized(src, "attributes", "en") if attributes else {}
    # Localisations key values by friendly_id (``a_b__c_d``), dist files by handle (``a-b__c-d``).
    friendly: dict[str, str] = {}
    values_file = src / "data" / "values.yml"
    if values_file.exists() and any(t.kind != "category" for t in tags):
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for entry in yaml.load(values_file.read_text(encoding="utf-8"), Loader=loader) or []:
            if isinstance(entry, dict) and entry.get("handle") and entry.get("friendly_id"):
                friendly[str(entry["handle"])] = str(entry["friendly_id"])
    attr_by_name = {
        str(v.get("name", "")).casefold(): attributes.get(k, {}) for k, v in en_attributes.items()
    }
    for tag in tags:
        english = tag.name
        if tag.kind == "category":
            local = str(categories.get(tag.id, {}).get("name") or "").strip()
        else:
            attr_en, _, _ = english.partition(": ")
            attr = attr_by_name.get(attr_en.casefold(), {})
            key = friendly.get(tag.id, tag.id.replace("-", "_"))
            value = str(values.get(key, {}).get("name") or "").strip()
            attr_local = str(attr.get("name") or "").strip()
            local = f"{attr_local}: {value}" if value and attr_local else ""
            if local and attr.get("description"):
                tag.description = str(attr["description"]).strip()
        if not local:
            report.skip(f"no {locale} name (English kept)")
            continue
        tag.names = {"en": english, locale: local}
        tag.name = local


def convert_shopify(src: Path, out: Path, include: str = "all", locale: str | None = None) -> ConvertReport:
    """Shopify categories (with parents) and attribute values (with their attribute's description).

    With ``locale`` (e.g. ``zh-CN``) names and descriptions come from ``data/localizations`` and
    each tag also carries ``names`` in English and that language.
    """
    if include not in ("all", "categories", "values"):
        raise DataError(f"unknown include '{include}' (all, categories or values)")
    report = ConvertReport()
    tags: list[Tag] = []
    if include in ("all", "categories"):
        tags += shopify_categories(src)
    if include in ("all", "values"):
        tags += shopify_attribute_values(src)
    if locale and locale != "en":
        localize_shopify(src, tags, locale, report)
    report.files["tags.jsonl"] = write_jsonl(out / "tags.jsonl", (t.to_dict() for t in tags))
    return report


def google_categories(src: Path) -> list[Tag]:
    path = (
        src if src.is_file() else src / "data" / "integrations" / "google" / "2021-09-21" / "full_names.yml"
    )
    if not path.exists():
        raise DataError(f"{src}: Google taxonomy full_names.yml not found")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    entries = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    id_of = {e["full_name"]: f"google:{e['id']}" for e in entries}
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
    report = ConvertReport()
    report.files["tags.jsonl"] = write_jsonl(
        out / "tags.jsonl", (t.to_dict() for t in google_categories(src))
    )
    return report


CONVERTERS = {
    "mwpd": convert_mwpd,
    "attribute-tags": convert_attribute_tags,
    "shopify": convert_shopify,
    "google": convert_google,
}


def convert(
    source: str, src: str | Path, out: str | Path, include: str = "all", locale: str | None = None
) -> ConvertReport:
    """Runs the converter named ``source`` (one of :data:`CONVERTERS`).

    Args:
        source: Converter name.
        src: Source directory (or file, for ``google``).
        out: Output directory.
        include: ``shopify`` only: ``all``, ``categories`` or ``values`` (attribute values).
        locale: ``shopify`` only: names from the taxonomy's localisations (e.g. ``zh-CN``).
    """
    src, out = Path(src), Path(out)
    if source not in CONVERTERS:
        raise DataError(f"unknown source '{source}'; known: {sorted(CONVERTERS)}")
    if not src.exists():
        raise DataError(f"{src}: source path does not exist")
    if source == "shopify":
        return convert_shopify(src, out, include, locale)
    if locale:
        raise DataError(f"--locale applies to the shopify source only, not '{source}'")
    if include != "all":
        raise DataError(f"--include applies to the shopify source only, not '{source}'")
    report: ConvertReport = CONVERTERS[source](src, out)
    return report
