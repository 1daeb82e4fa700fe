"""``tagindex tag``, ``show`` and ``evaluate``: write a run file, read one, score one.

The run format is a contract: one JSON line per product,
``{"id": ..., "tags": [{"tag": ..., "score": ...}, ...]}``, best first.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from tagindex.cli.common import (
    Command,
    add_kind_options,
    add_option,
    add_product_columns,
    logger,
    product_columns,
)
from tagindex.runio import RUN_FORMATS


# ---- tag --------------------------------------------------------------------------------------------
def configure_tag(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex tag`` (the reranker/decision options come from :mod:`tagindex.cli.rerank`)."""
    from tagindex.cli.rerank import add_tag_options

    add_option(p, "--index", required=True, help="index directory from `tagindex index`")
    add_option(p, "--products", required=True)
    add_product_columns(p)
    add_option(
        p,
        "--out",
        required=True,
        help="run file to write: .jsonl (one JSON line per product; also any other extension), "
        ".csv (one row per product-tag) or .parquet",
    )
    p.add_argument(
        "--format",
        choices=RUN_FORMATS,
        default=None,
        help="run file format (default: from the --out extension, JSON lines otherwise)",
    )
    add_option(
        p, "--top-k", default=None, help="tags per product (default: the index's optimized setting, else 10)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="drop tags scoring below this (default: the index's optimized setting, else none)",
    )
    add_kind_options(p)
    p.add_argument(
        "--ancestors",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add each ranked tag's ancestors after it (default: the index's optimized setting, else no)",
    )
    add_option(p, "--cache")
    add_option(p, "--description-chars", help="override the index's description budget")
    add_option(p, "--on-error")
    add_option(p, "--language", help="also write each tag's name in this language (run field `name`)")
    add_tag_options(p)
    from tagindex.cli.engine import add_engine_options

    add_engine_options(p)


def saved_settings(args: argparse.Namespace, saved: dict[str, Any] | None) -> dict[str, Any]:
    """Fills ``--top-k``, ``--threshold`` and the kind options the command line left unset from the
    settings ``tagindex optimize`` saved with the index (explicit flags win); returns what was used."""
    saved = saved or {}
    used = {}
    kind_flags = ("per_kind", "kind_norm", "category_title_weight")
    explicit_kinds = any(getattr(args, name, None) is not None for name in kind_flags)
    for name in ("top_k", "threshold", "ancestors", *kind_flags):
        if getattr(args, name, None) is not None or name not in saved:
            continue
        if name in kind_flags and explicit_kinds:  # both engines apply the kind policy
            continue
        setattr(args, name, saved[name])
        used[name] = saved[name]
    if args.ancestors is None:
        args.ancestors = False
    if args.top_k is None:
        args.top_k = 10
    return used


def _log_saved(used: dict[str, Any]) -> None:
    if used:
        logger.info("settings saved with the index by `tagindex optimize`: %s", used)


def run_tag(args: argparse.Namespace) -> int:
    """Ranks tags for every product and writes the run file."""
    if args.engine == "ray":  # Parquet shards written by Ray actors: see tagindex/cli/engine.py
        from tagindex.cli.engine import run_tag_engine
        from tagindex.store import read_manifest

        _log_saved(saved_settings(args, read_manifest(args.index, "tagindex", verify=False).get("tagging")))
        return run_tag_engine(args)
    from tagindex.cli.rerank import tag_records
    from tagindex.index import TagIndex
    from tagindex.io import load_products
    from tagindex.runio import run_format, write_run

    fmt = run_format(args.out, args.format)
    if fmt == "csv" and args.decide:  # checked before the work: one CSV row per tag has no room for it
        raise ValueError(
            f"{args.out}: --decide adds 'assigned' lists, which a CSV run cannot hold; use .jsonl"
        )
    products = load_products(args.products, on_error=args.on_error, columns=product_columns(args))
    index = TagIndex.load(args.index)
    _log_saved(saved_settings(args, index.tagging))
    if args.description_chars is not None:
        index.params.text.description_chars = args.description_chars
    start = time.perf_counter()
    records = list(tag_records(args, index, products))  # the tagging pipeline, rerank or not
    elapsed = time.perf_counter() - start
    by_id = index.by_id
    if args.language:
        for record in records:
            for hit in record.get("tags", []):
                if hit["tag"] in by_id:
                    hit["name"] = by_id[hit["tag"]].name_in(args.language)
    names = {tid: tag.name_in(args.language) for tid, tag in by_id.items()} if fmt == "csv" else None
    n = write_run(args.out, records, fmt, names)
    logger.info("tagged %d products in %.1fs (%.0f/s) -> %s", n, elapsed, n / max(elapsed, 1e-9), args.out)
    return 0


# ---- show -------------------------------------------------------------------------------------------
def configure_show(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex show``."""
    p.add_argument("--run", help="run file from `tagindex tag` (.jsonl, .csv or .parquet)")
    add_option(p, "--products", help="the products file the run was made from")
    add_product_columns(p)
    add_option(p, "--index", help="index directory, to print tag names and paths")
    p.add_argument("-n", type=int, default=10, help="products to show (default 10)")
    add_option(p, "--top-k", default=5, help="tags per product to show (default 5)")
    add_option(p, "--language", help="tag names in this language where the index has them")
    p.add_argument(
        "--lent",
        action="store_true",
        help="instead: every name an index adapted with --graft lends, one tab-separated line each "
        "(outside category id, tag id, lent name, tag path); keep the wrong ones in a file for "
        "`adapt --graft-exclude`",
    )


def _show_lent(index_dir: str) -> int:
    """Prints the names lent by ``adapt --graft``, grouped by the tag receiving them."""
    from tagindex.index import read_saved_lent_names, read_saved_tags
    from tagindex.text import tag_path

    tags = read_saved_tags(index_dir)
    by_id = {t.id: t for t in tags}
    lent = read_saved_lent_names(index_dir, tags)
    if not lent:
        logger.info("%s lends no names (not adapted with --graft)", index_dir)
        return 0
    print("# source_id\ttag_id\tlent name\ttag path")
    for source, name, tag in sorted(lent, key=lambda r: (r[2], r[1])):
        print(f"{source}\t{tag}\t{name}\t{' > '.join(tag_path(by_id[tag], by_id))}")
    logger.info("%d names lent to %d tags", len(lent), len({r[2] for r in lent}))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Prints the first products of a run with their titles, gold tags and top tags (or, with
    ``--lent``, the names an adapted index lends)."""
    from tagindex.errors import InputError
    from tagindex.io import load_products
    from tagindex.runio import read_run_records

    if args.lent:
        if not args.index or args.run:
            raise InputError("--lent: lists what an index lends; give --index and no --run")
        return _show_lent(args.index)
    if not args.run or not args.products:
        raise InputError("show: give --run and --products (or --index with --lent)")

    products = {p.id: p for p in load_products(args.products, columns=product_columns(args))}
    names: dict[str, str] = {}
    parents: dict[str, str | None] = {}
    if args.index:
        from dataclasses import replace

        from tagindex.index import read_saved_tags
        from tagindex.text import tag_path

        by_id = {t.id: t for t in read_saved_tags(args.index)}
        if args.language:  # the path in the requested language: rename every tag first
            by_id = {tid: replace(t, name=t.name_in(args.language)) for tid, t in by_id.items()}
        names = {tid: " > ".join(tag_path(t, by_id)) for tid, t in by_id.items()}
        parents = {tid: t.parent for tid, t in by_id.items()}
    for shown, (line, row) in enumerate(read_run_records(args.run)):
        if shown >= args.n:
            break
        if isinstance(row, str):
            raise ValueError(f"{args.run}:{line}: {row}")
        product = products.get(str(row.get("id")))
        title = product.title if product else "(product not in --products)"
        print(f"\n{row.get('id')}: {title[:100]}")
        if product and product.tags:
            # With an index: the gold's deepest tags as paths (their ancestors are in the path).
            above = {parents.get(t) for t in product.tags}
            deepest = [t for t in product.tags if t not in above] if names else product.tags
            print(f"  gold: {('; ' if names else ', ').join(names.get(t, t) for t in deepest)}")
        for hit in row.get("tags", [])[: args.top_k]:
            tag = hit.get("tag")
            print(f"  {hit.get('score', 0):6.3f}  {names.get(tag, tag)}")
    return 0


# ---- evaluate ---------------------------------------------------------------------------------------
def configure_evaluate(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex evaluate``."""
    p.add_argument(
        "--run", required=True, help="run file from `tagindex tag` or any system (.jsonl, .csv or .parquet)"
    )
    p.add_argument("--gold", required=True, help="products file whose `tags` are the gold answer")
    add_option(p, "--tags", help="tags file: enables per-level metrics and the MWPD challenge metric")
    p.add_argument("--train", help="training products file: enables tag-frequency buckets")
    p.add_argument(
        "--metrics", default="recall,precision,mrr,ndcg", help="comma list of recall,precision,mrr,ndcg"
    )
    p.add_argument("--k", default="1,5,10", help="comma list of cut-offs (default 1,5,10)")
    p.add_argument(
        "--buckets", default="5,38", help="training-count bucket edges LOW,HIGH or 'auto' (tertiles)"
    )
    p.add_argument(
        "--level-mode",
        choices=["auto", "filter", "ancestors"],
        default="auto",
        help="how a level's ranking is read from the run (see tagindex.metrics)",
    )
    p.add_argument("--json", help="also write the full report as JSON here")


def run_evaluate(args: argparse.Namespace) -> int:
    """Scores a run file against the gold tags of a products file and prints the report."""
    from tagindex.io import load_products, load_tags
    from tagindex.metrics import evaluate, format_report, gold_from_products, read_run, write_report

    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
        edges: Any = "auto" if args.buckets == "auto" else tuple(int(e) for e in args.buckets.split(","))
    except ValueError:
        raise ValueError("--k and --buckets take comma-separated integers") from None
    if edges != "auto" and (len(edges) != 2 or edges[0] >= edges[1]):
        raise ValueError("--buckets takes two increasing integers LOW,HIGH or 'auto'")
    run = read_run(args.run)
    gold = gold_from_products(load_products(args.gold))
    tags = load_tags(args.tags) if args.tags else None
    train = load_products(args.train) if args.train else None
    report = evaluate(
        run,
        gold,
        tags=tags,
        train=train,
        ks=ks,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        bucket_edges=edges,
        level_mode=args.level_mode,
    )
    report["run"], report["gold"] = str(args.run), str(args.gold)
    print(format_report(report))
    if args.json:
        write_report(args.json, report)
    return 0


COMMANDS = {
    "tag": Command(
        "rank tags for every product in a file and write a run file (JSON lines)", configure_tag, run_tag
    ),
    "show": Command(
        "print a readable sample of a run file: product titles with their tags and scores",
        configure_show,
        run_show,
    ),
    "evaluate": Command(
        "score a run file against gold tags: recall/precision/MRR/nDCG, levels, buckets",
        configure_evaluate,
        run_evaluate,
    ),
}
