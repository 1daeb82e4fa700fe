"""Seeded, documented evaluation splits, written as plain files so anyone can recreate them.

Every split writes a directory of products/tags files plus ``split.json`` (kind, parameters, seed,
counts and the SHA-256 of every input and output file). Nothing depends on time, machine or hash
randomisation: the same inputs and seed give byte-identical files.

Splits (see :data:`SPLITS`):

``mwpd-zeroshot``
    From a converted MWPD directory (``tagindex convert mwpd``): ``fraction`` (20%) of the level-3
    tags that have at least ``min_products`` (3) training products are drawn with ``random.Random(seed)``
    from the sorted eligible ids and held out. Every training product carrying a held-out tag is removed
    from training. Files: ``train.jsonl`` (what a model may learn from), ``heldout.jsonl`` (validation
    products whose gold holds a held-out tag: rank the held-out tags among all tags),
    ``removed.jsonl`` (the training products taken out; never used for training, a larger second
    evaluation set), ``validation.jsonl`` (all validation products: the generalised setting),
    ``tags.jsonl`` (the full vocabulary) and ``heldout_tags.json`` (the held-out ids).
``dev``
    Carves a seeded ``fraction`` (10%) of a products file into ``dev.jsonl``; the rest is
    ``train.jsonl``. Model and threshold selection happens on such a dev split, never on validation.
``cross-dataset``
    From two converted attribute-tag directories (``tagindex convert attribute-tags``), e.g. AE-110K
    and OA-Mine: ``A_to_B/`` holds A's ``train.jsonl`` for fitting, B's ``test.jsonl`` to tag and B's
    whole vocabulary as ``tags.jsonl``; ``B_to_A/`` the reverse. ``split.json`` records how many tag
    ids and categories the two share.
``tag-similarity``
    From ``shopify_to_google_dev.jsonl`` and Google's tags (``tagindex convert google``): ``queries.jsonl``
    in the products format (title = the Shopify category path, tags = the mapped Google ids) and
    ``tags.jsonl``; ranking all Google categories for each query gives recall@k of the mapped one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tagindex.io import DataError, load_products, load_tags, read_records, write_jsonl
from tagindex.metrics import tag_levels
from tagindex.schema import Product

logger = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_products(path: Path, products: Iterable[Product]) -> int:
    return write_jsonl(path, (p.to_dict() for p in products))


def _finish(
    out: Path, kind: str, params: dict[str, Any], inputs: dict[str, Path], counts: dict[str, Any]
) -> dict[str, Any]:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "split.json")
    manifest = {
        "kind": kind,
        "params": params,
        "counts": counts,
        "inputs": {
            name: {"file": path.name, "sha256": _sha256(path)} for name, path in sorted(inputs.items())
        },
        "outputs": {str(p.relative_to(out)): _sha256(p) for p in files},
    }
    (out / "split.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _require(directory: Path, *names: str) -> list[Path]:
    paths = [directory / n for n in names]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{directory}: missing {', '.join(missing)} (convert the source first)")
    return paths


def _check_fraction(fraction: float) -> None:
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")


def mwpd_zeroshot(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    seed: int = 0,
    fraction: float = 0.2,
    min_products: int = 3,
    level: int = 3,
) -> dict[str, Any]:
    """Holds out a seeded share of level-``level`` tags and all their training products (module doc)."""
    _check_fraction(fraction)
    data, out = Path(data), Path(out)
    train_path, val_path, tags_path = _require(data, "train.jsonl", "validation.jsonl", "tags.jsonl")
    tags = load_tags(tags_path)
    train = load_products(train_path)
    validation = load_products(val_path)
    levels = tag_levels(tags)
    counts = Counter(t for p in train for t in set(p.tags))
    eligible = sorted(t.id for t in tags if levels[t.id] == level and counts[t.id] >= min_products)
    if not eligible:
        raise ValueError(f"no level-{level} tag has {min_products} or more training products")
    n_held = max(1, round(fraction * len(eligible)))
    held = set(random.Random(seed).sample(eligible, n_held))
    out.mkdir(parents=True, exist_ok=True)
    kept = [p for p in train if not held.intersection(p.tags)]
    removed = [p for p in train if held.intersection(p.tags)]
    heldout = [p for p in validation if held.intersection(p.tags)]
    _write_products(out / "train.jsonl", kept)
    _write_products(out / "removed.jsonl", removed)
    _write_products(out / "heldout.jsonl", heldout)
    shutil.copyfile(val_path, out / "validation.jsonl")
    shutil.copyfile(tags_path, out / "tags.jsonl")
    (out / "heldout_tags.json").write_text(json.dumps(sorted(held), ensure_ascii=False, indent=0) + "\n")
    return _finish(
        out,
        "mwpd-zeroshot",
        {"seed": seed, "fraction": fraction, "min_products": min_products, "level": level},
        {"train": train_path, "validation": val_path, "tags": tags_path},
        {
            "eligible_tags": len(eligible),
            "heldout_tags": len(held),
            "train_products": len(kept),
            "removed_products": len(removed),
            "heldout_products": len(heldout),
            "validation_products": len(validation),
        },
    )


def dev_split(
    products_file: str | os.PathLike[str], out: str | os.PathLike[str], seed: int = 0, fraction: float = 0.1
) -> dict[str, Any]:
    """Seeded random ``fraction`` of a products file as ``dev.jsonl``, the rest as ``train.jsonl``."""
    _check_fraction(fraction)
    src, out = Path(products_file), Path(out)
    products = load_products(src)
    order = list(range(len(products)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(fraction * len(products)))
    dev_rows = set(order[:n_dev])
    out.mkdir(parents=True, exist_ok=True)
    # Both files keep the source order so a diff against the source stays readable.
    _write_products(out / "train.jsonl", (p for i, p in enumerate(products) if i not in dev_rows))
    _write_products(out / "dev.jsonl", (p for i, p in enumerate(products) if i in dev_rows))
    return _finish(
        out,
        "dev",
        {"seed": seed, "fraction": fraction},
        {"products": src},
        {"train_products": len(products) - n_dev, "dev_products": n_dev},
    )


def cross_dataset(
    data: str | os.PathLike[str], other: str | os.PathLike[str], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Both directions of fit-on-one, tag-the-other for two converted attribute-tag datasets."""
    a, b, out = Path(data), Path(other), Path(out)
    name_a, name_b = a.name, b.name
    if name_a == name_b:
        raise ValueError("the two datasets need different directory names (they name the outputs)")
    files = {n: _require(d, "train.jsonl", "test.jsonl", "tags.jsonl") for n, d in ((name_a, a), (name_b, b))}
    tag_ids = {n: {t.id for t in load_tags(f[2])} for n, f in files.items()}
    categories: dict[str, set[str]] = {}
    for n, f in files.items():
        categories[n] = {
            str(p.attributes.get("category", "")) for path in f[:2] for p in load_products(path)
        } - {""}
    counts: dict[str, Any] = {
        "shared_tag_ids": len(tag_ids[name_a] & tag_ids[name_b]),
        "shared_categories": sorted(categories[name_a] & categories[name_b]),
    }
    inputs: dict[str, Path] = {}
    for src, dst in ((name_a, name_b), (name_b, name_a)):
        target = out / f"{src}_to_{dst}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files[src][0], target / "train.jsonl")
        shutil.copyfile(files[dst][1], target / "test.jsonl")
        shutil.copyfile(files[dst][2], target / "tags.jsonl")
        counts[f"{src}_to_{dst}"] = {
            "train_products": len(load_products(target / "train.jsonl")),
            "test_products": len(load_products(target / "test.jsonl")),
            "tags": len(tag_ids[dst]),
        }
        inputs.update(
            {f"{src}_train": files[src][0], f"{src}_test": files[src][1], f"{src}_tags": files[src][2]}
        )
    return _finish(out, "cross-dataset", {"data": name_a, "other": name_b}, inputs, counts)


def tag_similarity(
    mapping: str | os.PathLike[str], tags_file: str | os.PathLike[str], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Shopify -> Google mapping as queries (products format) over Google's tags (module doc)."""
    mapping, tags_path, out = Path(mapping), Path(tags_file), Path(out)
    tags = load_tags(tags_path)
    by_id = {t.id: t for t in tags}
    from tagindex.text import tag_path

    id_of = {" > ".join(tag_path(t, by_id)): t.id for t in tags}
    # tag_path collapses repeated names; index the raw path too so lookups never miss.
    for t in tags:
        names, node = [t.name], t
        while node.parent is not None:
            node = by_id[node.parent]
            names.append(node.name)
        id_of.setdefault(" > ".join(reversed(names)), t.id)
    queries: list[Product] = []
    errors: list[str] = []
    for line, row in read_records(mapping):
        if (
            isinstance(row, str)
            or not isinstance(row.get("shopify"), str)
            or not isinstance(row.get("google"), list)
        ):
            errors.append(f"{mapping}:{line}: expected {{'shopify': path, 'google': [paths]}}")
            continue
        unknown = [g for g in row["google"] if g not in id_of]
        if unknown:
            errors.append(f"{mapping}:{line}: Google categor(y/ies) not in {tags_path.name}: {unknown[:3]}")
            continue
        queries.append(Product(id=f"q{line}", title=row["shopify"], tags=[id_of[g] for g in row["google"]]))
    if errors:
        raise DataError(f"{len(errors)} bad mapping row(s):\n  " + "\n  ".join(errors[:20]))
    out.mkdir(parents=True, exist_ok=True)
    _write_products(out / "queries.jsonl", queries)
    shutil.copyfile(tags_path, out / "tags.jsonl")
    return _finish(
        out,
        "tag-similarity",
        {},
        {"mapping": mapping, "tags": tags_path},
        {"queries": len(queries), "tags": len(tags)},
    )


SPLITS: dict[str, Callable[..., dict[str, Any]]] = {
    "mwpd-zeroshot": mwpd_zeroshot,
    "dev": dev_split,
    "cross-dataset": cross_dataset,
    "tag-similarity": tag_similarity,
}
