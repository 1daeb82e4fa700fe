"""Text only vs text + graph: MWPD validation (all tags, tail bucket), the MWPD zero-shot split and the
Shopify -> Google tag-similarity task, with the graph method and weight chosen on a dev split.

Protocol (nothing is chosen on an evaluation split):

1. ``dev``: a seeded 10% of MWPD train (``tagindex.splits.dev_split``). A graph is built from the other
   90% and embedded with each method; every (method, weight) is scored on the dev products (level-3
   MRR) and the best pair is kept. Weight 0 is text only, so the graph can lose.
2. The chosen method and weight are then used unchanged: the graph is rebuilt on all of MWPD train
   (validation), on the zero-shot split's training set (zero-shot) and on Google's taxonomy alone
   (tag similarity; the tags themselves form the neighbour pool).
3. The validation row is also run through the real pipeline (``TagIndex`` with a ``GraphFusion``) and
   checked against the matrix computation used for the sweeps.

Also measured: build and embedding time and peak memory of the full MWPD-train graph through the CLI.
A weight sweep on the evaluation splits is written as a diagnostic only (``diagnostic_sweep``).

Usage: ``python -m benchmarks.graph_ablation [--data ../shared/data] [--work work/graph-bench]``
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tagindex.graph.build import GraphParams, build_graph, save_graph
from tagindex.graph.embed import EmbedParams, embed_graph, load_embeddings
from tagindex.graph.fusion import FusionParams, GraphFusion

from tagindex.config import TagIndexParams
from tagindex.convert import convert
from tagindex.encoders import VectorCache, load_encoder
from tagindex.index import TagIndex
from tagindex.io import load_products, load_tags
from tagindex.metrics import evaluate, format_table, gold_from_products
from tagindex.schema import Product, Tag
from tagindex.splits import dev_split, mwpd_zeroshot, tag_similarity
from tagindex.text import product_text, tag_text

logger = logging.getLogger("benchmarks.graph_ablation")
REPO = Path(__file__).resolve().parents[1]
K = 10


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(n > 0, x / np.maximum(n, 1e-12), 0.0)


class Scorer:
    """Text and graph similarity matrices for one (products, tags) pair; fused runs for any weight."""

    def __init__(
        self, text: np.ndarray, graph: np.ndarray, product_ids: list[str], tag_ids: list[str]
    ) -> None:
        self.text, self.graph = text, graph  # (n_products, n_tags) each
        self.product_ids, self.tag_ids = product_ids, np.array(tag_ids)

    def run(self, weight: float) -> dict[str, list[tuple[str, float]]]:
        scores = (1 - weight) * self.text + weight * self.graph
        top = np.argsort(-scores, axis=1)[:, :K]
        return {
            pid: [(str(self.tag_ids[j]), float(scores[i, j])) for j in row]
            for i, (pid, row) in enumerate(zip(self.product_ids, top, strict=True))
        }


def scorer(
    fusion: GraphFusion | None,
    tags: list[Tag],
    tag_vectors: np.ndarray,
    products: list[Product],
    product_vectors: np.ndarray,
) -> Scorer:
    text = product_vectors @ tag_vectors.T
    graph = np.zeros_like(text)
    if fusion is not None:
        by_id = {t.id: t for t in tags}
        gt = _unit(fusion.tag_graph_vectors(tags, by_id))
        gp = _unit(fusion.product_graph_vectors(products, product_vectors))
        graph = gp @ gt.T
    return Scorer(text, graph, [p.id for p in products], [t.id for t in tags])


def summary(report: dict[str, Any], level: int | None) -> dict[str, float | None]:
    block = report["levels"][str(level)] if level is not None else report["overall"]
    out = {f"r@{k}": block.get(f"recall@{k}") for k in (1, 5, 10)}
    out["mrr"] = block.get("mrr")
    out["all_levels_r@1"] = report["overall"].get("recall@1")
    out["all_levels_r@5"] = report["overall"].get("recall@5")
    if "buckets" in report:
        tail_name = next(iter(report["buckets"]))  # the rarest training-count bucket, e.g. "<=5"
        tail = report["buckets"][tail_name]
        out["tail_bucket"] = tail_name  # type: ignore[assignment]
        out["tail_macro_r@1"] = tail.get("macro_recall@1")
        out["tail_macro_r@5"] = tail.get("macro_recall@5")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default=str(REPO / "work" / "graph-bench"))
    ap.add_argument("--methods", default="node2vec,sage")
    ap.add_argument("--weights", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7")
    ap.add_argument("--epochs", type=int, default=4, help="node2vec epochs")
    ap.add_argument("--sage-steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for embedding training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "graph_ablation.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    data, work = Path(args.data), Path(args.work)
    weights = [float(w) for w in args.weights.split(",")]
    methods = args.methods.split(",")
    started = time.perf_counter()

    # ---- data and splits (same library calls as `tagindex convert` / `tagindex split`) --------------
    d = work / "data"
    if not (d / "mwpd" / "tags.jsonl").exists():
        convert("mwpd", data / "mwpd", d / "mwpd")
    if not (d / "mwpd-dev" / "dev.jsonl").exists():
        dev_split(d / "mwpd" / "train.jsonl", d / "mwpd-dev", seed=args.seed)
    zs = d / f"mwpd-zeroshot-seed{args.seed}"
    if not (zs / "heldout.jsonl").exists():
        mwpd_zeroshot(d / "mwpd", zs, seed=args.seed)
    if not (d / "google" / "tags.jsonl").exists():
        convert("google", data / "shopify-taxonomy", d / "google")
    if not (d / "shopify-to-google" / "queries.jsonl").exists():
        tag_similarity(
            data / "shopify-taxonomy" / "shopify_to_google_dev.jsonl",
            d / "google" / "tags.jsonl",
            d / "shopify-to-google",
        )

    params = TagIndexParams()
    encoder = load_encoder(params.encoder)

    def cache() -> VectorCache:
        # Re-read each time: another run sharing the cache directory may have added vectors meanwhile.
        return VectorCache(REPO / "work" / "cache", encoder)

    def product_vectors(products: list[Product]) -> np.ndarray:
        return cache().encode([product_text(p, params.text) for p in products], show_progress=True)

    def tag_vectors(tags: list[Tag]) -> np.ndarray:
        by_id = {t.id: t for t in tags}
        return cache().encode([tag_text(t, by_id, params.text) for t in tags], show_progress=True)

    def embed(products: list[Product], tags: list[Tag], name: str, method: str) -> Any:
        gdir, edir = work / "graphs" / name, work / "emb" / f"{name}-{method}"
        save_graph(build_graph(products, tags, params=GraphParams()), gdir)
        ep = EmbedParams(method=method, epochs=args.epochs, sage_steps=args.sage_steps, threads=args.threads)
        ep.seed = args.seed
        embed_graph(gdir, edir, ep)
        return load_embeddings(edir)

    def fusion_for(emb: Any, products: list[Product] | None, weight: float) -> GraphFusion:
        return GraphFusion.build(
            emb,
            encoder,
            products,
            params.text,
            FusionParams(weight=weight),
            cache_dir=REPO / "work" / "cache",
        )

    result: dict[str, Any] = {"protocol": __doc__, "weights": weights, "methods": methods, "k": K}

    # ---- 1. selection on dev ---------------------------------------------------------------------------
    mwpd_tags = load_tags(d / "mwpd" / "tags.jsonl")
    mwpd_tag_vecs = tag_vectors(mwpd_tags)
    core = load_products(d / "mwpd-dev" / "train.jsonl")
    dev = load_products(d / "mwpd-dev" / "dev.jsonl")
    dev_vecs = product_vectors(dev)
    dev_gold = gold_from_products(dev)
    selection: dict[str, dict[str, float]] = {}
    best = ("none", 0.0, -1.0)
    for method in methods:
        emb = embed(core, mwpd_tags, "mwpd-dev-train", method)
        sc = scorer(fusion_for(emb, core, 0.0), mwpd_tags, mwpd_tag_vecs, dev, dev_vecs)
        selection[method] = {}
        for w in weights:
            rep = evaluate(sc.run(w), dev_gold, mwpd_tags, core, ks=(1, 5, 10))
            mrr = rep["levels"]["3"]["mrr"]
            selection[method][str(w)] = mrr
            if mrr > best[2] + 1e-9:
                best = (method, w, mrr)
    method, weight = best[0], best[1]
    result["selection"] = {
        "metric": "dev level-3 MRR",
        "dev_products": len(dev),
        "grid": selection,
        "chosen": {"method": method, "weight": weight, "dev_mrr": best[2]},
    }
    logger.info("chosen on dev: %s, weight %.2f (level-3 MRR %.4f)", method, weight, best[2])

    rows: list[dict[str, Any]] = []
    sweeps: dict[str, dict[str, Any]] = {}

    def ablate(
        task: str, sc: Scorer, gold: Any, tags: list[Tag] | None, train: Any, level: int | None
    ) -> None:
        for name, w in (("text", 0.0), ("text+graph", weight)):
            rep = evaluate(sc.run(w), gold, tags, train, ks=(1, 5, 10))
            rows.append({"task": task, "system": name, "weight": w, **summary(rep, level)})
        sweeps[task] = {
            str(w): summary(evaluate(sc.run(w), gold, tags, train, ks=(1, 5, 10)), level)["mrr"]
            for w in weights
        }

    # ---- 2a. MWPD validation: graph on all of train ---------------------------------------------------
    train = load_products(d / "mwpd" / "train.jsonl")
    val = load_products(d / "mwpd" / "validation.jsonl")
    val_vecs = product_vectors(val)
    cli = [sys.executable, "-m", "tagindex.cli", "-q"]
    gdir, edir = work / "graphs" / "mwpd-train", work / "emb" / f"mwpd-train-{method}"
    costs: dict[str, Any] = {}
    t0 = time.perf_counter()
    subprocess.run(
        [
            *cli,
            "graph",
            "build",
            "--products",
            str(d / "mwpd" / "train.jsonl"),
            "--tags",
            str(d / "mwpd" / "tags.jsonl"),
            "--shopify",
            str(data / "shopify-taxonomy"),
            "--out",
            str(gdir),
        ],
        check=True,
    )
    graph_manifest = json.loads((gdir / "manifest.json").read_text())
    costs["graph_build"] = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "build_s": graph_manifest["build_seconds"],
        "peak_rss_mb": graph_manifest["peak_rss_mb"],
        "counts": graph_manifest["counts"],
    }
    for m in methods:
        out_dir = work / "emb" / f"mwpd-train-{m}"
        t0 = time.perf_counter()
        subprocess.run(
            [
                *cli,
                "graph",
                "embed",
                "--graph",
                str(gdir),
                "--method",
                m,
                "--out",
                str(out_dir),
                "--epochs",
                str(args.epochs),
                "--steps",
                str(args.sage_steps),
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        em = json.loads((out_dir / "manifest.json").read_text())
        costs[f"embed_{m}"] = {
            "wall_s": round(time.perf_counter() - t0, 1),
            "train_s": em["train_seconds"],
            "peak_rss_mb": em["peak_rss_mb"],
            "final_loss": em["loss_history"][-1],
            "params": em["params"],
        }
    result["cost_mwpd_train_graph"] = costs
    emb = load_embeddings(edir)
    fusion = fusion_for(emb, train, weight)
    sc = scorer(fusion, mwpd_tags, mwpd_tag_vecs, val, val_vecs)
    ablate("mwpd-validation", sc, gold_from_products(val), mwpd_tags, train, 3)

    # the same row through the real pipeline (TagIndex + GraphFusion, FAISS exact search)
    index = TagIndex.build(mwpd_tags, params, encoder=encoder, fusion=fusion)
    pipeline = {
        r.id: [(t.tag, t.score) for t in r.tags]
        for r in index.tag(val, top_k=K, cache_dir=REPO / "work" / "cache")
    }
    matrix = sc.run(weight)
    agree = np.mean([pipeline[p.id][0][0] == matrix[p.id][0][0] for p in val])
    result["pipeline_check"] = {
        "top1_agreement_with_matrix": float(agree),
        "pipeline_level3_r@1": evaluate(pipeline, gold_from_products(val), mwpd_tags, ks=(1,))["levels"]["3"][
            "recall@1"
        ],
    }

    # ---- 2b. zero-shot split ----------------------------------------------------------------------------
    zs_train = load_products(zs / "train.jsonl")
    zs_tags = load_tags(zs / "tags.jsonl")
    zs_tag_vecs = tag_vectors(zs_tags)
    emb = embed(zs_train, zs_tags, "mwpd-zeroshot-train", method)
    fusion_zs = fusion_for(emb, zs_train, weight)
    for split_name, file in (
        ("mwpd-zeroshot-heldout", "heldout.jsonl"),
        ("mwpd-zeroshot-all", "validation.jsonl"),
    ):
        prods = load_products(zs / file)
        sc = scorer(fusion_zs, zs_tags, zs_tag_vecs, prods, product_vectors(prods))
        ablate(split_name, sc, gold_from_products(prods), zs_tags, zs_train, 3)

    # ---- 2c. tag similarity: Google taxonomy graph (tag–parent only), tags as neighbour pool -----------
    google = load_tags(d / "shopify-to-google" / "tags.jsonl")
    queries = load_products(d / "shopify-to-google" / "queries.jsonl")
    emb = embed([], google, "google", method)
    fusion_g = GraphFusion.build(emb, encoder, None, params.text, FusionParams(weight=weight))
    g_vecs = tag_vectors(google)
    fusion_g.fuse_tags(google, g_vecs, {t.id: t for t in google})  # fills the pool with the tags
    sc = scorer(fusion_g, google, g_vecs, queries, product_vectors(queries))
    ablate("shopify-to-google", sc, gold_from_products(queries), None, None, None)

    result["rows"] = rows
    result["diagnostic_sweep"] = {
        "note": "MRR per weight on the evaluation splits; NOT used for any choice",
        **sweeps,
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    header = ["task", "system", "w", "r@1", "r@5", "r@10", "mrr", "all r@1", "tail mR@1", "tail mR@5"]
    table = [
        [
            r["task"],
            r["system"],
            r["weight"],
            r["r@1"],
            r["r@5"],
            r["r@10"],
            r["mrr"],
            r["all_levels_r@1"],
            r.get("tail_macro_r@1"),
            r.get("tail_macro_r@5"),
        ]
        for r in rows
    ]
    print(f"chosen on dev: {method}, weight {weight} (dev level-3 MRR {best[2]:.4f})")
    print(f"dev grid: {json.dumps(selection)}")
    print(format_table(header, table))
    print(json.dumps(costs, indent=1))
    print(f"pipeline check: {result['pipeline_check']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
