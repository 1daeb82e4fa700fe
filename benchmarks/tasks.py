"""Benchmark tasks: converts the public data and writes the seeded splits once, then loads them.

All files are made with the same library calls as ``tagindex convert`` and ``tagindex split``:

- ``mwpd``: MWPD train -> validation (3,000 offers, 394 GS1 tags on three levels).
- ``mwpd-zeroshot``: the seeded zero-shot split (seed 0: 41 of 204 eligible level-3 tags held out,
  with their training products); rank all tags for the validation products of held-out tags.
- ``mwpd-zeroshot-all``: same training set, all validation products against all tags.
- ``ae-to-oa`` / ``oa-to-ae``: fit on one attribute-tag dataset, tag the other's test split with its
  own vocabulary (no category in common).
- ``mwpd-level1`` / ``mwpd-level2`` / ``mwpd-level3-flat``: MWPD train -> validation against one
  GS1 level as a flat vocabulary (37 / 76 / 281 classes; the largest level-1 class is 44%).
- ``mwpd-level2-tree``: the same against GS1 levels 1-2 as a tree (gold: the level-2 class).
- ``ae-categories`` / ``oa-categories``: each attribute-tag dataset's titles -> its 10 product
  categories (train -> test; the category attribute is removed from the products).
- ``shopify-to-google``: each Shopify category path ranks all 5,595 Google categories.
- ``shopify-to-google-zh``: the same 2,589 queries as ``shopify-to-google``, written as the Shopify
  category's zh-CN path (names from the taxonomy's localisations), against the English Google
  categories: cross-lingual tag matching, Chinese -> English.
- ``google-to-shopify-zh``: the reverse: each Google category that the dev mapping uses (1,086) as an
  English path ranks all 10,595 Shopify categories by their zh-CN paths; gold = every Shopify category
  mapped to it (2.4 on average, so R@1 cannot reach 1: read MRR and R@10).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmarks.harness import Task
from tagindex.convert import convert, shopify_categories
from tagindex.io import load_products, load_tags, read_records, write_jsonl
from tagindex.schema import Product, Tag
from tagindex.splits import cross_dataset, mwpd_zeroshot, tag_similarity
from tagindex.text import ancestors, tag_path

logger = logging.getLogger(__name__)


def prepare(data_root: Path, work: Path, seed: int = 0) -> Path:
    """Converts the sources and writes the splits under ``work/data`` (skipped when already there)."""
    out = work / "data"
    steps: list[tuple[Path, Callable[[], object]]] = [
        (out / "mwpd" / "tags.jsonl", lambda: convert("mwpd", data_root / "mwpd", out / "mwpd")),
        (
            out / "ae-110k" / "tags.jsonl",
            lambda: convert("attribute-tags", data_root / "attribute-tags" / "ae-110k", out / "ae-110k"),
        ),
        (
            out / "oa-mine" / "tags.jsonl",
            lambda: convert("attribute-tags", data_root / "attribute-tags" / "oa-mine", out / "oa-mine"),
        ),
        (
            out / "google" / "tags.jsonl",
            lambda: convert("google", data_root / "shopify-taxonomy", out / "google"),
        ),
        (
            out / f"mwpd-zeroshot-seed{seed}" / "split.json",
            lambda: mwpd_zeroshot(out / "mwpd", out / f"mwpd-zeroshot-seed{seed}", seed=seed),
        ),
        (
            out / "cross" / "split.json",
            lambda: cross_dataset(out / "ae-110k", out / "oa-mine", out / "cross"),
        ),
        (
            out / "shopify-to-google" / "split.json",
            lambda: tag_similarity(
                data_root / "shopify-taxonomy" / "shopify_to_google_dev.jsonl",
                out / "google" / "tags.jsonl",
                out / "shopify-to-google",
            ),
        ),
        (
            out / "shopify-zh" / "tags.jsonl",
            lambda: convert(
                "shopify",
                data_root / "shopify-taxonomy",
                out / "shopify-zh",
                include="categories",
                locale="zh-CN",
            ),
        ),
        (
            out / "shopify-to-google-zh" / "queries.jsonl",
            lambda: chinese_similarity_tasks(data_root / "shopify-taxonomy", out),
        ),
    ]
    for marker, step in steps:
        if not marker.exists():
            logger.info("preparing %s", marker.parent)
            step()
    return out


def chinese_similarity_tasks(taxonomy: Path, data: Path) -> None:
    """Writes ``shopify-to-google-zh`` and ``google-to-shopify-zh`` (module doc) from the dev mapping.

    Needs ``data/shopify-to-google`` (English queries, gold, Google tags) and ``data/shopify-zh``
    (Shopify categories with zh-CN names) from :func:`prepare`.
    """
    english_id = {
        " > ".join(tag_path(t, {x.id: x for x in cats})): t.id
        for cats in [shopify_categories(taxonomy)]
        for t in cats
    }
    zh_tags = load_tags(data / "shopify-zh" / "tags.jsonl")
    zh_by_id = {t.id: t for t in zh_tags}
    google = load_tags(data / "shopify-to-google" / "tags.jsonl")
    google_by_id = {t.id: t for t in google}
    queries = load_products(data / "shopify-to-google" / "queries.jsonl")
    rows = [r for _, r in read_records(taxonomy / "shopify_to_google_dev.jsonl") if isinstance(r, dict)]
    forward: list[Product] = []
    reverse: dict[str, list[str]] = {}
    for query, row in zip(queries, rows, strict=True):
        shopify_id = english_id.get(row["shopify"])
        if shopify_id is None or query.title != row["shopify"]:
            raise ValueError(f"{row['shopify']}: not a Shopify category path")
        zh_path = " > ".join(tag_path(zh_by_id[shopify_id], zh_by_id))
        forward.append(Product(id=query.id, title=zh_path, tags=query.tags))
        for g in query.tags:
            reverse.setdefault(g, []).append(shopify_id)
    fwd, rev = data / "shopify-to-google-zh", data / "google-to-shopify-zh"
    write_jsonl(fwd / "tags.jsonl", (t.to_dict() for t in google))
    write_jsonl(
        rev / "queries.jsonl",
        (
            Product(
                id=g, title=" > ".join(tag_path(google_by_id[g], google_by_id)), tags=sorted(set(ids))
            ).to_dict()
            for g, ids in sorted(reverse.items())
        ),
    )
    write_jsonl(rev / "tags.jsonl", (t.to_dict() for t in zh_tags))
    write_jsonl(fwd / "queries.jsonl", (p.to_dict() for p in forward))


def _sample(products: list, n: int | None, seed: int) -> list:
    if not n or n >= len(products):
        return products
    keep = set(random.Random(seed).sample(range(len(products)), n))
    return [p for i, p in enumerate(products) if i in keep]


def load_task(
    name: str, data: Path, sample: int | None = None, seed: int = 0, train_sample: int | None = None
) -> Task:
    """Loads one task; ``sample``/``train_sample`` keep seeded random subsets (quick pipeline checks)."""
    zs = data / f"mwpd-zeroshot-seed{seed}"
    if name == "mwpd":
        d = data / "mwpd"
        task = Task(
            name,
            "MWPD train -> validation (level-3 recall; challenge metric over levels 1-3)",
            "catalog",
            load_products(d / "train.jsonl"),
            load_products(d / "validation.jsonl"),
            load_tags(d / "tags.jsonl"),
            level=3,
            data=d,
        )
    elif name == "mwpd-zeroshot":
        task = Task(
            name,
            f"MWPD zero-shot split (seed {seed}): held-out level-3 tags for their validation products",
            "zeroshot",
            load_products(zs / "train.jsonl"),
            load_products(zs / "heldout.jsonl"),
            load_tags(zs / "tags.jsonl"),
            level=3,
            data=zs,
        )
    elif name == "mwpd-zeroshot-all":
        task = Task(
            name,
            f"MWPD zero-shot split (seed {seed}), generalised: all validation products, all tags",
            "zeroshot",
            load_products(zs / "train.jsonl"),
            load_products(zs / "validation.jsonl"),
            load_tags(zs / "tags.jsonl"),
            level=3,
            data=zs,
        )
    elif name in ("ae-to-oa", "oa-to-ae"):
        d = data / "cross" / ("ae-110k_to_oa-mine" if name == "ae-to-oa" else "oa-mine_to_ae-110k")
        task = Task(
            name,
            f"cross-dataset {d.name}: fit on the first, tag the second's test split with its own tags",
            "cross",
            load_products(d / "train.jsonl"),
            load_products(d / "test.jsonl"),
            load_tags(d / "tags.jsonl"),
            level=None,
            data=d,
        )
    elif name == "shopify-to-google":
        d = data / "shopify-to-google"
        task = Task(
            name,
            "tag similarity: each Shopify category path ranks all Google categories",
            "similarity",
            [],
            load_products(d / "queries.jsonl"),
            load_tags(d / "tags.jsonl"),
            level=None,
            data=d,
        )
    elif name in ("mwpd-level1", "mwpd-level2", "mwpd-level3-flat"):
        d = data / "mwpd"
        task = Task(
            name,
            f"MWPD train -> validation against the {_level_size(name)} GS1 classes of one level as a "
            "flat vocabulary (a small, coarse, imbalanced one)",
            "catalog",
            *_mwpd_level(d, int(name[len("mwpd-level")])),
            level=None,
            data=d,
        )
    elif name == "mwpd-level2-tree":
        d = data / "mwpd"
        train, test, level2 = _mwpd_level(d, 2)
        roots = [t for t in load_tags(d / "tags.jsonl") if t.parent is None]
        by_id = {t.id: t for t in load_tags(d / "tags.jsonl")}
        task = Task(
            name,
            "MWPD train -> validation against GS1 levels 1-2 as a tree (76 level-2 leaves)",
            "catalog",
            train,
            test,
            roots + [replace(t, parent=by_id[t.id].parent) for t in level2],
            level=None,
            data=d,
        )
    elif name in ("ae-categories", "oa-categories"):
        d = data / ("ae-110k" if name == "ae-categories" else "oa-mine")
        task = Task(
            name,
            f"{d.name} titles -> its 10 product categories (a small, concrete, balanced vocabulary)",
            "catalog",
            *_categories(d),
            level=None,
            data=d,
        )
    elif name in ("shopify-to-google-zh", "google-to-shopify-zh"):
        d = data / name
        task = Task(
            name,
            "cross-lingual tag similarity: zh-CN Shopify paths rank English Google categories"
            if name == "shopify-to-google-zh"
            else "cross-lingual tag similarity: English Google paths rank zh-CN Shopify categories",
            "similarity",
            [],
            load_products(d / "queries.jsonl"),
            load_tags(d / "tags.jsonl"),
            level=None,
            data=d,
        )
    else:
        raise ValueError(f"unknown task '{name}'; known: {TASKS}")
    task.test = _sample(task.test, sample, seed)
    task.train = _sample(task.train, train_sample, seed)
    return task


def _level_size(name: str) -> str:
    return {"mwpd-level1": "37", "mwpd-level2": "76", "mwpd-level3-flat": "281"}[name]


def _mwpd_level(d: Path, level: int) -> tuple[list[Product], list[Product], list[Tag]]:
    """MWPD train and validation with the GS1 classes of one level as a flat vocabulary."""
    tags = load_tags(d / "tags.jsonl")
    by_id = {t.id: t for t in tags}
    depth = {t.id: len(ancestors(t.id, by_id)) + 1 for t in tags}
    vocab = [replace(t, parent=None) for t in tags if depth[t.id] == level]
    keep = {t.id for t in vocab}

    def only(products: list[Product]) -> list[Product]:
        return [replace(p, tags=[t for t in p.tags if t in keep]) for p in products]

    return only(load_products(d / "train.jsonl")), only(load_products(d / "validation.jsonl")), vocab


def _categories(d: Path) -> tuple[list[Product], list[Product], list[Tag]]:
    """An attribute-tag dataset's products labelled with their product category; the category
    attribute is removed (the encoder reads attributes)."""

    def relabel(products: list[Product]) -> list[Product]:
        out = []
        for p in products:
            attributes = dict(p.attributes)
            category = str(attributes.pop("category"))
            out.append(replace(p, attributes=attributes, tags=[category]))
        return out

    train, test = relabel(load_products(d / "train.jsonl")), relabel(load_products(d / "test.jsonl"))
    names = sorted({p.tags[0] for p in train + test})
    return train, test, [Tag(id=n, name=n, kind="category") for n in names]


TASKS = [
    "mwpd",
    "mwpd-level1",
    "mwpd-level2",
    "mwpd-level3-flat",
    "mwpd-level2-tree",
    "ae-categories",
    "oa-categories",
    "mwpd-zeroshot",
    "mwpd-zeroshot-all",
    "ae-to-oa",
    "oa-to-ae",
    "shopify-to-google",
    "shopify-to-google-zh",
    "google-to-shopify-zh",
]
