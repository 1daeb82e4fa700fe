"""Does a cross-encoder help `tagindex adapt` without labels? (issue 13, ingredient 4's "and the
cross-encoder if it pays").

Two ways to get a reranker with no MWPD label, each scored beside adapt alone in one process:

- ``selftrain``: adapt (defaults, ``--model`` encoder) on MWPD train without labels; every catalog
  product's best level-3 tag is its pseudo-label, and per tag the ``--share`` of its products with the
  largest top-1 margin are kept (the adapt self-training's "core" rule). A cross-encoder
  (``tagindex.rerank_training.train_reranker``, packaged MiniLM start) is trained on those against the
  adapted index, with its usual logistic fusion of cross-encoder and first-stage score fitted on a
  held-out 10% of the *pseudo-labelled* products. Rows: ``adapt``, ``adapt+ce fused`` (the
  reranker's fusion), ``adapt+ce alone`` (the cross-encoder's logit alone reorders the top 20).
- ``transfer``: the cross-encoder is trained on the `tagindex transfer` corpus (Shopify->Google
  mapping and AE-110K/OA-Mine categories, against an index of their tags), then mixes into adapt's
  MWPD scores as ``score + w * z(logit)`` (per product z-score over its top 20), one row per ``w``.

Choices are read on ``dev100`` (the ablation's 100 labelled train offers); ``--val`` also scores
MWPD validation. The pseudo-labels' accuracy against the gold is reported, never used.

Usage::

    python -m benchmarks.adapt_reranker --mode selftrain --model work/transfer/cli-external-e2 \\
        --name s13 [--val]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.adapt_ablation import REPO, AdaptSystem, CachingEncoder, catalog_of, score
from benchmarks.harness import Context, git_commit, machine_info
from benchmarks.tasks import load_task, prepare
from tagindex.adapt.selftrain import confident
from tagindex.config import EncoderParams, TagIndexParams
from tagindex.cross_encoder import RerankerParams
from tagindex.encoders import load_encoder
from tagindex.index import TagIndex
from tagindex.metrics import tag_levels
from tagindex.pipeline import TaggingPipeline
from tagindex.rerank_training import train_reranker
from tagindex.schema import Product
from tagindex.transfer import transfer_corpus

logger = logging.getLogger("benchmarks.adapt_reranker")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["selftrain", "transfer"], default="selftrain")
    ap.add_argument("--model", required=True, help="encoder model directory (e.g. tagindex transfer's)")
    ap.add_argument("--name", required=True, help="suffix of the results file")
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work", type=Path, default=Path("work/bench"))
    ap.add_argument("--cache", type=Path, default=Path("work/cache"))
    ap.add_argument("--max-products", type=int, default=3000, help="reranker training products")
    ap.add_argument("--share", type=float, default=0.5, help="selftrain: confident share per tag")
    ap.add_argument("--weights", default="0,0.02,0.05,0.1,1000", help="transfer: mixing weights w")
    ap.add_argument("--val", action="store_true", help="also score MWPD validation")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    start = time.time()
    data = prepare(args.data, args.work)
    ctx = Context(work=args.work, cache_dir=args.cache, k=10, seed=0)
    task = load_task("mwpd", data, sample=None, seed=0)
    dev = random.Random(0).sample(task.train, 100)
    out: dict[str, Any] = {
        "mode": args.mode,
        "model": args.model,
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "git": git_commit(REPO),
        "rows": {},
    }
    inner = load_encoder(EncoderParams(model=args.model))  # loaded once, shared by both indexes
    if args.mode == "transfer":
        products, ttags = transfer_corpus(["mapping", "attribute-tags"], args.data)
        tindex = TagIndex.build(ttags, TagIndexParams(encoder=copy.deepcopy(inner.params)), encoder=inner)
        reranker = train_reranker(tindex, products, RerankerParams(max_products=args.max_products, seed=13))
        reranker.info.pop("fusion", None)  # fitted on the transfer index's scores, not adapt's
    encoder = CachingEncoder(inner, args.cache / "tags")
    system = AdaptSystem("full", encoder, {}, 0)
    system.fit(task, ctx)
    index = system.index
    base = TaggingPipeline(index)
    out["adapt_s"] = round(time.time() - start)
    if args.mode == "selftrain":
        pseudo = pseudo_labelled(base, task, ctx, args.share)
        gold = {p.id: set(p.tags) for p in task.train}
        out["pseudo_labelled"] = len(pseudo)
        out["pseudo_right"] = float(np.mean([p.tags[0] in gold[p.id] for p in pseudo]))
        t1 = time.time()
        reranker = train_reranker(index, pseudo, RerankerParams(max_products=args.max_products, seed=13))
        out["train_reranker_s"] = round(time.time() - t1)
        out["fusion"] = reranker.info.get("fusion")
    sets = [("dev100", dev)] + ([("validation", task.test)] if args.val else [])
    for set_name, products in sets:
        if args.mode == "selftrain":
            runs = {
                "adapt": run_of(base, products, ctx),
                "adapt+ce fused": run_of(TaggingPipeline(index, reranker, depth=20), products, ctx),
            }
            fusion = reranker.info.pop("fusion", None)
            runs["adapt+ce alone"] = run_of(TaggingPipeline(index, reranker, depth=20), products, ctx)
            if fusion is not None:
                reranker.info["fusion"] = fusion
        else:
            runs = mixed_runs(
                base, reranker, index, products, ctx, [float(w) for w in args.weights.split(",")]
            )
        for row, run in runs.items():
            s = score(run, task, products)
            out["rows"].setdefault(set_name, {})[row] = s
            print(
                set_name,
                row,
                "R@1",
                s["R@1"],
                "R@5",
                s["R@5"],
                "challenge",
                s["challenge"],
                "hubs",
                s["skew"]["tags_over_5pct_not_gold"],
                flush=True,
            )
    out["seconds"] = round(time.time() - start)
    path = REPO / "benchmarks" / "results" / f"adapt_reranker_{args.mode}_{args.name}.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print("wrote", path)
    return 0


def pseudo_labelled(base: TaggingPipeline, task: Any, ctx: Context, share: float) -> list[Product]:
    """The catalog's confident level-3 pseudo-labels (best leaf; top ``share`` by margin per tag)."""
    levels = tag_levels(task.tags)
    catalog = catalog_of(task)
    ranked = base.rank(catalog, top_k=20, cache_dir=ctx.vector_cache)
    labels: list[str | None] = []
    margins: list[float] = []
    for r in ranked:
        leaves = [c for c in r.candidates if levels.get(c.tag) == 3]
        labels.append(leaves[0].tag if leaves else None)
        margins.append(leaves[0].score - leaves[1].score if len(leaves) > 1 else 0.0)
    rows = {t: i for i, t in enumerate(sorted({lab for lab in labels if lab}))}
    label_rows = np.array([rows[lab] if lab else -1 for lab in labels])
    mask = confident(label_rows, np.array(margins), share)
    return [
        Product(p.id, p.title, p.description, p.attributes, [lab])
        for p, lab, ok in zip(catalog, labels, mask, strict=True)
        if ok and lab
    ]


def run_of(
    pipe: TaggingPipeline, products: list[Product], ctx: Context
) -> dict[str, list[tuple[str, float]]]:
    tagged = pipe.tag(products, top_k=10, cache_dir=ctx.vector_cache)
    return {t.result.id: [(s.tag, float(s.score)) for s in t.result.tags] for t in tagged}


def mixed_runs(
    base: TaggingPipeline,
    reranker: Any,
    index: TagIndex,
    products: list[Product],
    ctx: Context,
    weights: list[float],
) -> dict[str, dict[str, list[tuple[str, float]]]]:
    tagged = base.tag(products, top_k=20, cache_dir=ctx.vector_cache)
    heads = [[s.tag for s in t.result.tags] for t in tagged]
    pairs = []
    for text, head in zip(reranker.product_texts(products), heads, strict=True):
        pairs += list(zip([text] * len(head), reranker.tag_texts(index, head), strict=True))
    cross = reranker.score_pairs(pairs)  # (n_pairs,)
    runs = {}
    for w in weights:
        run, offset = {}, 0
        for p, t, head in zip(products, tagged, heads, strict=True):
            bi = np.array([s.score for s in t.result.tags])
            c = cross[offset : offset + len(head)]
            offset += len(head)
            mixed = bi + w * (c - c.mean()) / (c.std() + 1e-6)
            order = np.argsort(-mixed, kind="stable")
            run[p.id] = [(head[i], float(mixed[i])) for i in order[:10]]
        runs[f"w={w}"] = run
    return runs


if __name__ == "__main__":
    raise SystemExit(main())
