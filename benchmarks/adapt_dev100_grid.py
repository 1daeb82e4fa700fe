"""Hyper-parameter grid for `tagindex adapt`, scored ONLY on 100 labelled MWPD *train* offers.

The 100 offers (seeded draw, the same as the ``dev100`` columns of ``benchmarks/adapt_ablation.py``)
stand for "a merchandiser checked 100 products"; MWPD validation is never read. Prints level-3 R@1,
R@5 and the challenge metric on those offers for each AdaptParams override.

Usage (vectors come from the ablation's cache, ``work/cache``)::

    python -m benchmarks.adapt_dev100_grid '[{"hubness": "none"}, {"rounds": 6}]' [--backend NAME]
    python -m benchmarks.adapt_dev100_grid GRID --model DIR_A --model DIR_B   # mean over encoders

With several ``--model`` directories (e.g. ``tagindex transfer`` with different seeds) each override
is scored with each encoder and the mean is printed too, so a choice does not fit one training run.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.adapt_ablation import CachingEncoder
from benchmarks.tasks import load_task
from tagindex.adapt import AdaptParams, adapt_vectors
from tagindex.config import EncoderParams, TagIndexParams
from tagindex.encoders import load_encoder
from tagindex.index import TagIndex
from tagindex.metrics import evaluate, gold_from_products
from tagindex.text import tag_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", help="JSON list of AdaptParams overrides")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--model", action="append", default=[], help="encoder model directory (repeatable)")
    ap.add_argument("--by-class", default=None, help="top-1 answers of the offers whose gold has this tag")
    ap.add_argument("--data", type=Path, default=Path("work/bench/data"))
    ap.add_argument("--cache", type=Path, default=Path("work/cache"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    task = load_task("mwpd", args.data)
    if args.model:
        encoders = [EncoderParams(model=m) for m in args.model]
    else:
        encoders = [EncoderParams() if args.backend is None else EncoderParams(backend=args.backend)]
    dev_ids = {p.id for p in random.Random(0).sample(task.train, 100)}
    rows = [i for i, p in enumerate(task.train) if p.id in dev_ids]
    dev = [task.train[i] for i in rows]
    gold = gold_from_products(dev)
    titles = [p.title for p in task.train]  # the catalog: labels are never read by adapt_vectors
    grid = json.loads(args.grid)
    results = np.zeros((len(grid), len(encoders), 3))  # (override, encoder, [R@1, R@5, F1])
    for e, params in enumerate(encoders):
        enc = CachingEncoder(load_encoder(params), args.cache / "tags")
        index = TagIndex.build(task.tags, TagIndexParams(encoder=enc.params), encoder=enc)
        tags, by_id = index.tags, index.by_id
        texts = [tag_text(t, by_id) for t in tags]
        tag_vectors = np.stack([index.tag_vector(t.id) for t in tags])
        catalog = index.encode_products(task.train, cache_dir=args.cache)
        for g, over in enumerate(grid):
            prm = AdaptParams.from_dict({**AdaptParams().to_dict(), **over})
            res = adapt_vectors(tags, texts, tag_vectors, catalog, titles, prm, enc.encode)
            match = res.adjuster.match([p.title for p in dev])
            scores, top = res.adjuster.top(catalog[rows] @ res.tag_vectors.T, 10, lexical=match)
            run = {
                p.id: [(tags[j].id, float(s)) for j, s in zip(top[i], scores[i], strict=True)]
                for i, p in enumerate(dev)
            }
            rep = evaluate(run, gold, task.tags, ks=(1, 5, 10))
            l3 = rep["levels"]["3"]
            results[g, e] = (l3["recall@1"], l3["recall@5"], rep.get("challenge", 0))
            if args.by_class:
                of_class = [p.id for p in dev if args.by_class in p.tags]
                answers = Counter(run[i][0][0] for i in of_class)
                print(f"  {len(of_class)} offers of {args.by_class}: top-1 {answers.most_common(4)}")
            print(
                f"[{params.model}] R@1 {l3['recall@1']:.2f} R@5 {l3['recall@5']:.2f} "
                f"F1 {rep.get('challenge', 0):.3f} {over}",
                flush=True,
            )
    if len(encoders) > 1:
        print(f"\nmean over {len(encoders)} encoders (R@1, R@5, F1, sum):")
        for g, over in enumerate(grid):
            r1, r5, f1 = results[g].mean(axis=0)
            print(f"R@1 {r1:.3f} R@5 {r5:.3f} F1 {f1:.3f} sum {r1 + r5 + f1:.3f} {over}", flush=True)


if __name__ == "__main__":
    main()
