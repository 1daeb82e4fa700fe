"""Learning curve of a simulated merchandiser on MWPD: from no labels to a few hundred judgements.

The index starts with the tag vocabulary only (no labelled product). Each round picks a batch of
MWPD *train* offers (actively with :func:`tagindex.active.review_queue`, or uniformly at random),
shows each offer's top suggestions and judges them with the gold answer: a gold tag among the
suggestions is accepted, a gold tag missing from them is added, a wrong suggestion is rejected.
The judgements are applied online (:func:`tagindex.learn.learn`: exemplars + hard negatives, gate
refit, no re-training); after every batch the index tags the evaluation set and the curve records
lvl3 recall@1 and the MWPD challenge metric (:func:`tagindex.metrics.evaluate`).

``--retrain-at N`` adds one re-training point per strategy: after N judgements the encoder is
fine-tuned (:func:`tagindex.train.train`) on the judged products, the index is rebuilt with the new
encoder, the same judgements are learned again, and the evaluation set is re-encoded and scored.

``--eval dev`` evaluates on a seeded share of MWPD *train* held out of the pool (for choosing the
queue settings); ``--eval validation`` (the default) on MWPD validation, which nothing here tunes on.

    python benchmarks/learning_curve.py --data work/mwpd --work work/lc --backend onnx-int8 \\
        --max-judged 1000 --strategies active random --seeds 13 14 15
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tagindex.active import QueueParams, random_queue, review_queue
from tagindex.config import TagIndexParams
from tagindex.devsplit import dev_split
from tagindex.index import TagIndex
from tagindex.io import load_products, load_tags
from tagindex.learn import learn
from tagindex.metrics import evaluate, run_from_results
from tagindex.schema import Product

RESULTS = Path(__file__).resolve().parent / "results"
logger = logging.getLogger("learning_curve")


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def judge(suggested: list[str], gold: list[str], leaves_only: set[str]) -> list[tuple[str, str]]:
    """The simulated merchandiser: accept gold suggestions, add missed gold tags, reject the rest.

    Only suggestions that are ranked tags (not ancestors) are rejected, as on the page.
    """
    out = [(t, "accept") for t in suggested if t in gold]
    out += [(t, "add") for t in gold if t not in suggested]
    out += [(t, "reject") for t in suggested if t not in gold and t in leaves_only]
    return out


def score(
    index: TagIndex, ids: list[str], vectors: np.ndarray, gold: dict[str, list[str]], tags: Any
) -> dict:
    results = index.tag_vectors(ids, vectors, top_k=50)
    report = evaluate(run_from_results(results), gold, tags, ks=(1, 5))
    return {
        "lvl3_r1": report["levels"]["3"]["recall@1"],
        "lvl3_r5": report["levels"]["3"]["recall@5"],
        "challenge": report.get("challenge"),
    }


def simulate(
    strategy: str,
    seed: int,
    base_dir: Path,
    pool: list[Product],
    pool_vecs: np.ndarray,
    eval_ids: list[str],
    eval_vecs: np.ndarray,
    eval_gold: dict[str, list[str]],
    tags: Any,
    batch: int,
    max_judged: int,
    qparams: QueueParams,
    suggestions: int,
    keep_index_at: int | None,
    exemplar_overrides: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], TagIndex | None, list[Product]]:
    index = TagIndex.load(base_dir)
    if exemplar_overrides:
        index.params.exemplars = dataclasses.replace(index.params.exemplars, **exemplar_overrides)
    by_id = {p.id: (i, p) for i, p in enumerate(pool)}
    leaves = {t.id for t in index.tags}
    judged: list[str] = []
    order = random_queue(pool, len(pool), seed) if strategy == "random" else []
    curve = [{"judged": 0, **score(index, eval_ids, eval_vecs, eval_gold, tags), "seconds": 0.0}]
    kept: TagIndex | None = None
    judged_products: list[Product] = []
    start = time.perf_counter()
    while len(judged) < max_judged:
        n = min(batch, max_judged - len(judged))
        if strategy == "random":
            pick = order[len(judged) : len(judged) + n]
            kinds: dict[str, int] = {"random": len(pick)}
        else:
            queue = review_queue(
                index, pool, n, vectors=pool_vecs, params=QueueParams(**{**qparams.__dict__, "seed": seed})
            )
            pick = [q.id for q in queue]
            kinds = {}
            for q in queue:
                kinds[q.kind] = kinds.get(q.kind, 0) + 1
        rows = [by_id[pid][0] for pid in pick]
        shown = index.tag_vectors(pick, pool_vecs[rows], top_k=suggestions)
        triples = []
        products = []
        for pid, result in zip(pick, shown, strict=True):
            p = by_id[pid][1]
            for tag, action in judge([t.tag for t in result.tags], p.tags, leaves):
                triples.append((pid, tag, action))
            products.append(Product(p.id, p.title, p.description, p.attributes))
            judged_products.append(p)
        learn(index, products, judgements=triples, vectors=pool_vecs[rows])
        judged += pick
        point = {
            "judged": len(judged),
            **score(index, eval_ids, eval_vecs, eval_gold, tags),
            "picks": kinds,
            "judgements": {a: sum(1 for _, _, b in triples if b == a) for a in ("accept", "add", "reject")},
            "distinct_lvl3_judged": len({p.tags[-1] for p in judged_products if p.tags}),
            "seconds": round(time.perf_counter() - start, 1),
        }
        curve.append(point)
        logger.info(
            "%s seed %d: %d judged, lvl3 R@1 %.3f, challenge %.3f",
            strategy,
            seed,
            point["judged"],
            point["lvl3_r1"],
            point["challenge"] or float("nan"),
        )
        if keep_index_at is not None and len(judged) == keep_index_at:
            kept = index
            break
    return curve, kept, judged_products


def retrain_point(
    index: TagIndex,
    judged: list[Product],
    tags: Any,
    eval_products: list[Product],
    eval_gold: dict[str, list[str]],
    work: Path,
    name: str,
    backend: str,
    config: dict[str, Any] | None,
    pool: list[Product] | None = None,
    pool_vecs: np.ndarray | None = None,
    exemplar_overrides: dict[str, Any] | None = None,
    base_model: str | None = None,
) -> dict[str, Any]:
    """Fine-tunes on the judged products, rebuilds the index, re-learns the judgements, evaluates.

    ``base_model`` is the encoder the judged index was built with (default: the packaged MiniLM);
    re-training fine-tunes it, as ``tagindex retrain`` fine-tunes the index's own encoder.

    With ``pool``, the unjudged pool products the judged index labels confidently are added to the
    training data (:func:`tagindex.retrain.pseudo_label`, as ``tagindex retrain --pool`` does).
    """
    from tagindex.retrain import pseudo_label
    from tagindex.train import TrainParams, TrainReport, fingerprint_products, read_training_manifest, train

    start = time.perf_counter()
    model_dir = work / f"model-{name}"
    assert index.learned is not None
    rejected = {row["id"]: row["rejected"] for row in index.learned.export_products() if row["rejected"]}
    params_ = TrainParams.from_dict(config) if config is not None else TrainParams.judgements()
    pseudo_report = None
    fit = list(judged)
    if pool is not None:
        extra, pseudo_report = pseudo_label(index, pool, vectors=pool_vecs, skip={p.id for p in judged})
        gold_of = {p.id: p.tags for p in pool}
        pseudo_report["label_accuracy"] = float(
            np.mean([p.tags[-1] in gold_of[p.id] for p in extra]) if extra else 0.0
        )  # diagnostic only: the gold is never used for choosing
        fit += extra
        logger.info("%s: %s", name, pseudo_report)
    previous = read_training_manifest(model_dir) if (model_dir / "tagindex_training.json").exists() else None
    if (
        previous is not None
        and previous.get("data", {}).get("products") == fingerprint_products(fit)
        and previous.get("train_params") == params_.to_dict()
    ):
        # The same products and settings train the same model (seeded): reuse it from an earlier run.
        report = TrainReport(
            best_epoch=int(previous.get("best_epoch", 0)), seconds=float(previous.get("seconds", 0))
        )
        logger.info("reusing %s (same judged products and settings)", model_dir)
    else:
        report = train(fit, tags, model_dir, params=params_, rejected=rejected, base=base_model)
    t_train = report.seconds or (time.perf_counter() - start)
    params = TagIndexParams()
    params.encoder.backend = backend
    params.encoder.model = str(model_dir)
    if exemplar_overrides:
        params.exemplars = dataclasses.replace(params.exemplars, **exemplar_overrides)
    new = TagIndex.build(tags, params)
    assert index.learned is not None
    ids = [p.id for p in judged]
    vecs = new.encode_products([index.learned.products[i] for i in ids])
    triples = [(j.product_id, j.tag, j.action) for j in index.learned.judgements]
    learn(new, [index.learned.products[i] for i in ids], judgements=triples, vectors=vecs)
    eval_vecs = new.encode_products(eval_products)
    out = {
        "judged": len(judged),
        **score(new, [p.id for p in eval_products], eval_vecs, eval_gold, tags),
        "train_seconds": round(t_train, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "kept_epoch": report.best_epoch,
        "dev": report.epochs,
        "train_params": params_.to_dict(),
        "pseudo_labelled": pseudo_report,
    }
    logger.info("%s re-trained at %d: lvl3 R@1 %.3f", name, len(judged), out["lvl3_r1"])
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"active": "tab:blue", "random": "tab:orange"}
    for metric, ax in zip(("lvl3_r1", "challenge"), axes, strict=True):
        for strategy, runs in result["curves"].items():
            xs = [p["judged"] for p in runs[0]["curve"]]
            ys = np.array([[p[metric] for p in r["curve"]] for r in runs])
            mean = ys.mean(axis=0)
            ax.plot(
                xs,
                mean,
                label=f"{strategy} ({len(runs)} seed{'s' if len(runs) > 1 else ''})",
                color=colours.get(strategy),
            )
            if len(runs) > 1:
                ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), alpha=0.2, color=colours.get(strategy))
        for strategy, points in result.get("retrained", {}).items():
            for p in points:
                ax.scatter(
                    [p["judged"]],
                    [p[metric]],
                    marker="*",
                    s=120,
                    color=colours.get(strategy),
                    label=f"{strategy} + one re-training",
                    zorder=3,
                )
        ax.set_xlabel("judged products")
        ax.set_ylabel({"lvl3_r1": "lvl3 recall@1", "challenge": "MWPD challenge metric"}[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Simulated merchandiser on MWPD ({result['eval']}, {result['backend']} encoder)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="work/mwpd", help="converted MWPD (tagindex convert mwpd)")
    ap.add_argument("--work", default="work/lc", help="working directory (base index, models)")
    ap.add_argument("--cache", default=None, help="product vector cache (default WORK/cache)")
    ap.add_argument("--backend", default="onnx-int8", help="encoder backend")
    ap.add_argument(
        "--model",
        default=None,
        help="encoder model directory to start from (e.g. from tagindex transfer; default: packaged MiniLM)",
    )
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--max-judged", type=int, default=1000)
    ap.add_argument("--suggestions", type=int, default=5, help="tags shown per product")
    ap.add_argument("--strategies", nargs="+", default=["active", "random"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[13])
    ap.add_argument("--eval", choices=["validation", "dev"], default="validation")
    ap.add_argument("--eval-limit", type=int, default=None, help="first N evaluation products only")
    ap.add_argument("--retrain-at", type=int, default=None, help="one re-training point at N judgements")
    ap.add_argument(
        "--retrain-config",
        default=None,
        help="TrainParams JSON for --retrain-at (default: TrainParams.judgements(), what retrain uses)",
    )
    ap.add_argument(
        "--self-train",
        action="store_true",
        help="--retrain-at also trains on the pool products the judged index labels confidently",
    )
    ap.add_argument("--queue", default="{}", help="QueueParams overrides as JSON")
    ap.add_argument(
        "--exemplars", default="{}", help="ExemplarParams overrides as JSON (base and re-trained index)"
    )
    ap.add_argument("--name", default="learning_curve")
    ap.add_argument(
        "--merge-retrained", default=None, help="results JSON of a --retrain-at run whose points to include"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for lib in ("tagindex.learn", "tagindex.active", "tagindex.gate", "tagindex.index"):
        logging.getLogger(lib).setLevel(logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    up_before = uptime()
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = args.cache or str(work / "cache")
    tags = load_tags(data / "tags.jsonl")
    train_products = load_products(data / "train.jsonl")
    if args.eval == "dev":
        pool, eval_products = dev_split(train_products, 0.2, 13)
    else:
        pool, eval_products = train_products, load_products(data / "validation.jsonl")
    if args.eval_limit:
        eval_products = eval_products[: args.eval_limit]
    # Each starting encoder gets its own base index and re-trained models (named after its directory).
    model_slug = f"-{Path(args.model).name}" if args.model else ""
    base_dir = work / f"base-index-{args.backend}{model_slug}"
    if not ((base_dir / "CURRENT").exists() or (base_dir / "manifest.json").exists()):
        params = TagIndexParams()
        params.encoder.backend = args.backend
        if args.model:
            params.encoder.model = args.model
        TagIndex.build(tags, params).save(base_dir)
    base = TagIndex.load(base_dir)
    t0 = time.perf_counter()
    pool_vecs = base.encode_products(pool, cache_dir=cache)
    eval_vecs = base.encode_products(eval_products, cache_dir=cache)
    logger.info(
        "vectors ready in %.0fs (%d pool, %d eval)", time.perf_counter() - t0, len(pool), len(eval_products)
    )
    eval_ids = [p.id for p in eval_products]
    eval_gold = {p.id: list(p.tags) for p in eval_products}
    qparams = QueueParams(**json.loads(args.queue))
    exemplar_overrides = json.loads(args.exemplars)
    result: dict[str, Any] = {
        "eval": f"MWPD {'validation' if args.eval == 'validation' else 'dev split of train (20%, seed 13)'}",
        "n_eval": len(eval_products),
        "n_pool": len(pool),
        "backend": args.backend,
        "model": args.model,
        "batch": args.batch,
        "suggestions": args.suggestions,
        "queue_params": qparams.__dict__,
        "exemplar_overrides": exemplar_overrides,
        "curves": {},
        "retrained": {},
        "uptime_before": up_before,
        "command": " ".join([sys.executable, *sys.argv]),
    }
    out_json = RESULTS / f"{args.name}.json"

    def save() -> None:
        result["uptime_after"] = uptime()
        RESULTS.mkdir(parents=True, exist_ok=True)
        tmp = out_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out_json)

    for strategy in args.strategies:
        for seed in args.seeds:
            keep = args.retrain_at if (args.retrain_at and seed == args.seeds[0]) else None
            curve, kept, judged = simulate(
                strategy,
                seed,
                base_dir,
                pool,
                pool_vecs,
                eval_ids,
                eval_vecs,
                eval_gold,
                tags,
                args.batch,
                args.retrain_at if keep else args.max_judged,
                qparams,
                args.suggestions,
                keep,
                exemplar_overrides,
            )
            if kept is not None:
                config = json.loads(Path(args.retrain_config).read_text()) if args.retrain_config else None
                point = retrain_point(
                    kept,
                    judged,
                    tags,
                    eval_products,
                    eval_gold,
                    work,
                    f"{strategy}-{seed}-{keep}{model_slug}",
                    args.backend,
                    config,
                    pool if args.self_train else None,
                    pool_vecs if args.self_train else None,
                    exemplar_overrides,
                    args.model,
                )
                result["retrained"].setdefault(strategy, []).append({"seed": seed, **point})
                if args.max_judged > keep:  # the online curve continues from a fresh run of the same seed
                    curve, _, _ = simulate(
                        strategy,
                        seed,
                        base_dir,
                        pool,
                        pool_vecs,
                        eval_ids,
                        eval_vecs,
                        eval_gold,
                        tags,
                        args.batch,
                        args.max_judged,
                        qparams,
                        args.suggestions,
                        None,
                        exemplar_overrides,
                    )
            result["curves"].setdefault(strategy, []).append({"seed": seed, "curve": curve})
            save()

    if args.merge_retrained:
        other = json.loads(Path(args.merge_retrained).read_text())
        for strategy, points in other.get("retrained", {}).items():
            result["retrained"].setdefault(strategy, []).extend(points)
        result["retrained_from"] = args.merge_retrained
    # Table: mean over seeds at each batch.
    print(f"\n{result['eval']}, {args.backend} encoder, batches of {args.batch}")
    print("| judged | " + " | ".join(f"{s} lvl3 R@1 | {s} challenge" for s in result["curves"]) + " |")
    print("|---" * (1 + 2 * len(result["curves"])) + "|")
    xs = [p["judged"] for p in next(iter(result["curves"].values()))[0]["curve"]]
    for i, x in enumerate(xs):
        cells = []
        for runs in result["curves"].values():
            if i < len(runs[0]["curve"]):
                r1 = np.mean([r["curve"][i]["lvl3_r1"] for r in runs])
                ch = np.mean([r["curve"][i]["challenge"] for r in runs])
                cells += [f"{r1:.3f}", f"{ch:.3f}"]
            else:
                cells += ["", ""]
        print(f"| {x} | " + " | ".join(cells) + " |")
    for strategy, points in result["retrained"].items():
        for p in points:
            print(
                f"{strategy} seed {p['seed']} + one re-training at {p['judged']}: "
                f"lvl3 R@1 {p['lvl3_r1']:.3f}, "
                f"challenge {p['challenge']:.3f} ({p['train_seconds']} s training)"
            )
    save()
    plot(result, RESULTS / f"{args.name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
