"""``tagindex optimize``: tagging settings for a target precision, saved with the index (issue 15)."""

from __future__ import annotations

import argparse
from typing import Any

from tagindex.cli.common import Command, add_option, add_product_columns, logger, product_columns


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex optimize``."""
    add_option(p, "--index", required=True, help="index directory; the chosen settings are saved with it")
    add_option(p, "--products", required=True, help="labelled products (a few hundred) to choose on")
    add_product_columns(p)
    p.add_argument(
        "--target-precision", type=float, default=0.8, help="micro precision to reach (default 0.8)"
    )
    p.add_argument(
        "--report-products",
        help="other labelled products to measure the chosen settings on (default: a held-out share "
        "of --products)",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.3,
        help="share of --products held out to measure on when --report-products is not given (0.3)",
    )
    p.add_argument(
        "--max-products",
        type=int,
        default=None,
        help="seeded sample of this many --products (and as many --report-products) to use",
    )
    add_option(p, "--seed", default=13, help="seed of the sample and the hold-out split (13)")
    add_option(p, "--reranker", help="reranker directory the settings are chosen for (tag --reranker)")
    p.add_argument("--dry-run", action="store_true", help="print the settings; do not save them")
    p.add_argument("--json", help="also write the result as JSON here")
    add_option(p, "--on-error")


def run(args: argparse.Namespace) -> int:
    """Chooses the settings, prints them with precision/recall, saves them with the index."""
    import random

    from tagindex.index import TagIndex
    from tagindex.io import load_products
    from tagindex.metrics import write_report
    from tagindex.optimize import optimize
    from tagindex.pipeline import TaggingPipeline

    if not 0.0 < args.target_precision <= 1.0:
        raise ValueError(f"--target-precision must be in (0, 1], got {args.target_precision}")
    if not 0.0 < args.holdout < 1.0:
        raise ValueError(f"--holdout must be in (0, 1), got {args.holdout}")
    products = load_products(args.products, on_error=args.on_error, columns=product_columns(args))
    rng = random.Random(args.seed)
    if args.max_products is not None and len(products) > args.max_products:
        products = rng.sample(products, args.max_products)
    if args.report_products:
        choose = products
        report = load_products(args.report_products, on_error=args.on_error, columns=product_columns(args))
        if args.max_products is not None and len(report) > args.max_products:
            report = rng.sample(report, args.max_products)
    else:
        shuffled = rng.sample(products, len(products))
        cut = round(len(shuffled) * (1 - args.holdout))
        choose, report = shuffled[:cut], shuffled[cut:]
        if not choose or not report:
            raise ValueError(f"{args.products}: too few products to hold {args.holdout:.0%} out")
    index = TagIndex.load(args.index)
    pipeline = TaggingPipeline.from_files(index, args.reranker)
    result = optimize(pipeline, choose, report, args.target_precision)
    print(format_result(result.to_dict(), len(choose), len(report)))
    record = result.to_dict()
    if args.json:
        write_report(args.json, record)
    if not args.dry_run:
        index.tagging = {**result.settings.to_dict(), "optimized": record}
        index.save(args.index)
        logger.info(
            "saved with %s: `tagindex tag --index` uses these settings unless flags say otherwise", args.index
        )
    return 0


def format_result(record: dict[str, Any], n_choose: int, n_report: int) -> str:
    """The printed summary: settings, then precision/recall where chosen and held out."""
    settings = " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in record["settings"].items()
    )
    lines = [f"settings: {settings}"]
    if not record["reached_on_choose"]:
        lines.append(f"target precision {record['target_precision']} not reached: the most precise settings")
    for name, n in (("choose", n_choose), ("report", n_report), ("baseline_report", n_report)):
        m = record[name]
        label = {"choose": "chosen on", "report": "held out", "baseline_report": "held out, defaults"}[name]
        lines.append(
            f"{label:20s} {n:6d} products  precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
            f"F1 {m['f1']:.3f}  tags/product {m['tags_per_product']:.2f}"
        )
    return "\n".join(lines)


COMMANDS = {
    "optimize": Command(
        "choose top-k, threshold and per-kind limits for a target precision on labelled products; "
        "save them with the index",
        configure,
        run,
    )
}
