"""Layering: the package's import graph has no cycle and never imports upwards.

Layers, bottom to top: the core (``tagindex.*`` except the CLI, graph and service), the graph
(``tagindex.graph``), the service (``tagindex.service``), the CLI (``tagindex.cli*``). A module may
import its own layer and those below. The benchmarks sit on top and may import anything, but take
part in the cycle check.

Every ``import`` statement counts, at module level or inside a function, except those under
``if TYPE_CHECKING:`` (never executed) for the cycle check; they still count for the layer check.
Upper layers plug into lower ones through the registries of :mod:`tagindex.registry`, which name
them only as strings.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the module name it installs as (pyproject package-dir)
PACKAGES = {
    "tagindex": "tagindex",
    "graph": "tagindex.graph",
    "service": "tagindex.service",
    "benchmarks": "benchmarks",
}
LAYERS = {"core": 0, "graph": 1, "service": 2, "cli": 3, "benchmarks": 4}


def layer(module: str) -> str:
    if module.startswith("benchmarks"):
        return "benchmarks"
    if module == "tagindex.cli" or module.startswith(("tagindex.cli.", "tagindex.cli_")):
        return "cli"
    if module == "tagindex.graph" or module.startswith("tagindex.graph."):
        return "graph"
    if module == "tagindex.service" or module.startswith("tagindex.service."):
        return "service"
    return "core"


def modules() -> dict[str, Path]:
    """Module name -> source file of every module of the four source folders."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, runtime?) of every import in a module, resolved to known modules."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            guarded.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # `from pkg import mod` imports the submodule when there is one
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        for name in names:
            # the longest known module the name starts with (``import a.b.c`` imports ``a.b.c``)
            target = name
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                yield target, node.lineno, id(node) not in guarded


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    found = modules()
    known = set(found)
    return {m: list(imports(m, p, known)) for m, p in found.items()}


def test_the_scan_sees_the_package() -> None:
    edges = graph()
    assert {"tagindex.index", "tagindex.graph.fusion", "tagindex.service.app", "benchmarks.run"} <= set(edges)
    # a function-level import is an edge too (the CLI imports the graph inside its commands)
    cli_targets = [t for m, targets in edges.items() if layer(m) == "cli" for t, _, _ in targets]
    assert any(t.startswith("tagindex.graph") for t in cli_targets)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{m} (line {line}) imports {t}: {layer(m)} -> {layer(t)}"
        for m, targets in graph().items()
        for t, line, _ in targets
        if LAYERS[layer(t)] > LAYERS[layer(m)]
    ]
    assert not upward, "\n".join(upward)


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(edges):
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(edges.get(child, ())))))
    return None


def test_the_import_graph_has_no_cycle() -> None:
    edges = {m: {t for t, _, runtime in targets if runtime} for m, targets in graph().items()}
    cycle = _cycle(edges)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ],
)
def test_the_cycle_search_finds_cycles(edges: dict[str, set[str]], expected: list[str] | None) -> None:
    assert _cycle(edges) == expected
