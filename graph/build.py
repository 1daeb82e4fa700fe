"""Builds the typed product–attribute–tag graph and saves it as a directory of Parquet edge lists.

Node ids are ``TYPE:key`` strings so that one namespace holds every kind of node:

- ``product:<id>``: a labelled catalog product;
- ``tag:<id>``: a vocabulary tag (category, attribute value, keyword ...);
- ``attribute:<name>``: an attribute name (``color``); ``value:<name>=<value>``: one of its values;
- ``keyword:<text>``: a shop breadcrumb segment (MWPD ``CategoryText``), a weak, noisy signal.

Edges (undirected, typed, weighted): product–tag (gold labels), product–value, value–attribute,
product–keyword (weak), tag–parent, tag–tag co-occurrence (Ochiai coefficient of the two tags' product
sets) and Shopify category–attribute links (``data/categories/*.yml`` ``attributes:`` lists).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import yaml

from tagindex.config import _Params
from tagindex.io import DataError
from tagindex.schema import Product, Tag
from tagindex.store import IndexFormatError, atomic_directory, library_versions, read_manifest, write_manifest
from tagindex.version import __version__

logger = logging.getLogger(__name__)

KIND = "tagindex-graph"
FORMAT_VERSION = 1
BREADCRUMB = "breadcrumb"  # the attribute the MWPD converter stores CategoryText under
NODE_TYPES = ("product", "tag", "attribute", "value", "keyword")
EDGE_TYPES = (
    "product_tag",
    "product_value",
    "value_attribute",
    "product_keyword",
    "tag_parent",
    "tag_cooccurrence",
    "category_attribute",
)


@dataclass
class GraphParams(_Params):
    """Edge weights and filters for :func:`build_graph`.

    Attributes:
        keyword_weight: Weight of product–keyword edges; breadcrumbs are shop-specific and noisy.
        min_cooccurrence: Tag pairs sharing fewer products get no co-occurrence edge.
        max_value_chars: Attribute values (and breadcrumb segments) longer than this are free text,
            not a shared value or keyword node.
    """

    keyword_weight: float = 0.5
    min_cooccurrence: int = 2
    max_value_chars: int = 60


def node_id(kind: str, key: str) -> str:
    return f"{kind}:{key}"


def normalize_key(text: str) -> str:
    """Lower-case, single-spaced key so that 'Men's  Shoes' and "men's shoes" share a node."""
    return " ".join(str(text).casefold().split())


def attribute_key(name: str) -> str:
    # Shopify handles are snake_case ("target_gender"); products say "Target gender".
    return re.sub(r"[\s\-]+", "_", normalize_key(name))


def breadcrumb_keywords(breadcrumb: str, max_chars: int = 60) -> list[str]:
    """Breadcrumb segments split on '>' as normalised keywords, without repeats.

    Some shops put URLs or whole product paths in their breadcrumbs (seen in MWPD); segments longer
    than ``max_chars`` or that look like a URL/path are not keywords and are dropped.
    """
    out = [normalize_key(s) for s in str(breadcrumb).split(">")]
    keep = (s for s in out if s and len(s) <= max_chars and not s.startswith(("/", "http", "www.")))
    return list(dict.fromkeys(keep))


def product_features(product: Product, params: GraphParams | None = None) -> list[str]:
    """Node ids a product links to through its own data (values and keywords): known even for new products."""
    params = params or GraphParams()
    out: list[str] = []
    for name, value in product.attributes.items():
        values = value if isinstance(value, list) else [value]
        if attribute_key(name) == BREADCRUMB:
            out += [
                node_id("keyword", k) for v in values for k in breadcrumb_keywords(v, params.max_value_chars)
            ]
            continue
        for v in values:
            key = normalize_key(v)
            if key and len(key) <= params.max_value_chars:
                out.append(node_id("value", f"{attribute_key(name)}={key}"))
    return list(dict.fromkeys(out))


def shopify_category_attributes(src: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Category id -> attribute handles from a Shopify product-taxonomy checkout's ``data/categories``."""
    root = Path(src)
    folder = root / "data" / "categories" if (root / "data" / "categories").is_dir() else root
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise DataError(f"{src}: no Shopify data/categories/*.yml files")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    links: dict[str, list[str]] = {}
    for path in files:
        try:
            entries = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: unreadable YAML: {exc}") from None
        for number, entry in enumerate(entries or [], start=1):
            if not isinstance(entry, dict) or "id" not in entry:
                raise DataError(f"{path}: entry {number} has no 'id'")
            links[str(entry["id"])] = [str(a) for a in entry.get("attributes") or []]
    return links


def build_graph(
    products: Sequence[Product],
    tags: Sequence[Tag],
    category_attributes: dict[str, list[str]] | None = None,
    params: GraphParams | None = None,
) -> nx.MultiGraph:
    """Builds the typed graph. Parallel edges of different types (e.g. parent and co-occurrence) are kept.

    Args:
        products: Labelled products (their ``tags`` become product–tag edges).
        tags: The vocabulary; every tag becomes a node, linked to its parent.
        category_attributes: Optional Shopify category id -> attribute handles; only categories that are
            tags of the vocabulary are linked.
        params: Edge weights and filters.

    Raises:
        DataError: A product names a tag that is not in the vocabulary.
    """
    params = params or GraphParams()
    g = nx.MultiGraph()
    tag_ids = {t.id for t in tags}
    for t in tags:
        g.add_node(node_id("tag", t.id), type="tag", name=t.name)
    for t in tags:
        if t.parent is not None and t.parent in tag_ids:
            g.add_edge(node_id("tag", t.id), node_id("tag", t.parent), type="tag_parent", weight=1.0)
    unknown = sorted({x for p in products for x in p.tags if x not in tag_ids})
    if unknown:
        raise DataError(f"{len(unknown)} product tag id(s) are not in the vocabulary: {unknown[:10]}")

    tag_count: Counter[str] = Counter()
    pair_count: Counter[tuple[str, str]] = Counter()
    for p in products:
        pid = node_id("product", p.id)
        g.add_node(pid, type="product", name=p.title)
        labels = sorted(set(p.tags))
        for x in labels:
            g.add_edge(pid, node_id("tag", x), type="product_tag", weight=1.0)
        tag_count.update(labels)
        pair_count.update(combinations(labels, 2))
        for feature in product_features(p, params):
            kind, _, key = feature.partition(":")
            if kind == "keyword":
                g.add_node(feature, type="keyword", name=key)
                g.add_edge(pid, feature, type="product_keyword", weight=params.keyword_weight)
            else:
                attribute = node_id("attribute", key.split("=", 1)[0])
                if not g.has_node(feature):
                    g.add_node(feature, type="value", name=key)
                    g.add_node(attribute, type="attribute", name=key.split("=", 1)[0])
                    g.add_edge(feature, attribute, type="value_attribute", weight=1.0)
                g.add_edge(pid, feature, type="product_value", weight=1.0)
    for (a, b), n in pair_count.items():
        if n >= params.min_cooccurrence:
            weight = n / (tag_count[a] * tag_count[b]) ** 0.5
            g.add_edge(node_id("tag", a), node_id("tag", b), type="tag_cooccurrence", weight=weight)

    if category_attributes:
        linked = 0
        for category, attributes in category_attributes.items():
            if category not in tag_ids:
                continue
            linked += 1
            for handle in attributes:
                attribute = node_id("attribute", attribute_key(handle))
                if not g.has_node(attribute):
                    g.add_node(attribute, type="attribute", name=attribute_key(handle))
                g.add_edge(node_id("tag", category), attribute, type="category_attribute", weight=1.0)
        logger.info(
            "linked %d of %d Shopify categories (the rest are not in the vocabulary)",
            linked,
            len(category_attributes),
        )
    return g


def graph_counts(g: nx.MultiGraph) -> dict[str, dict[str, int]]:
    """Node and edge counts per type (every known type listed, zeros included)."""
    nodes = Counter(d["type"] for _, d in g.nodes(data=True))
    edges = Counter(d["type"] for _, _, d in g.edges(data=True))
    return {
        "nodes": {k: nodes.get(k, 0) for k in NODE_TYPES},
        "edges": {k: edges.get(k, 0) for k in EDGE_TYPES},
    }


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    lines = []
    for section in ("nodes", "edges"):
        total = sum(counts[section].values())
        lines.append(f"{section}: {total:,}")
        lines += [f"  {k:<20} {v:>10,}" for k, v in counts[section].items()]
    return "\n".join(lines)


def save_graph(
    g: nx.MultiGraph, path: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Writes ``nodes.parquet`` (id, type, name), ``edges.parquet`` (source, target, type, weight) and
    ``manifest.json`` (counts, checksums); an existing directory is replaced only on success."""
    counts = graph_counts(g)
    with atomic_directory(path) as tmp:
        nodes = pd.DataFrame(
            [(n, d["type"], d.get("name", "")) for n, d in g.nodes(data=True)],
            columns=["id", "type", "name"],
        )
        edges = pd.DataFrame(
            [(u, v, d["type"], float(d.get("weight", 1.0))) for u, v, d in g.edges(data=True)],
            columns=["source", "target", "type", "weight"],
        )
        nodes.to_parquet(tmp / "nodes.parquet", index=False)
        edges.to_parquet(tmp / "edges.parquet", index=False)
        manifest = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "tagindex_version": __version__,
            "n_nodes": g.number_of_nodes(),
            "n_edges": g.number_of_edges(),
            "counts": counts,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": library_versions("networkx", "pandas", "pyarrow"),
            **(extra or {}),
        }
        write_manifest(tmp, manifest)
    return manifest


def load_graph_tables(path: str | os.PathLike[str], verify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Node and edge tables of a saved graph (checked against its manifest).

    Raises:
        IndexFormatError: The directory is not a complete, intact saved graph.
    """
    manifest = read_manifest(path, KIND, verify=verify, format_version=FORMAT_VERSION)
    directory = manifest.root
    nodes = pd.read_parquet(directory / "nodes.parquet")
    edges = pd.read_parquet(directory / "edges.parquet")
    if len(nodes) != manifest["n_nodes"] or len(edges) != manifest["n_edges"]:
        raise IndexFormatError(f"{directory}: node/edge tables disagree with the manifest counts")
    return nodes, edges


def load_graph(path: str | os.PathLike[str], verify: bool = True) -> nx.MultiGraph:
    """Reads a saved graph back into a networkx MultiGraph."""
    nodes, edges = load_graph_tables(path, verify=verify)
    g = nx.MultiGraph()
    g.add_nodes_from((r.id, {"type": r.type, "name": r.name}) for r in nodes.itertuples(index=False))
    g.add_edges_from(
        (r.source, r.target, {"type": r.type, "weight": r.weight}) for r in edges.itertuples(index=False)
    )
    return g


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Reads VmHWM (reset by exec) rather than ``ru_maxrss``, which Linux carries over from the parent
    across fork + exec and so reports the parent's peak for a small child process.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_from_files(
    products_path: str | os.PathLike[str],
    tags_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    shopify: str | os.PathLike[str] | None = None,
    params: GraphParams | None = None,
) -> dict[str, Any]:
    """Loads the inputs, builds the graph, saves it to ``out`` and returns its manifest."""
    from tagindex.io import load_products, load_tags

    params = params or GraphParams()
    start = time.perf_counter()
    products = load_products(products_path)
    tags = load_tags(tags_path)
    links = shopify_category_attributes(shopify) if shopify else None
    g = build_graph(products, tags, links, params)
    seconds = time.perf_counter() - start
    inputs: dict[str, Any] = {"products": str(products_path), "tags": str(tags_path)}
    if shopify:
        inputs["shopify"] = str(shopify)
    peak_mb = peak_rss_mb()
    extra = {
        "params": params.to_dict(),
        "inputs": inputs,
        "build_seconds": round(seconds, 3),
        "peak_rss_mb": round(peak_mb, 1),
    }
    return save_graph(g, out, extra)
