"""Vocabulary commands: ``tagindex similar``, ``update`` and ``convert``."""

from __future__ import annotations

import argparse
import json

from tagindex.cli.common import Command, add_option, logger


# ---- similar ----------------------------------------------------------------------------------------
def configure_similar(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex similar``."""
    add_option(p, "--index", required=True)
    add_option(p, "--top-k", help="how many tags (or pairs) to print")
    p.add_argument(
        "--duplicates",
        action="store_true",
        help="list merge candidates instead: near-identical tag pairs that are not parent/child or "
        "siblings, best evidence (vectors, names, paths, shared labelled products) first",
    )
    p.add_argument("--min-score", type=float, default=0.9, help="similarity for --duplicates (default 0.9)")
    p.add_argument(
        "--include-siblings", action="store_true", help="--duplicates: keep pairs with the same parent"
    )
    p.add_argument(
        "--include-family",
        action="store_true",
        help="--duplicates: keep ancestor/descendant pairs too (each pair names its relation)",
    )
    p.add_argument(
        "--neighbours", type=int, default=5, help="--duplicates: nearest tags looked at per tag (default 5)"
    )
    add_option(p, "--language")
    p.add_argument("query", nargs="*", help="tag id or free text")


def run_similar(args: argparse.Namespace) -> int:
    """Prints the tags nearest a tag id or text, or the near-duplicate tag pairs, as JSON lines."""
    from tagindex.index import TagIndex

    index = TagIndex.load(args.index)
    if args.duplicates:
        from tagindex.duplicates import find_duplicates
        from tagindex.text import tag_path

        if args.neighbours < 1:
            raise ValueError(f"--neighbours must be at least 1, not {args.neighbours}")
        tags = index.tags
        by_id = {t.id: t for t in tags}
        pairs = find_duplicates(
            tags,
            index.vectors,
            min_score=args.min_score,
            neighbours=args.neighbours,
            include_siblings=args.include_siblings,
            include_family=args.include_family,
            exemplar_labels=index.exemplar_labels(),
        )
        for pair in pairs[: args.top_k]:
            row = {
                "a": pair.a,
                "a_name": by_id[pair.a].name_in(args.language),
                "b": pair.b,
                "b_name": by_id[pair.b].name_in(args.language),
                "score": round(pair.score, 4),
                "a_path": tag_path(by_id[pair.a], by_id),
                "b_path": tag_path(by_id[pair.b], by_id),
            }
            evidence = pair.to_dict()
            for key in ("a", "b", "score"):
                evidence.pop(key)
            print(json.dumps(row | evidence, ensure_ascii=False))
        return 0
    if not args.query:
        raise ValueError("give a tag id or text to look up, or --duplicates")
    query = " ".join(args.query)
    for hit in index.similar(query, top_k=args.top_k):
        hit.name = index.get(hit.tag).name_in(args.language)
        print(json.dumps(hit.to_dict(), ensure_ascii=False))
    return 0


# ---- update -----------------------------------------------------------------------------------------
def configure_update(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex update``."""
    add_option(p, "--index", required=True, help="index directory to change in place (atomically)")
    p.add_argument("--add", help="tags file whose tags are added (parents may be existing tags)")
    p.add_argument("--remove", nargs="+", default=[], metavar="ID", help="tag ids to retire")
    p.add_argument("--cascade", action="store_true", help="also retire the descendants of removed tags")


def run_update(args: argparse.Namespace) -> int:
    """Adds and/or retires tags in a saved index and saves it in place."""
    from tagindex.index import TagIndex, read_saved_tags
    from tagindex.io import load_tags

    if not args.add and not args.remove:
        raise ValueError("nothing to do: give --add FILE and/or --remove ID ...")
    existing = {t.id for t in read_saved_tags(args.index)}
    new_tags = load_tags(args.add, known_parents=existing) if args.add else []
    index = TagIndex.load(args.index)
    removed = index.remove_tags(args.remove, cascade=args.cascade) if args.remove else []
    index.add_tags(new_tags, show_progress=not args.quiet)
    index.save(args.index)
    logger.info("added %d, removed %d tags; the index now holds %d", len(new_tags), len(removed), len(index))
    return 0


# ---- convert ----------------------------------------------------------------------------------------
def configure_convert(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex convert``."""
    p.add_argument("source", choices=["mwpd", "attribute-tags", "shopify", "google"])
    p.add_argument("--src", required=True, help="source directory (see README for where to get it)")
    add_option(p, "--out", required=True, help="output directory")
    p.add_argument(
        "--include",
        choices=["all", "categories", "values"],
        default="all",
        help="shopify only: categories, attribute values, or both (default)",
    )
    p.add_argument(
        "--locale",
        help="shopify only: names from the taxonomy's localisations (e.g. zh-CN); tags keep their "
        "English name under names.en",
    )


def run_convert(args: argparse.Namespace) -> int:
    """Converts a public dataset to tags.jsonl plus split files and prints the report."""
    from tagindex.convert import convert

    report = convert(args.source, args.src, args.out, include=args.include, locale=args.locale)
    print(report)
    return 0


COMMANDS = {
    "similar": Command(
        "tags most similar to a tag id or free text; --duplicates lists merge candidates",
        configure_similar,
        run_similar,
    ),
    "update": Command(
        "add or retire tags in a saved index without rebuilding it", configure_update, run_update
    ),
    "convert": Command(
        "convert public data (mwpd, attribute-tags, shopify, google) to tags.jsonl + split files",
        configure_convert,
        run_convert,
    ),
}
