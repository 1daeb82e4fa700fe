"""CLI commands of the rerank / decision / explanation stages: ``train-reranker``, ``calibrate``,
``explain``, and the reranked path of ``tag`` (``--reranker``, ``--calibration``, ``--decide``).

Registered by :mod:`tagindex.cli` (``register(command)``), which owns the parser and error handling;
the decorator is passed in so ``python -m tagindex.cli`` registers into the running module.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Handler = Callable[[argparse.Namespace], int]

logger = logging.getLogger("tagindex")


def add_tag_options(p: argparse.ArgumentParser) -> None:
    """Options ``tagindex tag`` gains from this stage."""
    p.add_argument("--reranker", help="reranker directory from `tagindex train-reranker`")
    p.add_argument(
        "--rerank-depth", type=int, default=None, help="candidates the reranker rescores (default: its own)"
    )
    p.add_argument("--calibration", help="calibration file from `tagindex calibrate` (used by --decide)")
    p.add_argument(
        "--decide",
        action="store_true",
        help='add the assigned tags to each line as "assigned" (needs --calibration)',
    )
    p.add_argument(
        "--hierarchy",
        choices=["close", "prune", "none"],
        default="close",
        help="assigned tags: add ancestors (close, default), drop orphans (prune) or neither (none)",
    )


def wants_stage(args: argparse.Namespace) -> bool:
    return bool(args.reranker or args.decide or args.calibration)


def _load_stage(args: argparse.Namespace, depth_attr: str = "rerank_depth") -> tuple[Any, Any]:
    from tagindex.calibrate import Calibration
    from tagindex.rerank import Reranker

    reranker = Reranker.load(args.reranker) if getattr(args, "reranker", None) else None
    calibration = Calibration.load(args.calibration) if getattr(args, "calibration", None) else None
    if calibration is not None:
        if calibration.score == "rerank" and reranker is None:
            raise ValueError(f"{args.calibration}: fitted on reranker scores: pass --reranker too")
        if (
            reranker is not None
            and calibration.score == "rerank"
            and calibration.reranker != reranker.fingerprint
        ):
            raise ValueError(f"{args.calibration}: fitted for a different reranker than {args.reranker}")
    depth = getattr(args, depth_attr, None)
    if depth is not None and depth < 1:
        raise ValueError(f"--rerank-depth must be at least 1, got {depth}")
    return reranker, calibration


def tag_records(args: argparse.Namespace, index: Any, products: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """Run-file lines for ``tag`` with a reranker and/or decisions; ``id`` and ``tags`` keep the
    contract format, decisions go to a separate ``assigned`` list."""
    from tagindex.pipeline import TaggingPipeline

    pipeline = TaggingPipeline.from_files(
        index, args.reranker, args.calibration, depth=args.rerank_depth, hierarchy=args.hierarchy
    )
    tagged = pipeline.tag(
        products,
        top_k=args.top_k,
        threshold=args.threshold,
        include_ancestors=args.ancestors,
        decide=args.decide,
        cache_dir=args.cache,
        show_progress=not args.quiet,
    )
    for t in tagged:
        yield t.to_record()


# ---- train-reranker -----------------------------------------------------------------------------------
def _configure_train_reranker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--products", required=True, help="labelled products (with tags) to train on")
    p.add_argument("--index", help="index directory whose bi-encoder gives the hard negatives")
    p.add_argument("--tags", help="tags file: checked against the index, or indexed in memory")
    p.add_argument("--out", required=True, help="reranker directory to write")
    p.add_argument("--model", help="initial checkpoint directory (default: the packaged MiniLM)")
    p.add_argument("--fast", action="store_true", help="small smoke-test settings (200 products, 1 epoch)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (more than 1: keep the best on dev)")
    p.add_argument("--max-products", type=int, default=None, help="cap on training products (seeded)")
    p.add_argument("--hard-negatives", type=int, default=None, help="hard negatives per product")
    p.add_argument("--candidate-k", type=int, default=None, help="bi-encoder candidates negatives come from")
    p.add_argument("--depth", type=int, default=None, help="default rerank depth stored with the model")
    p.add_argument("--seed", type=int, default=None, help="seed for split, sampling and initialisation")
    p.add_argument("--learning-rate", type=float, default=None, help="AdamW learning rate")
    p.add_argument("--description-chars", type=int, default=None, help="description characters read")
    p.add_argument(
        "--on-error", choices=["raise", "skip"], default="raise", help="malformed rows: fail or skip"
    )


def run_train_reranker(args: argparse.Namespace) -> int:
    from tagindex.io import load_products, load_tags
    from tagindex.rerank import RerankerParams, train_reranker

    if not args.index and not args.tags:
        raise ValueError("give --index (preferred) or --tags")
    index = _index_for(args)
    params = RerankerParams.fast() if args.fast else RerankerParams()
    for name in (
        "model",
        "epochs",
        "max_products",
        "hard_negatives",
        "candidate_k",
        "depth",
        "seed",
        "learning_rate",
        "description_chars",
    ):
        value = getattr(args, name)
        if value is not None:
            setattr(params, name, value)
    if args.tags and args.index:
        known = set(index.by_id)
        extra = [t.id for t in load_tags(args.tags) if t.id not in known]
        if extra:
            raise ValueError(f"{args.tags}: {len(extra)} tag(s) not in the index, e.g. {extra[:5]}")
    products = load_products(args.products, on_error=args.on_error)
    reranker = train_reranker(index, products, params, show_progress=not args.quiet)
    reranker.save(args.out)
    print(json.dumps(reranker.info["training"], sort_keys=True))
    return 0


def _index_for(args: argparse.Namespace) -> Any:
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    if args.index:
        return TagIndex.load(args.index)
    return TagIndex.build(load_tags(args.tags, on_error=args.on_error), show_progress=not args.quiet)


# ---- calibrate ----------------------------------------------------------------------------------------
def _configure_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--products", required=True, help="labelled products (the reranker's training file)")
    p.add_argument("--out", required=True, help="calibration JSON file to write")
    p.add_argument("--reranker", help="reranker directory; without it bi-encoder scores are calibrated")
    p.add_argument("--depth", type=int, default=20, help="candidates per product (rerank depth), default 20")
    p.add_argument("--method", choices=["isotonic", "platt"], default="isotonic", help="default isotonic")
    p.add_argument("--target-precision", type=float, default=0.9, help="per-level precision target (0.9)")
    p.add_argument(
        "--dev-fraction",
        type=float,
        default=0.1,
        help="dev share of --products when the reranker names no dev split (or without a reranker)",
    )
    p.add_argument("--max-products", type=int, default=None, help="cap on dev products (seeded sample)")
    p.add_argument("--seed", type=int, default=13, help="seed of the dev split and sample")
    p.add_argument(
        "--on-error", choices=["raise", "skip"], default="raise", help="malformed rows: fail or skip"
    )


def run_calibrate(args: argparse.Namespace) -> int:
    import random

    from tagindex.calibrate import CalibrationParams, calibration_products, fit_calibration
    from tagindex.index import TagIndex
    from tagindex.io import load_products
    from tagindex.rerank import Reranker, load_dev_ids

    if args.depth < 1:
        raise ValueError(f"--depth must be at least 1, got {args.depth}")
    if not 0.0 < args.target_precision <= 1.0:
        raise ValueError(f"--target-precision must be in (0, 1], got {args.target_precision}")
    index = TagIndex.load(args.index)
    reranker = Reranker.load(args.reranker) if args.reranker else None
    products = load_products(args.products, on_error=args.on_error)
    dev_ids = load_dev_ids(reranker) if reranker is not None else []
    dev = calibration_products(products, dev_ids, args.dev_fraction, args.seed)
    if args.max_products is not None and len(dev) > args.max_products:
        dev = random.Random(args.seed).sample(dev, args.max_products)
    params = CalibrationParams(method=args.method, target_precision=args.target_precision)
    start = time.perf_counter()
    cal = fit_calibration(index, dev, reranker, args.depth, params, show_progress=not args.quiet)
    cal.save(args.out)
    logger.info(
        "calibrated on %d dev products in %.1fs -> %s", len(dev), time.perf_counter() - start, args.out
    )
    print(json.dumps({"thresholds": cal.thresholds, **cal.report}, sort_keys=True))
    return 0


# ---- explain ------------------------------------------------------------------------------------------
def _configure_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--products", required=True, help="products file")
    p.add_argument("--id", action="append", default=None, help="product id to explain (repeatable)")
    p.add_argument("--limit", type=int, default=10, help="without --id: the first N products (default 10)")
    p.add_argument("--reranker", help="reranker directory (reranker scores and word importance)")
    p.add_argument("--calibration", help="calibration file: explain the assigned tags")
    p.add_argument("--train", help="labelled products: nearest labelled products carrying each tag")
    p.add_argument("--top-k", type=int, default=20, help="bi-encoder candidates (default 20)")
    p.add_argument("--rerank-depth", type=int, default=None, help="candidates the reranker rescores")
    p.add_argument("--neighbours", type=int, default=3, help="labelled neighbours per tag (default 3)")
    p.add_argument("--words", type=int, default=5, help="important words per tag (default 5)")
    p.add_argument(
        "--max-carriers", type=int, default=1000, help="labelled products searched per tag (default 1000)"
    )
    p.add_argument("--hierarchy", choices=["close", "prune", "none"], default="close")
    p.add_argument("--cache", help="directory caching labelled product vectors")
    p.add_argument("--out", help="JSON-lines file to write (default: stdout)")


def run_explain(args: argparse.Namespace) -> int:
    from tagindex.explain import Explainer, ExplainParams
    from tagindex.index import TagIndex
    from tagindex.io import load_products, write_jsonl

    index = TagIndex.load(args.index)
    reranker, calibration = _load_stage(args)
    products = load_products(args.products)
    if args.id:
        by_id = {p.id: p for p in products}
        missing = [i for i in args.id if i not in by_id]
        if missing:
            raise ValueError(f"{args.products}: no product with id {missing[:10]}")
        chosen = [by_id[i] for i in args.id]
    else:
        chosen = products[: max(args.limit, 0)]
    labelled = load_products(args.train) if args.train else None
    params = ExplainParams(
        top_k=args.top_k,
        depth=args.rerank_depth,
        neighbours=args.neighbours,
        words=args.words,
        max_carriers=args.max_carriers,
        hierarchy=args.hierarchy,
    )
    explainer = Explainer(index, reranker, calibration, labelled, params, cache_dir=args.cache)
    records = explainer.explain(chosen, show_progress=not args.quiet)
    if args.out:
        write_jsonl(args.out, records)
    else:
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


def register(command: Callable[..., Callable[[Handler], Handler]]) -> None:
    """Adds this stage's sub-commands with the CLI's ``command`` decorator."""
    command(
        "train-reranker",
        "train a cross-encoder reranker on labelled products with bi-encoder hard negatives",
        _configure_train_reranker,
    )(run_train_reranker)
    command(
        "calibrate",
        "fit score -> probability maps and per-level thresholds on held-out labelled products",
        _configure_calibrate,
    )(run_calibrate)
    command(
        "explain",
        "explain assigned tags: score parts, nearest labelled products, important words",
        _configure_explain,
    )(run_explain)
