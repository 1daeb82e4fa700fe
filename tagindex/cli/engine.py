"""``tagindex tag --engine ray``: options and handler (the engine lives in :mod:`tagindex.engines`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tagindex.cli.common import logger


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """Options ``tagindex tag`` gains for distributed batch tagging."""
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default): this process, --out is a JSONL run file; ray: Ray actors, --out is a "
        "directory of Parquet shards (resumable; needs tagindex[scale])",
    )
    p.add_argument("--ray-address", help="--engine ray: join this Ray cluster (default: start a local Ray)")
    p.add_argument("--num-workers", type=int, help="--engine ray: actors, one CPU each (default: all CPUs)")
    p.add_argument(
        "--batch-size", type=int, default=4096, help="--engine ray: products per task and per shard (4096)"
    )
    p.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        help="--engine ray: GPUs each actor reserves (default 0)",
    )


_LOCAL_ONLY = ("reranker", "calibration", "decide", "cache", "per_kind", "kind_norm", "category_title_weight")


def run_tag_engine(args: argparse.Namespace) -> int:
    """Runs ``tag --engine ray``; failed rows go to OUT/_failures.jsonl (exit 2 unless --on-error skip)."""
    from tagindex.engines.ray_engine import tag_with_ray
    from tagindex.engines.shards import FAILURES_FILE, RunSummary, TagOptions

    unsupported = [f"--{name.replace('_', '-')}" for name in _LOCAL_ONLY if getattr(args, name, None)]
    if unsupported:
        raise ValueError(f"{', '.join(unsupported)}: not supported with --engine ray (use the local engine)")
    options = TagOptions(
        top_k=args.top_k,
        threshold=args.threshold,
        ancestors=args.ancestors,
        description_chars=args.description_chars,
    )
    bar: Any = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(unit=" products", desc="tagging", smoothing=0.1)

    def progress(summary: RunSummary) -> None:
        if bar is not None:
            bar.update(summary.tagged - bar.n)

    try:
        summary = tag_with_ray(
            args.index,
            args.products,
            args.out,
            options,
            address=args.ray_address,
            num_workers=args.num_workers,
            batch_size=args.batch_size,
            gpus_per_worker=args.gpus_per_worker,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    logger.info(
        "tagged %d of %d products in %.1fs (%.0f/s, %d workers); %d shards written, %d already done; "
        "%d failures -> %s",
        summary.tagged,
        summary.products,
        summary.seconds,
        summary.products_per_s,
        summary.workers,
        summary.shards_written,
        summary.shards_skipped,
        summary.failures,
        args.out,
    )
    print(json.dumps(summary.to_dict()))
    if summary.failures:
        where = f"{args.out}/{FAILURES_FILE}"
        if args.on_error == "raise" or summary.shards_unfinished:
            raise ValueError(
                f"{summary.failures} product(s) failed; each is listed with its reason in {where}"
            )
        logger.warning("%d product(s) failed; each is listed with its reason in %s", summary.failures, where)
    return 0
