"""``tagindex explain``: why each tag was assigned (score parts, labelled neighbours, important words)."""

from __future__ import annotations

import argparse
import json
import sys

from tagindex.cli.common import Command, add_option


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex explain``."""
    add_option(p, "--index", required=True)
    add_option(p, "--products", required=True, help="products file")
    p.add_argument("--id", action="append", default=None, help="product id to explain (repeatable)")
    p.add_argument("--limit", type=int, default=10, help="without --id: the first N products (default 10)")
    add_option(p, "--reranker", help="reranker directory (reranker scores and word importance)")
    add_option(p, "--calibration", help="calibration file: explain the assigned tags")
    p.add_argument("--train", help="labelled products: nearest labelled products carrying each tag")
    add_option(p, "--top-k", default=20, help="bi-encoder candidates (default 20)")
    add_option(p, "--rerank-depth")
    p.add_argument("--neighbours", type=int, default=3, help="labelled neighbours per tag (default 3)")
    p.add_argument("--words", type=int, default=5, help="important words per tag (default 5)")
    p.add_argument(
        "--max-carriers", type=int, default=1000, help="labelled products searched per tag (default 1000)"
    )
    add_option(p, "--hierarchy")
    add_option(p, "--cache", help="directory caching labelled product vectors")
    add_option(p, "--out", help="JSON-lines file to write (default: stdout)")


def run(args: argparse.Namespace) -> int:
    """Explains the chosen products' tags as JSON lines (to ``--out`` or stdout)."""
    from tagindex.cli.rerank import _load_stage
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


COMMANDS = {
    "explain": Command(
        "explain assigned tags: score parts, nearest labelled products, important words", configure, run
    ),
}
