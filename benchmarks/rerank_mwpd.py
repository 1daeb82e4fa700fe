"""Benchmark: bi-encoder alone vs + cross-encoder rerank (K = 10/20/50) on MWPD, with calibration.

Everything is fitted on MWPD train (the reranker on its training part, the calibration on the dev
split the reranker held out) and reported on a seeded sample of MWPD validation:

- recall@1/5 of the lvl3 tag (ranking restricted to lvl3 tags) and the MWPD challenge metric
  (weighted F1 of the top-1 tag at each level, lvl1-3, averaged), both from ``tagindex.metrics``;
- added latency per product of the rerank at each depth (fresh scoring on a timing subsample);
- calibration: expected calibration error (top-1 lvl3 and all scored candidates), precision at 80%
  coverage of the top-1 lvl3 tag, and the per-level decisions at the dev-fitted thresholds;
- a precision/coverage plot (PNG).

Usage (the reranker comes from `tagindex train-reranker`; see README):
    python benchmarks/rerank_mwpd.py --index IDX --reranker RR --sample 300
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tagindex.calibrate import (  # noqa: E402
    Calibration,
    CalibrationParams,
    calibration_products,
    dev_candidates,
    expected_calibration_error,
    precision_at_coverage,
    precision_coverage,
    tag_level,
)
from tagindex.index import TagIndex  # noqa: E402
from tagindex.io import load_products, load_tags  # noqa: E402
from tagindex.metrics import evaluate  # noqa: E402
from tagindex.pipeline import TaggingPipeline  # noqa: E402
from tagindex.rerank import RankedCandidates, Reranker, load_dev_ids  # noqa: E402
from tagindex.schema import Product  # noqa: E402
from tagindex.text import ancestors  # noqa: E402

logger = logging.getLogger("rerank_mwpd")
LEVELS = (0, 1, 2)  # depth below the root: MWPD lvl1, lvl2, lvl3


class CachedScorer:
    """Memoises the reranker's pair scores so K=10/20 reuse the K=50 scoring (scores of a pair do not
    depend on the other candidates); latency is measured separately without the cache."""

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker
        self.cache: dict[tuple[str, str], float] = {}
        self._score = reranker.score_pairs

    def __call__(self, pairs: Any, show_progress: bool = False) -> np.ndarray:
        todo = list(dict.fromkeys(p for p in pairs if p not in self.cache))
        if todo:
            for pair, s in zip(todo, self._score(todo, show_progress=show_progress).tolist(), strict=True):
                self.cache[pair] = s
        return np.array([self.cache[p] for p in pairs], dtype=np.float64)


# ---- metrics ------------------------------------------------------------------------------------
def gold_at_level(p: Product, level: int, by_id: dict) -> str | None:
    golds = [t for t in p.tags if t in by_id and tag_level(t, by_id) == level]
    return golds[0] if golds else None


def ranking_metrics(ranked: list[RankedCandidates], products: list[Product], tags: list) -> dict[str, float]:
    """recall@1/5 of the lvl3 tag and the MWPD challenge metric, by the shared ``tagindex.metrics``."""
    run = {r.id: [(c.tag, c.score) for c in r.candidates] for r in ranked}
    gold = {p.id: list(p.tags) for p in products}
    report = evaluate(run, gold, tags, ks=(1, 5), metrics=("recall",))
    out = {f"recall@{k}_lvl3": report["levels"]["3"][f"recall@{k}"] for k in (1, 5)}
    for level in ("1", "2", "3"):
        out[f"weighted_f1_lvl{level}"] = report["levels"][level]["weighted_f1"]
    out["mwpd_metric"] = report["challenge"]
    return out


def top1_confidence(
    ranked: list[RankedCandidates], products: list[Product], by_id: dict, cal: Calibration, level: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per product: calibrated probability of its most probable tag at ``level``, and whether it is gold."""
    conf, correct = [], []
    for p, r in zip(products, ranked, strict=True):
        gold = gold_at_level(p, level, by_id)
        scored = [
            (c.tag, c.rerank_score if cal.score == "rerank" else c.bi_score)
            for c in r.candidates
            if c.rerank_score is not None or cal.score != "rerank"
        ]
        at_level = [(t, s) for t, s in scored if tag_level(t, by_id) == level]
        if at_level:
            probs = cal.probabilities(np.array([s for _, s in at_level]), np.full(len(at_level), level))
            best = int(np.argmax(probs))
            conf.append(float(probs[best]))
            correct.append(1.0 if at_level[best][0] == gold else 0.0)
            continue
        # Ranked leaves only (an index with exemplars): a tag at this level is as probable as its most
        # probable ranked descendant.
        deeper = [(t, s) for t, s in scored if tag_level(t, by_id) > level]
        if not deeper:  # no scored candidate at or below this level: answered last, and wrong
            conf.append(0.0)
            correct.append(0.0)
            continue
        probs = cal.probabilities(
            np.array([s for _, s in deeper]), np.array([tag_level(t, by_id) for t, _ in deeper])
        )
        best = int(np.argmax(probs))
        path = ancestors(deeper[best][0], by_id)[::-1]  # root first
        conf.append(float(probs[best]))
        correct.append(1.0 if level < len(path) and path[level] == gold else 0.0)
    return np.array(conf), np.array(correct)


def calibration_metrics(
    ranked: list[RankedCandidates],
    products: list[Product],
    by_id: dict,
    pipeline: TaggingPipeline,
    coverage: float,
) -> tuple[dict[str, Any], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """ECE, precision at ``coverage`` of the top-1 tag per level (most confident products first) and
    the quality of the pipeline's calibrated decisions; also the precision/coverage curves per level."""
    cal = pipeline.calibration
    assert cal is not None
    scores, labels, levels = dev_candidates(ranked, products, by_id, cal.score)
    out: dict[str, Any] = {
        "ece_all_candidates": expected_calibration_error(
            cal.probabilities(scores, levels), labels, cal.params.bins
        )
    }
    curves = {}
    pct = int(round(coverage * 100))
    for level in LEVELS:
        conf, correct = top1_confidence(ranked, products, by_id, cal, level)
        name = f"lvl{level + 1}"
        out[f"ece_top1_{name}"] = expected_calibration_error(conf, correct, cal.params.bins)
        out[f"precision_at_{pct}pct_coverage_{name}"] = precision_at_coverage(conf, correct, coverage)
        out[f"top1_accuracy_{name}"] = float(correct.mean())
        curves[level] = precision_coverage(conf, correct)
    decisions = pipeline.decide(ranked, by_id)
    assert decisions is not None
    for level in LEVELS:
        n_assigned = n_right = n_products = 0
        for p, d in zip(products, decisions, strict=True):
            at = [a for a in d if a.level == level]
            n_products += bool(at)
            n_assigned += len(at)
            n_right += sum(a.tag in p.tags for a in at)
        out[f"decide_lvl{level + 1}"] = {
            "threshold": cal.threshold(level),
            "coverage": n_products / len(products),
            "precision": (n_right / n_assigned) if n_assigned else None,
            "assigned": n_assigned,
        }
    return out, curves


# ---- main ---------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "work" / "mwpd"), help="converted MWPD directory")
    ap.add_argument(
        "--src", default=str(ROOT.parent / "shared" / "data" / "mwpd"), help="raw MWPD (to convert)"
    )
    ap.add_argument("--index", required=True, help="index directory over MWPD tags")
    ap.add_argument("--reranker", required=True, help="reranker directory (tagindex train-reranker)")
    ap.add_argument("--name", default="MiniLM", help="label of the bi-encoder in the table")
    ap.add_argument("--sample", type=int, default=300, help="seeded validation sample (0: all 3,000)")
    ap.add_argument("--cal-products", type=int, default=200, help="dev products for the calibration")
    ap.add_argument("--cal-depth", type=int, default=20, help="rerank depth of the calibration fit")
    ap.add_argument("--depths", type=int, nargs="+", default=[10, 20, 50])
    ap.add_argument("--latency-products", type=int, default=40, help="products timed per depth")
    ap.add_argument("--coverage", type=float, default=0.8)
    ap.add_argument("--target-precision", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rerank_mwpd.json"))
    ap.add_argument("--plot", default=str(ROOT / "benchmarks" / "rerank_precision_coverage.png"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    data = Path(args.data)
    if not (data / "validation.jsonl").exists():
        subprocess.run(
            [sys.executable, "-m", "tagindex.cli", "convert", "mwpd", "--src", args.src, "--out", str(data)],
            check=True,
        )
    index = TagIndex.load(args.index)
    by_id = index.by_id
    tags = load_tags(data / "tags.jsonl")
    reranker = Reranker.load(args.reranker)
    scorer = CachedScorer(reranker)
    reranker.score_pairs = scorer  # type: ignore[method-assign]
    train = load_products(data / "train.jsonl")
    validation = load_products(data / "validation.jsonl")
    rng = random.Random(args.seed)
    val = rng.sample(validation, args.sample) if 0 < args.sample < len(validation) else validation
    dev = calibration_products(train, load_dev_ids(reranker), 0.1, args.seed)
    dev = random.Random(args.seed).sample(dev, min(args.cal_products, len(dev)))
    max_depth = max(args.depths)
    params = CalibrationParams(target_precision=args.target_precision)

    # calibrations: fitted on the reranker's held-out dev products only, ranked by the pipeline
    dev_vecs = index.encode_products(dev)  # (n_dev, dim)
    dev_bi = TaggingPipeline(index).rank(dev, max_depth, vectors=dev_vecs, leave_one_out=True)
    cal_bi = Calibration.fit(
        *dev_candidates(dev_bi, dev, by_id, "bi_encoder"), "bi_encoder", params, max_depth
    )
    start = time.perf_counter()
    dev_rr = TaggingPipeline(index, reranker, depth=args.cal_depth).rank(
        dev, max_depth, vectors=dev_vecs, leave_one_out=True
    )
    logger.info(
        "dev rerank (%d products, depth %d): %.0fs", len(dev), args.cal_depth, time.perf_counter() - start
    )
    cal_rr = Calibration.fit(
        *dev_candidates(dev_rr, dev, by_id, "rerank"), "rerank", params, args.cal_depth, reranker.fingerprint
    )

    # bi-encoder alone
    start = time.perf_counter()
    vecs = index.encode_products(val)  # (n, dim)
    bi_pipeline = TaggingPipeline(index, calibration=cal_bi)
    bi = bi_pipeline.rank(val, max_depth, vectors=vecs)
    bi_ms = (time.perf_counter() - start) * 1000 / len(val)
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    row: dict[str, Any] = {
        "system": f"{args.name} bi-encoder",
        "depth": 0,
        "ms_per_product": bi_ms,
        "added_ms": 0.0,
    }
    row.update(ranking_metrics(bi, val, tags))
    calib, curves[row["system"]] = calibration_metrics(bi, val, by_id, bi_pipeline, args.coverage)
    row["calibration"] = calib
    rows.append(row)

    # + rerank: score the deepest head once, shallower depths reuse the cached pair scores
    start = time.perf_counter()
    reranker.rerank(index, val, bi, depth=max_depth)
    logger.info(
        "validation rerank (%d products, depth %d): %.0fs", len(val), max_depth, time.perf_counter() - start
    )
    timing = val[: args.latency_products]
    timing_bi = bi[: args.latency_products]
    for depth in sorted(args.depths):
        # the calibration was fitted at --cal-depth; the pipeline checks it belongs to this reranker
        pipeline = TaggingPipeline(index, reranker, cal_rr, depth=depth)
        ranked = pipeline.rank(val, max_depth, vectors=vecs)
        # latency of the rerank stage alone: fresh scoring (no cache) of the timing subsample
        reranker.score_pairs = scorer._score  # type: ignore[method-assign]
        t0 = time.perf_counter()
        reranker.rerank(index, timing, timing_bi, depth=depth)
        added = (time.perf_counter() - t0) * 1000 / len(timing)
        reranker.score_pairs = scorer  # type: ignore[method-assign]
        row = {
            "system": f"{args.name} + rerank K={depth}",
            "depth": depth,
            "ms_per_product": bi_ms + added,
            "added_ms": added,
        }
        row.update(ranking_metrics(ranked, val, tags))
        calib, curves[row["system"]] = calibration_metrics(ranked, val, by_id, pipeline, args.coverage)
        row["calibration"] = calib
        rows.append(row)

    cov_key = f"precision_at_{int(round(args.coverage * 100))}pct_coverage_lvl3"
    cols = ("R@1 l3", "R@5 l3", "MWPD", "+ms/prod", "ECE l3", "P@cov l3", "P@cov l1")
    print(f"{'system':34s} " + " ".join(f"{c:>8s}" for c in cols))
    for r in rows:
        c = r["calibration"]
        print(
            f"{r['system']:34s} {r['recall@1_lvl3']:8.3f} {r['recall@5_lvl3']:8.3f} {r['mwpd_metric']:8.3f} "
            f"{r['added_ms']:8.1f} {c['ece_top1_lvl3']:8.3f} {c[cov_key]:8.3f} "
            f"{c[cov_key.replace('lvl3', 'lvl1')]:8.3f}"
        )
    result: dict[str, Any] = {
        "benchmark": "rerank_mwpd",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {
            "fit": "MWPD train: reranker on its training part, calibration on its held-out dev split",
            "report": f"MWPD validation, seeded sample of {len(val)} (seed {args.seed})",
            "dev_products": len(dev),
        },
        "reranker": {"path": args.reranker, "params": reranker.params.to_dict(), **reranker.info},
        "calibration": {
            "bi_encoder": {"thresholds": cal_bi.thresholds, "report": cal_bi.report},
            "rerank": {"thresholds": cal_rr.thresholds, "report": cal_rr.report, "depth": args.cal_depth},
        },
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "torch_threads": _threads()},
        "rows": rows,
    }
    result["reranker"].pop("dev_ids", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    _plot(curves, args.coverage, Path(args.plot))
    print(f"wrote {out} and {args.plot}")
    return 0


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _plot(curves: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]], coverage: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, level in zip(axes, (2, 0), strict=True):
        for name, per_level in curves.items():
            cov, prec = per_level[level]
            ax.plot(cov, prec, label=name)
        ax.axvline(coverage, color="grey", linestyle=":", linewidth=1)
        ax.axhline(0.9, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("coverage (share of products answered, most confident first)")
        ax.set_title(f"top-1 lvl{level + 1} tag")
        ax.set_ylim(0, 1.01)
    axes[0].set_ylabel("precision")
    axes[0].legend(fontsize=8)
    fig.suptitle("MWPD validation sample: precision vs coverage (calibrated probability order)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
