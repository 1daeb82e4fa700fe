"""The floor of issue 13's skew count: what a ranker with every top-1 answer right still scores.

Issue 13 counts a tag as a hub when it is in the top 5 of more than 5% of the products and its own
gold share is 5% or less. This script scores rankers that put each product's gold leaf first and
fill the other four slots by a fixed rule, on MWPD validation (gold labels read for the oracle only;
nothing here is fitted or chosen on them):

- *nearest*: the four leaves whose tag texts are nearest the gold leaf's (packaged MiniLM);
- *siblings*: the gold leaf's siblings first (nearest first), then the nearest other leaves;
- *random*: four other leaves drawn at random (seeded): no two products share their fill.

If the nearest and sibling fills count several hubs while the random fill counts none, the count
cannot reach 0 for a ranker whose other slots hold related classes: what reaches 0 is a top 5 of
unrelated classes. The same table reports each ranker's hubs *outside their family* (see
:func:`benchmarks.adapt_ablation.skew`), which the issue's hubness (Bread Crumbs for a supplement)
is.

    python -m benchmarks.skew_floor --work work/bench
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.adapt_ablation import skew
from benchmarks.harness import git_commit
from benchmarks.tasks import load_task, prepare
from tagindex.encoders import load_encoder
from tagindex.metrics import Run, format_table, gold_from_products
from tagindex.text import tag_text

RESULTS = Path(__file__).resolve().parent / "results"


def oracle_runs(
    gold_leaf: dict[str, str], leaves: list[str], vectors: np.ndarray, parents: dict[str, str], seed: int
) -> dict[str, Run]:
    """Top-5 lists with the gold leaf first and four other leaves chosen by each fill rule."""
    pos = {t: i for i, t in enumerate(leaves)}
    sims = vectors @ vectors.T  # (leaves, leaves) cosine; rows are unit vectors
    order = {t: [leaves[j] for j in np.argsort(-sims[pos[t]]) if leaves[j] != t] for t in leaves}
    rng = random.Random(seed)
    runs: dict[str, Run] = {"nearest": {}, "siblings": {}, "random": {}}
    for pid, g in gold_leaf.items():
        near = order[g]
        sib = [t for t in near if parents.get(t) == parents.get(g)]
        fills = {
            "nearest": near[:4],
            "siblings": (sib + [t for t in near if t not in sib])[:4],
            "random": rng.sample([t for t in leaves if t != g], 4),
        }
        for name, fill in fills.items():
            runs[name][pid] = [(t, 1.0 - i / 10) for i, t in enumerate([g, *fill])]
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work", type=Path, default=Path("work/bench"))
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=RESULTS / "skew_floor.json")
    args = ap.parse_args(argv)

    task = load_task("mwpd", prepare(args.data, args.work))
    by_id = {t.id: t for t in task.tags}
    parents = {t.id: t.parent for t in task.tags if t.parent}
    inner = set(parents.values())
    leaves = [t.id for t in task.tags if t.id not in inner]
    gold = gold_from_products(task.test)
    gold_leaf = {
        pid: leaf
        for pid, tags in gold.items()
        if (leaf := next((t for t in tags if t in by_id and t not in inner), None)) is not None
    }
    encoder = load_encoder()
    vectors = encoder.encode([tag_text(by_id[t], by_id) for t in leaves])  # (leaves, dim), unit rows

    runs = oracle_runs(gold_leaf, leaves, vectors, parents, args.seed)
    rows, out = [], {}
    for name, run in runs.items():
        s = skew(run, gold, parents=parents)
        out[name] = s
        worst = ", ".join(f"{by_id[t].name} {v:.2f}" for t, v in s["worst_unjustified"][:3])
        rows.append(
            [
                f"gold first + {name}",
                s["tags_over_5pct"],
                s["tags_over_5pct_not_gold"],
                s["tags_over_5pct_outside_family"],
                worst or "-",
            ]
        )
    header = [
        "ranker (top-1 always right)",
        "tags >5%",
        "not gold (the goal's count)",
        "outside family",
        "worst",
    ]
    print(format_table(header, rows))
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(
            ["python -m benchmarks.skew_floor", *(argv if argv is not None else sys.argv[1:])]
        ),
        "git": git_commit(Path(__file__).resolve().parents[1]),
        "task": "mwpd validation, level-3 leaves",
        "n_products": len(gold_leaf),
        "n_leaves": len(leaves),
        "seed": args.seed,
        "rankers": out,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
