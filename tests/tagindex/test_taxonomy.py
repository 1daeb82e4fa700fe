"""The vocabulary as a tree: subtree sizes, cycles cut, products counted once per node."""

from __future__ import annotations

from tagindex.schema import Tag
from tagindex.taxonomy import build_tree, products_per_node

TAGS = [
    Tag("a", "A"),
    Tag("b", "B", parent="a"),
    Tag("c", "C", parent="b"),
    Tag("d", "D", parent="a"),
    Tag("x", "X", parent="y"),  # a cycle: x -> y -> x
    Tag("y", "Y", parent="x"),
    Tag("z", "Z", parent="missing"),
]


def test_tree_sizes_children_and_roots() -> None:
    tree = build_tree(TAGS)
    assert tree.children[None][0] == "a" and "z" in tree.children[None]
    assert tree.children["a"] == ["b", "d"]
    assert tree.size == {"a": 4, "b": 2, "c": 1, "d": 1, "x": tree.size["x"], "y": tree.size["y"], "z": 1}
    assert sorted(tree.size[t] for t in ("x", "y")) == [1, 2]  # the cycle is cut into a root and a child
    assert sum(tree.size[r] for r in tree.children[None]) == len(TAGS)


def test_products_count_once_per_node() -> None:
    tree = build_tree(TAGS)
    counts = products_per_node(tree, [("p1", "c"), ("p1", "b"), ("p2", "d"), ("p3", "gone")])
    assert counts == {"c": 1, "b": 1, "a": 2, "d": 1}
