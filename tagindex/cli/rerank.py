"""CLI commands of the rerank / decision stages: ``train-reranker``, ``calibrate``, and the reranked
path of ``tag`` (``--reranker``, ``--calibration``, ``--decide``; used by :mod:`tagindex.cli.tagging`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from tagindex.cli.common import Command, add_option, kind_policy, logger


def add_tag_options(p: argparse.ArgumentParser) -> None:
    """Options ``tagindex tag`` gains from this stage."""
    add_option(p, "--reranker")
    add_option(p, "--rerank-depth", help="candidates the reranker rescores (default: its own)")
    add_option(p, "--calibration", help="calibration file from `tagindex calibrate` (used by --decide)")
    p.add_argument(
        "--decide",
        action="store_true",
        help='add the assigned tags to each line as "assigned" (needs --calibration)',
    )
    add_option(p, "--hierarchy")


def _load_stage(args: argparse.Namespace) -> tuple[Any, Any]:
    """The reranker and calibration the options name (loaded only: the tagging pipeline built from them
    checks that they belong together and to the index)."""
    from tagindex.calibration import Calibration
    from tagindex.pipeline import load_reranker

    reranker = load_reranker(args.reranker) if getattr(args, "reranker", None) else None
    calibration = Calibration.load(args.calibration) if getattr(args, "calibration", None) else None
    return reranker, calibration


def pipeline_arguments(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``tag``'s options ask of the tagging pipeline: the keyword arguments of
    :meth:`TaggingPipeline.from_files` and of :meth:`TaggingPipeline.tag`.

    The one place both engines read them from (the in-process run below and ``--engine ray``), so a
    new tag option added here reaches both.
    """
    # --rerank-depth without --reranker has always been ignored (it rescores nothing)
    depth = args.rerank_depth if args.reranker else None
    build = {
        "reranker": args.reranker,
        "calibration": args.calibration,
        "depth": depth,
        "hierarchy": args.hierarchy,
    }
    call = {
        "top_k": args.top_k,
        "threshold": args.threshold,
        "include_ancestors": args.ancestors,
        "decide": args.decide,
        "per_kind": kind_policy(args),
    }
    return build, call


def tag_records(args: argparse.Namespace, index: Any, products: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """Run-file lines of ``tag`` from the tagging pipeline (with a reranker and/or decisions when the
    options name them); ``id`` and ``tags`` keep the contract format, decisions go to a separate
    ``assigned`` list."""
    from tagindex.pipeline import TaggingPipeline

    build, call = pipeline_arguments(args)
    pipeline = TaggingPipeline.from_files(index, **build)
    tagged = pipeline.tag(products, **call, cache_dir=args.cache, show_progress=not args.quiet)
    for t in tagged:
        yield t.to_record()


# ---- train-reranker -----------------------------------------------------------------------------------
def _configure_train_reranker(p: argparse.ArgumentParser) -> None:
    add_option(p, "--products", required=True, help="labelled products (with tags) to train on")
    add_option(p, "--index", help="index directory whose bi-encoder gives the hard negatives")
    add_option(p, "--tags", help="tags file: checked against the index, or indexed in memory")
    add_option(p, "--out", required=True, help="reranker directory to write")
    add_option(p, "--model", help="initial checkpoint directory (default: the packaged MiniLM)")
    p.add_argument("--fast", action="store_true", help="small smoke-test settings (200 products, 1 epoch)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (more than 1: keep the best on dev)")
    p.add_argument("--max-products", type=int, default=None, help="cap on training products (seeded)")
    p.add_argument("--hard-negatives", type=int, default=None, help="hard negatives per product")
    p.add_argument("--candidate-k", type=int, default=None, help="bi-encoder candidates negatives come from")
    p.add_argument("--depth", type=int, default=None, help="default rerank depth stored with the model")
    add_option(p, "--seed", help="seed for split, sampling and initialisation")
    p.add_argument("--learning-rate", type=float, default=None, help="AdamW learning rate")
    add_option(p, "--description-chars", help="description characters read")
    add_option(p, "--on-error")


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
    add_option(p, "--index", required=True)
    add_option(p, "--products", required=True, help="labelled products (the reranker's training file)")
    add_option(p, "--out", required=True, help="calibration JSON file to write")
    add_option(p, "--reranker", help="reranker directory; without it bi-encoder scores are calibrated")
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
    add_option(p, "--seed", default=13, help="seed of the dev split and sample")
    add_option(p, "--on-error")


def run_calibrate(args: argparse.Namespace) -> int:
    import random

    from tagindex.calibrate import CalibrationParams, calibration_products, fit_calibration
    from tagindex.index import TagIndex
    from tagindex.io import load_products
    from tagindex.pipeline import load_reranker
    from tagindex.rerank import load_dev_ids

    if args.depth < 1:
        raise ValueError(f"--depth must be at least 1, got {args.depth}")
    if not 0.0 < args.target_precision <= 1.0:
        raise ValueError(f"--target-precision must be in (0, 1], got {args.target_precision}")
    index = TagIndex.load(args.index)
    reranker = load_reranker(args.reranker) if args.reranker else None
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


COMMANDS = {
    "train-reranker": Command(
        "train a cross-encoder reranker on labelled products with bi-encoder hard negatives",
        _configure_train_reranker,
        run_train_reranker,
    ),
    "calibrate": Command(
        "fit score -> probability maps and per-level thresholds on held-out labelled products",
        _configure_calibrate,
        run_calibrate,
    ),
}
