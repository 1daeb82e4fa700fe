"""Transfer corpora: labelled pairs from sources other than the evaluated taxonomy (issue 13, step 5).

`tagindex adapt` starts from an encoder; a model fine-tuned on *other* public labelled sources teaches
"a specific product -> the broader category it belongs to" before any label of the target vocabulary
is seen. Each source becomes ordinary labelled products and tags, so the contrastive trainer that
exists (:func:`tagindex.train.train`) fine-tunes on them unchanged:

- ``mapping``: Shopify categories -> the Google categories Shopify's merchandisers mapped them to
  (``shopify_to_google_dev.jsonl``); the product text is the Shopify leaf name, the tag the Google
  category (its path is the tag text), so the model learns to climb to a broader, differently
  worded category;
- ``mapping-context``: the same pairs, but a leaf name that several Shopify categories share gets
  its parent's name as the description ("T-Shirts" under "Baby & Toddler Tops"), so a shared name
  alone never teaches one of its meanings;
- ``attribute-tags``: AE-110K and OA-Mine *train* titles -> their product category (20 categories);
- ``breadcrumbs``: the unlabelled catalog's own shop breadcrumbs (a product's ``breadcrumb``
  attribute) as its tag, with the breadcrumb removed from the product text: seller categories are
  no label of the target vocabulary, and they teach in-domain title -> category wording.

Ids are namespaced per source so the vocabularies never collide. Product ``tags`` of the catalog are
never read.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tagindex.convert import google_categories, shopify_categories
from tagindex.errors import InputError
from tagindex.schema import Product, Tag
from tagindex.text import normalize_text, tag_path

logger = logging.getLogger(__name__)

SOURCES = ("mapping", "mapping-context", "attribute-tags", "breadcrumbs")
# Chosen on 100 labelled MWPD *train* offers (dev100): with `adapt`'s defaults, R@1 + R@5 + F1 of
# 1.379 without the breadcrumbs vs 1.179 with them (benchmarks/results/adapt_transfer_*.json).
DEFAULT_SOURCES = ("mapping", "attribute-tags")
BREADCRUMB = "breadcrumb"


def mapping_corpus(taxonomy: Path, context: bool = False) -> tuple[list[Product], list[Tag]]:
    """Shopify leaf names labelled with the Google categories they were mapped to.

    Args:
        taxonomy: The Shopify taxonomy checkout (``shopify_to_google_dev.jsonl`` inside).
        context: Give a leaf whose name several Shopify categories share (e.g. "T-Shirts" under
            "Baby & Toddler Tops" and under "Clothing Tops") its parent's name as the product's
            description. Alone, such a name teaches the encoder that every T-shirt is a baby top.
    """
    path = taxonomy / "shopify_to_google_dev.jsonl"
    if not path.exists():
        raise InputError(f"{taxonomy}: no shopify_to_google_dev.jsonl (the Shopify->Google mapping)")
    shared_names: set[str] = set()
    if context:
        counts = Counter(t.name for t in shopify_categories(taxonomy))
        shared_names = {name for name, n in counts.items() if n > 1}
    tags = google_categories(taxonomy)
    by_id = {t.id: t for t in tags}
    id_of = {" > ".join(tag_path(t, by_id)): t.id for t in tags}
    products = []
    for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            shopify, google = str(row["shopify"]), [str(g) for g in row["google"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{line}: not a mapping row ({type(exc).__name__})") from None
        gold = [id_of[g] for g in google if g in id_of]
        names = [n.strip() for n in shopify.split(" > ")]
        leaf = names[-1]
        if gold and leaf:
            parent = names[-2] if leaf in shared_names and len(names) > 1 else ""
            products.append(Product(id=f"mapping:{line}", title=leaf, description=parent, tags=gold))
    return products, tags


def attribute_tag_corpus(root: Path) -> tuple[list[Product], list[Tag]]:
    """AE-110K / OA-Mine training titles labelled with their product category."""
    products: list[Product] = []
    tags: dict[str, Tag] = {}
    for name in ("ae-110k", "oa-mine"):
        path = root / name / "train.jsonl"
        if not path.exists():
            raise InputError(f"{root}: no {name}/train.jsonl")
        for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                title, category = str(row["input"]).strip(), str(row["category"]).strip()
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{line}: not an attribute-tag row ({type(exc).__name__})") from None
            if not title or not category:
                continue
            tag_id = f"{name}:{category}"
            tags.setdefault(tag_id, Tag(id=tag_id, name=category, kind="category"))
            products.append(Product(id=f"{name}:{line}", title=title, tags=[tag_id]))
    return products, list(tags.values())


def breadcrumb_corpus(
    catalog: Sequence[Product], min_products: int = 2, max_share: float = 0.05, floor: int = 20
) -> tuple[list[Product], list[Tag]]:
    """Catalog products labelled with their own shop breadcrumb (removed from the product's text).

    Breadcrumbs on fewer than ``min_products`` products teach nothing contrastive; those on more than
    ``max_share`` of the catalog (and more than ``floor`` products) are taken for site-wide sections
    ("Sale Items", "All Products"), not categories. The trainer caps anchors per tag, so a large
    breadcrumb that passes weighs no more than a small one.
    """
    groups: dict[str, list[Product]] = {}
    for p in catalog:
        crumb = p.attributes.get(BREADCRUMB)
        if isinstance(crumb, str) and normalize_text(crumb):
            groups.setdefault(normalize_text(crumb), []).append(p)
    limit = max(min_products, floor, int(max_share * len(catalog)))
    products, tags = [], []
    for n, (crumb, members) in enumerate(sorted(groups.items())):
        if not min_products <= len(members) <= limit:
            continue
        tag_id = f"breadcrumb:{n}"
        tags.append(Tag(id=tag_id, name=crumb, kind="category"))
        for p in members:
            rest = {k: v for k, v in p.attributes.items() if k != BREADCRUMB}
            products.append(
                Product(
                    id=f"catalog:{p.id}",
                    title=p.title,
                    description=p.description,
                    attributes=rest,
                    tags=[tag_id],
                )
            )
    return products, tags


def transfer_corpus(
    sources: Sequence[str],
    data: str | Path | None = None,
    catalog: Sequence[Product] = (),
) -> tuple[list[Product], list[Tag]]:
    """Labelled products and tags of the chosen sources, ready for :func:`tagindex.train.train`.

    Args:
        sources: Names from :data:`SOURCES`.
        data: The public data directory (``shopify-taxonomy/`` and ``attribute-tags/`` inside), needed
            by ``mapping`` and ``attribute-tags``.
        catalog: The unlabelled catalog (``breadcrumbs``); its ``tags`` are ignored.

    Raises:
        InputError: Unknown source, missing files, or nothing to train on.
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise InputError(
            f"unknown transfer source(s) {unknown or list(sources)}; known: {', '.join(SOURCES)}"
        )
    products: list[Product] = []
    tags: list[Tag] = []
    for source in dict.fromkeys(sources):
        if source == "breadcrumbs":
            p, t = breadcrumb_corpus(catalog)
        else:
            if data is None:
                raise InputError(f"transfer source '{source}' needs the public data directory (--data)")
            root = Path(data)
            if source.startswith("mapping"):
                p, t = mapping_corpus(root / "shopify-taxonomy", context=source == "mapping-context")
            else:
                p, t = attribute_tag_corpus(root / "attribute-tags")
        logger.info("transfer source %s: %d products, %d tags", source, len(p), len(t))
        products += p
        tags += t
    if not products:
        raise InputError(f"the transfer sources {list(sources)} gave no labelled products")
    return products, tags
