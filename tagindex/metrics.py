"""Ranking and classification metrics over run files and gold tags (pure numpy).

Vocabulary used throughout:

- A **run** maps a product id to its ranked tags, best first: ``{"p1": [("tagA", 0.9), ("tagB", 0.7)]}``.
  The rank of a tag is its position in the list (the run format is written best first); repeated
  tags keep their first position.
- **Gold** maps a product id to its true tag ids. Products with no gold tag are left out of every
  average; gold products missing from the run count as empty rankings (all misses).
- A tag's **level** is its depth through ``parent`` links in the tags file (roots are level 1).
  The ranking *at level L* keeps only level-L tags of the run, in order; when the run holds no
  level-L tag at all (e.g. it ranks leaves only), each ranked tag is replaced by its level-L
  ancestor instead (first occurrence kept), so the ancestors of the top leaf count.

Metrics (binary relevance, all in [0, 1]):

- ``recall@k``: per product ``|gold ∩ top-k| / |gold|``, averaged over products (as ranx does);
  ``micro_recall@k`` pools all (product, gold tag) pairs; ``macro_recall@k`` averages each gold
  tag's own recall over the products that carry it.
- ``precision@k``: per product ``|gold ∩ top-k| / k`` averaged over products; ``macro_precision@k``
  averages, over tags that appear in some top-k, the share of those products that really have the tag.
- ``mrr``: reciprocal rank of the first gold tag (0 when none is ranked), averaged over products.
- ``ndcg@k``: binary-gain nDCG with ``1 / log2(rank + 1)`` discounts, averaged over products.
- ``weighted_f1``: for single-label levels, the F1 of each label for the top-1 prediction, weighted
  by the label's support (scikit-learn's ``average="weighted"``). The MWPD 2020 challenge metric
  (``challenge``) is the mean of it over levels 1-3.
- Frequency buckets: gold tags grouped by how many training products carry them (default edges
  ``(5, 38)``: ``<=5``, ``6-38``, ``>38``; ``"auto"`` uses tertiles of the training counts).

Main entry point: :func:`evaluate` (returns a JSON-ready dict) and :func:`format_report`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tagindex.schema import Product, Tag, TagResult

logger = logging.getLogger(__name__)

Run = dict[str, list[tuple[str, float]]]
Gold = dict[str, list[str]]
LevelMode = Literal["auto", "filter", "ancestors"]

METRICS = ("recall", "precision", "mrr", "ndcg")
DEFAULT_KS = (1, 5, 10)
DEFAULT_BUCKET_EDGES = (5, 38)


# ---- inputs -----------------------------------------------------------------------------------------
def read_run(path: str | os.PathLike[str]) -> Run:
    """Reads a run file (one JSON line per product: ``{"id": ..., "tags": [{"tag": .., "score": ..}]}``,
    or the CSV / Parquet forms of :mod:`tagindex.runio`).

    Raises:
        tagindex.io.DataError: A line is not a valid run row or a product id repeats.
    """
    from tagindex.io import raise_or_log
    from tagindex.runio import read_run_records

    run: Run = {}
    errors: list[tuple[str, str]] = []
    for line, row in read_run_records(path):
        where = f"{path}:{line}"
        if isinstance(row, str):
            errors.append((where, row))
            continue
        pid, hits = row.get("id"), row.get("tags")
        if pid is None or not isinstance(hits, list):
            errors.append((where, "a run row needs 'id' and a 'tags' list"))
            continue
        pid = str(pid)
        if pid in run:
            errors.append((where, f"product id '{pid}' appears twice"))
            continue
        ranked: list[tuple[str, float]] = []
        for hit in hits:
            if not isinstance(hit, dict) or "tag" not in hit:
                errors.append((where, "each tag entry needs a 'tag' field"))
                break
            score = hit.get("score", 0.0)
            ranked.append((str(hit["tag"]), float(score) if isinstance(score, int | float) else 0.0))
        run[pid] = ranked
    raise_or_log(errors, "raise", "run")
    return run


def run_from_results(results: Iterable[TagResult]) -> Run:
    """Turns :class:`~tagindex.schema.TagResult` objects (e.g. from ``TagIndex.tag``) into a run."""
    return {r.id: [(t.tag, float(t.score)) for t in r.tags] for r in results}


def gold_from_products(products: Iterable[Product]) -> Gold:
    """Gold tags of labelled products (products without tags are kept, with an empty list)."""
    return {p.id: list(dict.fromkeys(p.tags)) for p in products}


def tag_levels(tags: Iterable[Tag]) -> dict[str, int]:
    """Depth of every tag through its parents (roots are level 1)."""
    by_id = {t.id: t for t in tags}
    levels: dict[str, int] = {}
    for tid in by_id:
        depth, node, seen = 1, by_id[tid], {tid}
        while node.parent is not None and node.parent in by_id and node.parent not in seen:
            seen.add(node.parent)
            node = by_id[node.parent]
            depth += 1
        levels[tid] = depth
    return levels


def tag_counts(train: Iterable[Product] | Gold) -> Counter[str]:
    """How many training products carry each tag."""
    lists = train.values() if isinstance(train, Mapping) else (p.tags for p in train)
    return Counter(t for tags in lists for t in set(tags))


# ---- core metric functions over aligned lists --------------------------------------------------------
def hit_matrix(ranked: Sequence[Sequence[str]], gold: Sequence[set[str]], depth: int) -> np.ndarray:
    """Relevance of the first ``depth`` ranked tags of each product: bool array (n, depth)."""
    hits = np.zeros((len(ranked), depth), dtype=bool)
    for i, (tags, rel) in enumerate(zip(ranked, gold, strict=True)):
        for j, tag in enumerate(tags[:depth]):
            hits[i, j] = tag in rel
    return hits


def recall_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Per-product recall@k from a hit matrix (n, depth) and gold counts (n,) (all > 0)."""
    return hits[:, :k].sum(axis=1) / n_rel


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Per-product precision@k: hits in the top k divided by k (fewer than k ranked tags count as misses)."""
    return hits[:, :k].sum(axis=1) / k


def reciprocal_rank(hits: np.ndarray) -> np.ndarray:
    """Per-product 1 / rank of the first relevant tag, 0 when none is ranked."""
    any_hit = hits.any(axis=1)
    first = hits.argmax(axis=1)
    return np.where(any_hit, 1.0 / (first + 1), 0.0)


def ndcg_at_k(hits: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Per-product binary nDCG@k."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # (k,)
    top = hits[:, :k]
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)
    ideal_counts = np.minimum(n_rel, k).astype(int)
    cum = np.concatenate([[0.0], np.cumsum(discounts)])
    return dcg / cum[ideal_counts]


def weighted_f1(y_true: Sequence[str], y_pred: Sequence[str | None]) -> float:
    """Support-weighted F1 over the true labels (scikit-learn ``f1_score(average="weighted")``).

    A missing prediction (None) is simply wrong.
    """
    if not y_true:
        return float("nan")
    support = Counter(y_true)
    predicted = Counter(p for p in y_pred if p is not None)
    correct = Counter(t for t, p in zip(y_true, y_pred, strict=True) if t == p)
    total = 0.0
    for label, n_true in support.items():
        tp = correct[label]
        if tp == 0:
            continue
        precision, recall = tp / predicted[label], tp / n_true
        total += n_true * 2 * precision * recall / (precision + recall)
    return total / len(y_true)


# ---- level rankings ---------------------------------------------------------------------------------
def _ancestor_at(
    tag: str, level: int, levels: Mapping[str, int], parent: Mapping[str, str | None]
) -> str | None:
    depth = levels.get(tag)
    if depth is None or depth < level:
        return None
    node: str | None = tag
    while node is not None and levels[node] > level:
        node = parent.get(node)
    return node


def level_rankings(
    run: Run,
    tags: Sequence[Tag],
    level: int,
    mode: LevelMode = "auto",
) -> tuple[dict[str, list[str]], str]:
    """The ranking at one level for every product in the run, and the mode used (see module doc)."""
    levels = tag_levels(tags)
    parent = {t.id: t.parent for t in tags}
    if mode == "auto":
        has_level = any(levels.get(tag) == level for ranked in run.values() for tag, _ in ranked)
        mode = "filter" if has_level else "ancestors"
    out: dict[str, list[str]] = {}
    for pid, ranked in run.items():
        if mode == "filter":
            seq = [tag for tag, _ in ranked if levels.get(tag) == level]
        else:
            seq = [a for tag, _ in ranked if (a := _ancestor_at(tag, level, levels, parent)) is not None]
        out[pid] = list(dict.fromkeys(seq))
    return out, mode


# ---- evaluation -------------------------------------------------------------------------------------
def _ranking_metrics(
    ranked: Mapping[str, Sequence[str]],
    gold: Mapping[str, set[str]],
    ks: Sequence[int],
    metrics: Sequence[str],
) -> dict[str, Any]:
    pids = [p for p, g in gold.items() if g]
    out: dict[str, Any] = {"n_products": len(pids)}
    if not pids:
        return out
    rows = [list(dict.fromkeys(ranked.get(p, []))) for p in pids]
    rels = [gold[p] for p in pids]
    depth = max([max(ks), *(len(r) for r in rows)]) if "mrr" in metrics else max(ks)
    hits = hit_matrix(rows, rels, depth)
    n_rel = np.array([len(r) for r in rels], dtype=float)
    for k in ks:
        if "recall" in metrics:
            out[f"recall@{k}"] = float(recall_at_k(hits, n_rel, k).mean())
            out[f"micro_recall@{k}"] = float(hits[:, :k].sum() / n_rel.sum())
            out[f"macro_recall@{k}"] = _macro_recall(rows, rels, k)
        if "precision" in metrics:
            out[f"precision@{k}"] = float(precision_at_k(hits, k).mean())
            out[f"macro_precision@{k}"] = _macro_precision(rows, rels, k)
        if "ndcg" in metrics:
            out[f"ndcg@{k}"] = float(ndcg_at_k(hits, n_rel, k).mean())
    if "mrr" in metrics:
        out["mrr"] = float(reciprocal_rank(hits).mean())
    return out


def per_tag_recall(rows: Sequence[Sequence[str]], rels: Sequence[set[str]], k: int) -> dict[str, float]:
    """Recall@k of each gold tag over the products that carry it."""
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for row, rel in zip(rows, rels, strict=True):
        top = set(row[:k])
        for tag in rel:
            total[tag] += 1
            found[tag] += tag in top
    # Sorted: gold sets iterate in a hash-seed order, and a float mean must not depend on it.
    return {tag: found[tag] / total[tag] for tag in sorted(total)}


def _macro_recall(rows: Sequence[Sequence[str]], rels: Sequence[set[str]], k: int) -> float:
    per_tag = per_tag_recall(rows, rels, k)
    return float(np.mean(list(per_tag.values()))) if per_tag else float("nan")


def _macro_precision(rows: Sequence[Sequence[str]], rels: Sequence[set[str]], k: int) -> float:
    right: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    for row, rel in zip(rows, rels, strict=True):
        for tag in row[:k]:
            shown[tag] += 1
            right[tag] += tag in rel
    return float(np.mean([right[t] / n for t, n in shown.items()])) if shown else float("nan")


def bucket_edges_from_counts(counts: Mapping[str, int]) -> tuple[int, int]:
    """Tertile edges of per-tag training counts (the ``"auto"`` buckets)."""
    values = np.array(sorted(c for c in counts.values() if c > 0))
    if len(values) == 0:
        return DEFAULT_BUCKET_EDGES
    low, high = np.quantile(values, [1 / 3, 2 / 3], method="lower")
    return int(low), int(max(high, low + 1))


def bucket_name(count: int, edges: tuple[int, int]) -> str:
    low, high = edges
    if count <= low:
        return f"<={low}"
    if count <= high:
        return f"{low + 1}-{high}"
    return f">{high}"


def evaluate(
    run: Run,
    gold: Gold,
    tags: Sequence[Tag] | None = None,
    train: Iterable[Product] | Gold | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = METRICS,
    bucket_edges: tuple[int, int] | Literal["auto"] = DEFAULT_BUCKET_EDGES,
    level_mode: LevelMode = "auto",
) -> dict[str, Any]:
    """Evaluates a run against gold tags.

    Args:
        run: Product id -> ranked (tag, score) pairs, best first.
        gold: Product id -> true tag ids.
        tags: The vocabulary; enables per-level metrics, the weighted F1 of the top-1 tag per level
            and the ``challenge`` mean (levels 1-3) when every product has one gold tag per level.
        train: Training products (or their gold); enables frequency buckets.
        ks: Cut-offs for recall, precision and nDCG.
        metrics: Any of ``recall``, ``precision``, ``mrr``, ``ndcg``.
        bucket_edges: ``(low, high)`` training-count edges or ``"auto"`` (tertiles of the counts).
        level_mode: How to rank one level: ``filter`` level-L tags, ``ancestors`` of ranked tags, or
            ``auto`` (filter when the run holds level-L tags at all).

    Returns:
        A JSON-ready dict: ``overall`` (all gold tags against the whole run), ``levels`` (per level),
        ``buckets`` (per training-frequency bucket: macro and micro recall@k, each tag judged on its
        own level's ranking when tags are given), ``challenge`` and bookkeeping counts.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError("cut-offs k must be positive integers")
    gold_sets = {pid: set(g) for pid, g in gold.items()}
    labelled = [pid for pid, g in gold_sets.items() if g]
    report: dict[str, Any] = {
        "k": ks,
        "n_gold_products": len(gold_sets),
        "n_evaluated": len(labelled),
        "n_missing_from_run": sum(pid not in run for pid in labelled),
        "n_run_not_in_gold": sum(pid not in gold_sets for pid in run),
    }
    if report["n_missing_from_run"]:
        logger.warning(
            "%d labelled products have no row in the run (counted as misses)", report["n_missing_from_run"]
        )
    overall_ranked = {pid: [t for t, _ in ranked] for pid, ranked in run.items()}
    report["overall"] = _ranking_metrics(overall_ranked, gold_sets, ks, metrics)

    # The ranking each gold tag is judged on: its own level's when the hierarchy is known.
    ranking_for_level: dict[int, dict[str, list[str]]] = {}
    levels: dict[str, int] = {}
    if tags is not None:
        levels = tag_levels(tags)
        gold_levels = sorted({levels[t] for g in gold_sets.values() for t in g if t in levels})
        report["levels"] = {}
        f1s: dict[int, float] = {}
        for level in gold_levels:
            ranked, mode = level_rankings(run, tags, level, level_mode)
            ranking_for_level[level] = ranked
            level_gold = {pid: {t for t in g if levels.get(t) == level} for pid, g in gold_sets.items()}
            entry = _ranking_metrics(ranked, level_gold, ks, metrics)
            entry["mode"] = mode
            single = [pid for pid, g in level_gold.items() if len(g) == 1]
            if single and len(single) == sum(1 for g in level_gold.values() if g):
                y_true = [next(iter(level_gold[pid])) for pid in single]
                y_pred = [ranked[pid][0] if ranked.get(pid) else None for pid in single]
                entry["weighted_f1"] = f1s[level] = weighted_f1(y_true, y_pred)
            report["levels"][str(level)] = entry
        if all(level in f1s for level in (1, 2, 3)):
            report["challenge"] = float(np.mean([f1s[1], f1s[2], f1s[3]]))

    if train is not None and "recall" in metrics:
        counts = tag_counts(train)
        edges: tuple[int, int] = (
            bucket_edges_from_counts(counts)
            if bucket_edges == "auto"
            else (int(bucket_edges[0]), int(bucket_edges[1]))
        )
        report["bucket_edges"] = list(edges)
        report["buckets"] = _bucket_metrics(
            overall_ranked,
            ranking_for_level,
            levels,
            gold_sets,
            counts,
            edges,
            ks,
        )
    return report


def _bucket_metrics(
    overall: Mapping[str, list[str]],
    by_level: Mapping[int, Mapping[str, list[str]]],
    levels: Mapping[str, int],
    gold: Mapping[str, set[str]],
    counts: Mapping[str, int],
    edges: tuple[int, int],
    ks: Sequence[int],
) -> dict[str, Any]:
    names = [bucket_name(0, edges), bucket_name(edges[0] + 1, edges), bucket_name(edges[1] + 1, edges)]
    out: dict[str, Any] = {}
    for name in names:
        pairs_found = dict.fromkeys(ks, 0)
        per_tag: dict[str, dict[int, list[int]]] = {}
        n_pairs = 0
        for pid, g in gold.items():
            for tag in g:
                if bucket_name(counts.get(tag, 0), edges) != name:
                    continue
                level = levels.get(tag, 0)
                ranked = by_level[level].get(pid, []) if level in by_level else overall.get(pid, [])
                n_pairs += 1
                for k in ks:
                    hit = int(tag in ranked[:k])
                    pairs_found[k] += hit
                    per_tag.setdefault(tag, {}).setdefault(k, []).append(hit)
        entry: dict[str, Any] = {"n_tags": len(per_tag), "n_pairs": n_pairs}
        for k in ks:
            if n_pairs:
                entry[f"macro_recall@{k}"] = float(np.mean([np.mean(v[k]) for v in per_tag.values()]))
                entry[f"micro_recall@{k}"] = pairs_found[k] / n_pairs
        out[name] = entry
    return out


# ---- output -----------------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned plain-text table: first column left-aligned, the rest right-aligned; floats to 4 places."""
    cells = [[str(h) for h in header], *([_fmt(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    )


def format_report(report: Mapping[str, Any]) -> str:
    """A plain-text view of an :func:`evaluate` report: one row per metric, one column per section."""
    sections: list[tuple[str, Mapping[str, Any]]] = [("overall", report["overall"])]
    sections += [(f"level {level}", entry) for level, entry in report.get("levels", {}).items()]
    names = list(dict.fromkeys(k for _, e in sections for k, v in e.items() if isinstance(v, float)))
    rows: list[list[Any]] = [["products", *(e.get("n_products", "") for _, e in sections)]]
    rows += [[name, *(e.get(name, "") for _, e in sections)] for name in names]
    lines = [format_table(["metric", *(s for s, _ in sections)], rows)]
    if "challenge" in report:
        lines.append(
            "\nMWPD challenge metric (mean weighted F1 of the top-1 tag, levels 1-3): "
            f"{report['challenge']:.4f}"
        )
    if "buckets" in report:
        buckets = report["buckets"]
        cols = list(dict.fromkeys(c for entry in buckets.values() for c in entry if "@" in c))
        lines.append(f"\ntraining-frequency buckets (edges {report['bucket_edges']}):")
        lines.append(
            format_table(
                ["bucket", "tags", "pairs", *cols],
                [
                    [name, e["n_tags"], e["n_pairs"], *(e.get(c, "") for c in cols)]
                    for name, e in buckets.items()
                ],
            )
        )
    notes = []
    if report.get("n_missing_from_run"):
        notes.append(
            f"{report['n_missing_from_run']} labelled products missing from the run (counted as misses)"
        )
    if report.get("n_run_not_in_gold"):
        notes.append(f"{report['n_run_not_in_gold']} run rows have no gold product (ignored)")
    if notes:
        lines.append("\n" + "; ".join(notes))
    return "\n".join(lines)


def write_report(path: str | os.PathLike[str], report: Mapping[str, Any]) -> None:
    """Writes a report as indented JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=False)
        f.write("\n")
