"""``tagindex adapt``: an index fitted to a shop's unlabelled catalog, without any label (issue 13)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tagindex.cli.common import (
    Command,
    add_option,
    encoder_backends,
    graft_exclusions,
    load_params,
    logger,
)

# Below this share of catalog titles naming a tag, the CLI suggests --graft (GS1 ~20%, Shopify 86%).
_ABSTRACT_NAMES = 0.5


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex adapt``."""
    add_option(p, "--tags", required=True)
    add_option(
        p,
        "--products",
        required=True,
        help="the unlabelled catalog (CSV, JSONL or Parquet); gold tags, if any, are ignored",
    )
    add_option(p, "--out", required=True, help="index directory to write (replaced only on success)")
    add_option(p, "--model", help="encoder model directory to start from (default: packaged MiniLM)")
    p.add_argument("--rounds", type=int, default=None, help="self-training rounds at most (default 3)")
    p.add_argument(
        "--adapt-config", help="JSON file of adaptation parameters (tagindex.adapt.AdaptParams fields)"
    )
    p.add_argument(
        "--finetune-rounds",
        type=int,
        default=None,
        help="contrastive fine-tuning rounds of the encoder on pseudo-labels (default 0: slow on CPU)",
    )
    p.add_argument(
        "--max-products", type=int, default=None, help="adapt on a seeded sample of this many products"
    )
    add_option(p, "--graft")
    add_option(p, "--graft-exclude")
    add_option(p, "--seed", help="random seed (default 0)")
    add_option(p, "--cache")
    add_option(p, "--config")
    add_option(p, "--description-chars")
    p.add_argument("--backend", default=None, help="encoder backend: " + ", ".join(encoder_backends()))
    add_option(p, "--on-error")


def run(args: argparse.Namespace) -> int:
    """Adapts the index to the catalog and saves it to ``--out``."""
    import random

    from tagindex.adapt import AdaptParams, adapt
    from tagindex.errors import InputError
    from tagindex.io import load_products, load_tags
    from tagindex.kinds import ATTRIBUTE_KINDS

    tags = load_tags(args.tags, on_error=args.on_error)
    graft = load_tags(args.graft, on_error=args.on_error) if args.graft else None
    exclude = graft_exclusions(args, graft, tags)
    products = load_products(args.products, on_error=args.on_error)
    params = AdaptParams()
    if args.adapt_config:
        try:
            params = AdaptParams.from_dict(json.loads(Path(args.adapt_config).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{args.adapt_config}: cannot read adaptation config: {exc}") from None
    if args.rounds is not None:
        params.rounds = args.rounds
    if args.finetune_rounds is not None:
        params.finetune_rounds = args.finetune_rounds
    if args.seed is not None:
        params.seed = args.seed
    if graft is not None and params.lexical_weight <= 0:
        raise InputError("--graft: lends names to the title match, which --adapt-config switches off")
    if args.max_products is not None and args.max_products < len(products):
        products = random.Random(params.seed).sample(products, args.max_products)
    labelled = sum(1 for p in products if p.tags)
    if labelled:
        logger.info("%d products carry tags: adapt ignores them (no label is read)", labelled)
    start = time.perf_counter()
    index, report = adapt(
        tags,
        products,
        params,
        load_params(args),
        cache_dir=args.cache,
        show_progress=not args.quiet,
        graft=graft,
        graft_exclude=exclude,
    )
    index.save(args.out)
    rounds = report["adapt"]["rounds"]
    lexical = report["adapt"].get("lexical")
    grafted = report["adapt"].get("graft")
    if grafted:
        logger.info(
            "graft: %d of %d outside categories lent to %d tags (e.g. %s)",
            grafted["lent"],
            grafted["source_categories"],
            grafted["tags_receiving"],
            "; ".join(grafted["examples"][:3]),
        )
    if (
        lexical
        and grafted is None
        and lexical["titles_matched"] < _ABSTRACT_NAMES
        and 2 * sum(t.kind in ATTRIBUTE_KINDS for t in tags) <= len(tags)
    ):
        logger.warning(
            "only %.0f%% of the catalog's titles name a tag: the tag names look abstract ('Upper "
            "Body Wear/Tops'). --graft a concrete public category taxonomy (the Shopify taxonomy, "
            "`tagindex convert shopify`) to lend them product-type names: on MWPD's GS1 tags R@1 "
            "0.18 -> 0.45 (docs/reference.md, adapt item 8)",
            100 * lexical["titles_matched"],
        )
    hubs = report["adapt"].get("hub_statistics") or {}
    if hubs.get("skipped"):
        logger.info("hubness correction and occurrence cap skipped: %s", hubs["skipped"])
    elif hubs.get("unlevelled_categories") and not hubs["hubness_weight"] and not hubs["occurrence_cap"]:
        logger.info(
            "hubness correction and occurrence cap off: categories without a fixed level (flat or ragged)"
        )
    elif hubs and all(t.parent is None and t.kind == "tag" for t in tags):
        # The loaders' default kind: nothing says whether these are keywords or exclusive classes.
        logger.info(
            "flat tags of no stated kind are adapted as keywords (hubness correction, occurrence "
            "cap); if they are mutually exclusive categories, give them kind 'category' (a kind "
            "column), which adapts them without both (docs/reference.md, adapt)"
        )
    last = rounds[-1]["agreement_with_previous"] if rounds else None
    logger.info(
        "adapted %d tags to %d products in %.1fs (%d self-training round(s), last agreement %s%s) -> %s",
        len(index),
        len(products),
        time.perf_counter() - start,
        len(rounds),
        "none" if last is None else f"{last:.4f}",
        f"; titles naming a tag: {lexical['titles_matched']:.0%}" if lexical else "",
        args.out,
    )
    return 0


COMMANDS = {
    "adapt": Command(
        "fit an index to an unlabelled catalog (hubness, hierarchy, self-training, title match)",
        configure,
        run,
    )
}
