"""What the product-type match of an adapted index costs at query time (issue 13, ingredient 2b).

Loads one index written by ``tagindex adapt`` and scores the same products twice, in one process:
as adapted (the title match on) and with the match switched off on a copy of its score adjuster.
Product vectors are encoded once beforehand, so the figures are the scoring path alone
(``TagIndex.tag_vectors``: adapted scores, title match, top-k): single products one at a time
(median and p95 ms) and one batch of all of them (products/s). Benchmarks are not tests: run it
alone on an idle machine.

Example (the index ``make demo`` adapts: 10,595 Shopify categories)::

    python -m benchmarks.adapt_latency --index work/shopify-adapted --products work/demo-products.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import git_commit, machine_info
from tagindex.index import TagIndex
from tagindex.io import load_products

REPO = Path(__file__).resolve().parents[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(index: TagIndex, ids: list[str], vectors: np.ndarray, titles: list[str], top_k: int) -> dict:
    single = []
    for i in range(len(ids)):
        start = time.perf_counter()
        index.tag_vectors(ids[i : i + 1], vectors[i : i + 1], top_k, titles=titles[i : i + 1])
        single.append(1000 * (time.perf_counter() - start))
    start = time.perf_counter()
    index.tag_vectors(ids, vectors, top_k, titles=titles)
    batch_s = time.perf_counter() - start
    return {
        "single_ms_median": round(statistics.median(single), 3),
        "single_ms_p95": round(_pct(single, 0.95), 3),
        "batch_products_per_s": round(len(ids) / batch_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--index", required=True, help="an index directory written by tagindex adapt")
    p.add_argument("--products", required=True)
    p.add_argument("--n", type=int, default=200, help="products scored")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3, help="passes per setting; the best pass is kept")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "adapt_latency.json"))
    args = p.parse_args(argv)
    machine = machine_info()
    index = TagIndex.load(args.index)
    if index.adjuster is None or index.adjuster.lexicon is None:
        raise SystemExit(f"{args.index}: not an adapted index with the title match")
    products = load_products(args.products)[: args.n]
    ids, titles = [q.id for q in products], [q.title for q in products]
    vectors = index.encode_products(products)  # (n, dim), outside the timed part
    with_match = index.adjuster
    without = copy.copy(with_match)
    without.lexicon, without.lexical_weight = None, 0.0
    settings = [("adapted, title match off", without), ("adapted, title match on (default)", with_match)]
    lexicon = with_match.lexicon
    if lexicon.grafted_names:  # an `adapt --graft` index: also the match without the lent names
        ungrafted = copy.copy(with_match)
        ungrafted.lexicon = copy.copy(lexicon)
        ungrafted.lexicon.graft([], [])
        settings.insert(1, ("adapted, title match on, graft removed", ungrafted))
        settings[-1] = (f"adapted, match + {len(lexicon.grafted_names)} lent names (as saved)", with_match)
    rows = {}
    for name, adjuster in settings:
        index.adjuster = adjuster
        index.tag_vectors(ids, vectors, args.top_k, titles=titles)  # warm-up: first-call costs
        passes = [measure(index, ids, vectors, titles, args.top_k) for _ in range(args.repeats)]
        rows[name] = min(passes, key=lambda r: r["single_ms_median"])
    index.adjuster = with_match
    load_after = list(os.getloadavg())
    print(
        f"{len(products)} products, {len(index)} tags, top {args.top_k}; scoring only (vectors precomputed)"
    )
    print(f"{'setting':44} {'single ms (median)':>19} {'p95':>8} {'batch products/s':>17}")
    for name, r in rows.items():
        print(
            f"{name:44} {r['single_ms_median']:>19} {r['single_ms_p95']:>8} {r['batch_products_per_s']:>17}"
        )
    off, on = rows[settings[0][0]], rows[settings[-1][0]]
    ratio = on["single_ms_median"] / off["single_ms_median"]
    print(f"single-product time as saved / without the match: {ratio:.2f}")
    print(f"load average at start {machine['load_average_at_start'][:1]}, at end {load_after[:1]}")
    out = {
        "command": "python -m benchmarks.adapt_latency "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "load_average_at_end": load_after,
        "git": git_commit(REPO),
        "index": str(args.index),
        "n_products": len(products),
        "n_tags": len(index),
        "top_k": args.top_k,
        "rows": rows,
        "single_ratio_on_off": round(ratio, 3),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
