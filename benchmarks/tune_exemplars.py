"""Chooses the exemplar-scoring parameters (k, temperature, vote weight, shrinkage) on a dev split.

The dev split is carved from MWPD *train* (tagindex.devsplit, seeded); validation is never read.
Prints one row per setting and writes benchmarks/results/tune_exemplars[-TAG].json.

    python benchmarks/tune_exemplars.py --data work/mwpd [--model MODEL_DIR] [--cache work/cache]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from tagindex.config import ExemplarParams, TagIndexParams
from tagindex.devsplit import dev_split
from tagindex.exemplars import ExemplarScorer, ExemplarSet
from tagindex.index import TagIndex
from tagindex.io import load_products, load_tags
from tagindex.text import ancestors

RESULTS = Path(__file__).resolve().parent / "results"


def level_f1(gold: list[list[str]], predicted: list[str], by_id: dict) -> tuple[float, float]:
    """(mean over levels of weighted F1 of the top-1 tag with its ancestors, lvl-deepest accuracy)."""
    depth = max(len(g) for g in gold)
    f1s = []
    for level in range(depth):
        y_true, y_pred = [], []
        for g, p in zip(gold, predicted, strict=True):
            path = list(reversed(ancestors(p, by_id))) + [p]
            y_true.append(g[level] if level < len(g) else "")
            y_pred.append(path[level] if level < len(path) else "")
        f1s.append(f1_score(y_true, y_pred, average="weighted", zero_division=0))
    acc = float(np.mean([g[-1] == p for g, p in zip(gold, predicted, strict=True)]))
    return float(np.mean(f1s)), acc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="work/mwpd", help="converted MWPD directory (tags.jsonl, train.jsonl)")
    ap.add_argument("--model", default=None, help="encoder model directory (default packaged MiniLM)")
    ap.add_argument("--cache", default="work/cache", help="product vector cache")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--dev-fraction", type=float, default=0.15)
    ap.add_argument("--name", default="", help="suffix of the results file")
    args = ap.parse_args(argv)

    params = TagIndexParams()
    if args.model:
        params.encoder.model = args.model
    tags = load_tags(Path(args.data) / "tags.jsonl")
    index = TagIndex.build(tags, params)
    train = load_products(Path(args.data) / "train.jsonl")
    fit, dev = dev_split(train, args.dev_fraction, args.seed)
    vectors = index.encode_products(train, cache_dir=args.cache, show_progress=True)
    row = {p.id: i for i, p in enumerate(train)}
    fit_vec = vectors[[row[p.id] for p in fit]]
    dev_vec = vectors[[row[p.id] for p in dev]]
    exemplars = ExemplarSet([p.id for p in fit], [p.tags for p in fit], fit_vec)
    by_id = index.by_id
    gold = [p.tags for p in dev]
    grid = itertools.product([5, 10, 20, 40], [0.02, 0.05, 0.1], [0.0, 0.5, 1.0, 2.0], [0.0, 2.0, 5.0, 20.0])
    rows = []
    start = time.perf_counter()
    for k, temperature, vote_weight, shrinkage in grid:
        p = ExemplarParams(k=k, temperature=temperature, vote_weight=vote_weight, shrinkage=shrinkage)
        scorer = ExemplarScorer(index.tags, index._vectors, exemplars, p)
        scores = scorer.score(dev_vec)
        order = np.argsort(-scores, axis=1, kind="stable")
        top1 = [scorer.targets[j] for j in order[:, 0]]
        col = {t: j for j, t in enumerate(scorer.targets)}
        ranks = [
            int(np.where(o == col[g[-1]])[0][0]) if g[-1] in col else 10**9
            for o, g in zip(order, gold, strict=True)
        ]
        mwf1, acc = level_f1(gold, top1, by_id)
        rows.append(
            {
                **p.to_dict(),
                "mean_weighted_f1": mwf1,
                "lvl3_p1": acc,
                "lvl3_r5": float(np.mean([r < 5 for r in ranks])),
            }
        )
        if vote_weight == 0.0 and k > 5:
            continue  # k and temperature do not matter without votes: skip duplicate settings in the log
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: (r["mean_weighted_f1"], r["lvl3_p1"]))
    text_only = ExemplarScorer(index.tags, index._vectors, ExemplarSet([], [], fit_vec[:0]), ExemplarParams())
    order = np.argsort(-text_only.score(dev_vec), axis=1, kind="stable")
    mwf1, acc = level_f1(gold, [text_only.targets[j] for j in order[:, 0]], by_id)
    out = {
        "data": args.data,
        "model": args.model or "packaged",
        "seed": args.seed,
        "n_fit": len(fit),
        "n_dev": len(dev),
        "seconds": time.perf_counter() - start,
        "text_only_leaves": {"mean_weighted_f1": mwf1, "lvl3_p1": acc},
        "best": best,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"tune_exemplars{'-' + args.name if args.name else ''}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print("text only (leaves):", out["text_only_leaves"])
    print("best:", json.dumps(best))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
