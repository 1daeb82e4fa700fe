"""Duplicate tags on the Shopify taxonomy: the unfiltered scan against the evidence-ranked one.

Counts how many of the top pairs (cosine >= ``--min-score``) are parent/child, other
ancestor/descendant, sibling or unrelated, for the old scan (nearest vectors, family included, most
similar first) and the default of ``tagindex similar --duplicates`` (family masked, siblings left
out, ranked by evidence), prints the new top 20, and writes everything to JSON::

    tagindex convert shopify --include categories --src ../shared/data/shopify-taxonomy --out work/shopify-cat
    tagindex index --tags work/shopify-cat/tags.jsonl --out work/shopify-cat-index --backend onnx-int8
    python benchmarks/duplicates_shopify.py --index work/shopify-cat-index \\
        --out benchmarks/results/duplicates_shopify.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from tagindex.duplicates import find_duplicates
from tagindex.index import TagIndex
from tagindex.text import tag_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("--min-score", type=float, default=0.95)
    ap.add_argument("--top", type=int, default=1000, help="pairs counted from the top of each list")
    ap.add_argument("--neighbours", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    load = os.getloadavg()
    index = TagIndex.load(args.index)
    tags, vectors = index.tags, index.vectors
    by_id = {t.id: t for t in tags}
    runs = {}
    for name, kwargs in (
        ("unfiltered (old scan, by score)", {"include_family": True, "include_siblings": True}),
        ("siblings kept (--include-siblings)", {"include_siblings": True}),
        ("default", {}),
    ):
        start = time.perf_counter()
        pairs = find_duplicates(tags, vectors, args.min_score, args.neighbours, **kwargs)
        seconds = time.perf_counter() - start
        if kwargs.get("include_family"):
            pairs.sort(key=lambda p: (-p.score, p.a, p.b))  # what the old scan returned
        top = pairs[: args.top]
        runs[name] = {
            "pairs": len(pairs),
            "seconds": round(seconds, 2),
            "top": len(top),
            "relations_in_top": dict(Counter(p.relation for p in top)),
            "same_name_in_top": sum(p.names_equal for p in top),
        }
        if name == "default":
            top20 = [
                {**p.to_dict(), "a_path": tag_path(by_id[p.a], by_id), "b_path": tag_path(by_id[p.b], by_id)}
                for p in pairs[:20]
            ]
    columns = ("parent_child", "ancestor", "sibling", "other")
    print(f"{'scan':<36} {'pairs':>6} {'top':>5} " + " ".join(f"{c:>12}" for c in columns) + "  same name  s")
    for name, r in runs.items():
        rel = r["relations_in_top"]
        counts = " ".join(f"{rel.get(c, 0):>12}" for c in columns)
        same, secs = r["same_name_in_top"], r["seconds"]
        print(f"{name:<36} {r['pairs']:>6} {r['top']:>5} {counts} {same:>10} {secs:>5}")
    print("\ntop 20 (default):")
    for i, p in enumerate(top20, 1):
        a, b = " > ".join(p["a_path"]), " > ".join(p["b_path"])
        print(f"{i:>2}. {p['evidence']:.3f} cos {p['score']:.3f}  {a}  <->  {b}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "index": str(args.index),
                "n_tags": len(tags),
                "min_score": args.min_score,
                "neighbours": args.neighbours,
                "runs": runs,
                "top20_default": top20,
                "loadavg_before": load,
                "loadavg_after": os.getloadavg(),
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
