"""The vocabulary as a tree: children per node, tags under each node, products assigned under it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tagindex.schema import Tag


@dataclass
class Tree:
    """Children ids per parent id (``None``: the roots, tags whose parent is missing included) and the
    number of tags in each node's subtree (the node itself included)."""

    children: dict[str | None, list[str]]
    size: dict[str, int]
    parent: dict[str, str | None]


def build_tree(tags: Sequence[Tag]) -> Tree:
    """The tree of ``tags``, children in vocabulary order. A parent cycle is cut where it closes."""
    by_id = {t.id: t for t in tags}
    parent: dict[str, str | None] = {t.id: t.parent if t.parent in by_id else None for t in tags}
    for t in tags:  # cut cycles: a tag whose ancestry comes back to it becomes a root
        seen = {t.id}
        up = parent[t.id]
        while up is not None:
            if up in seen:
                parent[t.id] = None
                break
            seen.add(up)
            up = parent[up]
    children: dict[str | None, list[str]] = {}
    for t in tags:
        children.setdefault(parent[t.id], []).append(t.id)
    size = dict.fromkeys(by_id, 1)
    for t in tags:
        up = parent[t.id]
        while up is not None:
            size[up] += 1
            up = parent[up]
    return Tree(children, size, parent)


def products_per_node(tree: Tree, assignments: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Distinct products assigned to each node or below it, from ``(product id, tag id)`` pairs.

    Unknown tag ids are ignored (a tag retired since the decision).
    """
    seen: dict[str, set[str]] = {}
    for product, tag in assignments:
        node: str | None = tag if tag in tree.parent else None
        while node is not None:
            seen.setdefault(node, set()).add(product)
            node = tree.parent[node]
    return {node: len(products) for node, products in seen.items()}
