"""Seeded dev split carved from training data, for model selection that never sees evaluation data."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tagindex.schema import Product


def _rank(seed: int, product_id: str) -> str:
    return hashlib.sha256(f"{seed}:{product_id}".encode()).hexdigest()


def dev_split(
    products: Sequence[Product], fraction: float = 0.15, seed: int = 13
) -> tuple[list[Product], list[Product]]:
    """Splits labelled products into (fit, dev), stratified by each product's last (deepest) tag.

    Within each group, products are ordered by a hash of (seed, id) and ``floor(fraction * n)`` go to
    dev, so a tag with a single product always stays in the fit part; the result does not depend on
    input order, and the same seed gives the same split.

    Raises:
        ValueError: ``fraction`` is not in (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"dev fraction must be in (0, 1), got {fraction}")
    groups: dict[str, list[Product]] = {}
    for p in products:
        groups.setdefault(p.tags[-1] if p.tags else "", []).append(p)
    dev_ids: set[str] = set()
    for members in groups.values():
        members = sorted(members, key=lambda p: _rank(seed, p.id))
        dev_ids.update(p.id for p in members[: int(fraction * len(members))])
    fit = [p for p in products if p.id not in dev_ids]
    dev = [p for p in products if p.id in dev_ids]
    return fit, dev
