"""Training and data-preparation commands: ``tagindex train``, ``transfer``, ``split`` and ``config``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from tagindex.cli.common import Command, add_option

if TYPE_CHECKING:
    from tagindex.train import TrainParams


# ---- train ------------------------------------------------------------------------------------------
def configure_train(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex train``."""
    add_option(p, "--products", required=True, help="labelled training products (with gold tags)")
    add_option(p, "--tags", required=True, help="tags file the products' tags refer to")
    add_option(p, "--out", required=True, help="model directory to write (replaced only on success)")
    p.add_argument("--base", help="model to start from (default: packaged MiniLM)")
    add_option(p, "--config", help="JSON training parameters (TrainParams fields; others keep defaults)")
    p.add_argument("--fast", action="store_true", help="small CI configuration (a sample, one epoch)")
    add_option(p, "--seed", help="random seed (default from the config)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default from the config)")
    add_option(p, "--on-error")


def _train_params(params: TrainParams, args: argparse.Namespace) -> TrainParams:
    """``params`` with the ``--config`` file's fields and ``--seed`` laid over them."""
    from tagindex.train import TrainParams

    if args.config:
        try:
            params = TrainParams.from_dict({**params.to_dict(), **json.loads(Path(args.config).read_text())})
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{args.config}: cannot read config: {exc}") from None
    if args.seed is not None:
        params.seed = args.seed
    return params


def run_train(args: argparse.Namespace) -> int:
    """Fine-tunes the bi-encoder and prints the best epoch's dev figures as JSON."""
    from tagindex.io import load_products, load_tags
    from tagindex.train import TrainParams, train

    params = _train_params(TrainParams.fast() if args.fast else TrainParams(), args)
    if args.epochs is not None:
        params.epochs = args.epochs
    tags = load_tags(args.tags, on_error=args.on_error)
    products = load_products(args.products, on_error=args.on_error)
    report = train(products, tags, args.out, base=args.base, params=params, show_progress=not args.quiet)
    best = report.epochs[report.best_epoch]
    print(
        json.dumps(
            {
                "out": args.out,
                "best_epoch": report.best_epoch,
                "dev": best,
                "seconds": round(report.seconds, 1),
            }
        )
    )
    return 0


# ---- transfer ---------------------------------------------------------------------------------------
def configure_transfer(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex transfer``."""
    from tagindex.transfer import DEFAULT_SOURCES, SOURCES

    add_option(p, "--out", required=True, help="model directory to write (usable wherever --model is)")
    p.add_argument(
        "--data",
        help="public data directory holding shopify-taxonomy/ and attribute-tags/ (sources mapping, "
        "attribute-tags)",
    )
    add_option(
        p, "--products", help="the unlabelled catalog (source breadcrumbs: its `breadcrumb` attribute)"
    )
    p.add_argument(
        "--sources",
        default=",".join(DEFAULT_SOURCES),
        help=f"comma list of {', '.join(SOURCES)} (default: {','.join(DEFAULT_SOURCES)})",
    )
    p.add_argument("--base", help="model to start from (default: packaged MiniLM)")
    add_option(p, "--config", help="JSON training parameters (TrainParams fields; others keep defaults)")
    add_option(p, "--seed", help="random seed (default from the config)")
    add_option(p, "--on-error")


def run_transfer(args: argparse.Namespace) -> int:
    """Fine-tunes the bi-encoder on the transfer sources and prints the kept epoch's dev figures."""
    from tagindex.io import load_products
    from tagindex.train import TrainParams, train
    from tagindex.transfer import transfer_corpus

    params = _train_params(TrainParams.transfer(), args)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if "breadcrumbs" in sources and not args.products:
        raise ValueError("source 'breadcrumbs' needs --products (the unlabelled catalog)")
    catalog = load_products(args.products, on_error=args.on_error) if args.products else []
    products, tags = transfer_corpus(sources, args.data, catalog)
    report = train(products, tags, args.out, base=args.base, params=params, show_progress=not args.quiet)
    print(
        json.dumps(
            {
                "out": args.out,
                "sources": sources,
                "n_products": len(products),
                "n_tags": len(tags),
                "best_epoch": report.best_epoch,
                "dev": report.epochs[report.best_epoch],
                "seconds": round(report.seconds, 1),
            }
        )
    )
    return 0


# ---- split ------------------------------------------------------------------------------------------
def configure_split(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex split``."""
    p.add_argument("kind", choices=["mwpd-zeroshot", "dev", "cross-dataset", "tag-similarity"])
    p.add_argument(
        "--data",
        required=True,
        help="mwpd-zeroshot: converted MWPD dir; dev: products file; cross-dataset: first converted "
        "attribute-tags dir; tag-similarity: shopify_to_google_dev.jsonl",
    )
    p.add_argument("--other", help="cross-dataset: the second converted attribute-tags dir")
    add_option(p, "--tags", help="tag-similarity: Google tags file from `tagindex convert google`")
    add_option(p, "--out", required=True, help="output directory")
    add_option(p, "--seed", default=0, help="random seed (default 0)")
    p.add_argument("--fraction", type=float, default=None, help="held-out share (mwpd-zeroshot 0.2, dev 0.1)")
    p.add_argument("--min-products", type=int, default=3, help="mwpd-zeroshot: training products a tag needs")
    p.add_argument("--level", type=int, default=3, help="mwpd-zeroshot: tag level to hold out (default 3)")


def run_split(args: argparse.Namespace) -> int:
    """Writes the split and prints its kind, parameters and counts."""
    from tagindex import splits

    if args.kind == "mwpd-zeroshot":
        manifest = splits.mwpd_zeroshot(
            args.data, args.out, args.seed, args.fraction or 0.2, args.min_products, args.level
        )
    elif args.kind == "dev":
        manifest = splits.dev_split(args.data, args.out, args.seed, args.fraction or 0.1)
    elif args.kind == "cross-dataset":
        if not args.other:
            raise ValueError("cross-dataset needs --other (the second converted dataset)")
        manifest = splits.cross_dataset(args.data, args.other, args.out)
    else:
        if not args.tags:
            raise ValueError("tag-similarity needs --tags (Google tags from `tagindex convert google`)")
        manifest = splits.tag_similarity(args.data, args.tags, args.out)
    print(
        json.dumps(
            {"kind": manifest["kind"], "params": manifest["params"], "counts": manifest["counts"]}, indent=2
        )
    )
    return 0


# ---- config -----------------------------------------------------------------------------------------
def configure_config(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex config``."""
    p.add_argument(
        "--adapt",
        action="store_true",
        help="print the `adapt --adapt-config` template (tagindex.adapt.AdaptParams) instead",
    )


def run_config(args: argparse.Namespace) -> int:
    """Prints the default index (or, with ``--adapt``, adaptation) parameters as a JSON template."""
    if args.adapt:
        from tagindex.adapt import AdaptParams

        print(json.dumps(AdaptParams().to_dict(), indent=2))
        return 0
    from tagindex.config import TagIndexParams

    print(json.dumps(TagIndexParams().to_dict(), indent=2))
    return 0


COMMANDS = {
    "train": Command(
        "fine-tune the bi-encoder contrastively on labelled products; --model loads it",
        configure_train,
        run_train,
    ),
    "transfer": Command(
        "fine-tune the bi-encoder on other public labelled sources (no label of your vocabulary) as "
        "a starting point for `adapt --model`",
        configure_transfer,
        run_transfer,
    ),
    "split": Command(
        "write a seeded evaluation split (mwpd-zeroshot, dev, cross-dataset, tag-similarity)",
        configure_split,
        run_split,
    ),
    "config": Command(
        "print a template JSON config for --config (--adapt: for adapt --adapt-config)",
        configure_config,
        run_config,
    ),
}
