"""``tagindex index``: encode a tag vocabulary into a saved, searchable index directory."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tagindex.cli.common import Command, add_option, encoder_backends, load_params, logger


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex index``."""
    add_option(p, "--tags", required=True)
    add_option(p, "--out", required=True, help="index directory to write (replaced only on success)")
    add_option(p, "--model")
    p.add_argument(
        "--index", choices=["exact", "hnsw", "ivf"], default=None, help="FAISS index type (default exact)"
    )
    add_option(
        p,
        "--products",
        help="labelled products (with gold tags) stored as exemplars: tags with examples are then "
        "matched through their nearest labelled products as well as their text",
    )
    add_option(p, "--cache", help="directory caching product vectors (exemplars, graph neighbour pool)")
    add_option(p, "--config")
    add_option(p, "--description-chars")
    p.add_argument("--batch-size", type=int, default=None, help="encoder batch size")
    p.add_argument(
        "--backend",
        default=None,
        help="encoder backend: "
        + ", ".join(encoder_backends())
        + " (default: onnx-int8 when the onnx extra is installed and the model mean-pools, "
        "else sentence-transformers, which training always uses)",
    )
    p.add_argument(
        "--vector-format",
        choices=["float32", "float16", "int8"],
        default=None,
        help="how FAISS stores tag vectors (default float32)",
    )
    add_option(p, "--on-error")
    p.add_argument("--graph", help="embedding directory from `tagindex graph embed`: fuse graph vectors")
    p.add_argument(
        "--graph-products",
        help="the graph's labelled products (neighbour pool; default: the file the graph was built from)",
    )
    p.add_argument("--graph-weight", type=float, default=None, help="share of the score from the graph")


def _config_names_backend(config: str | None) -> bool:
    """Whether the ``--config`` file chooses the encoder backend itself (then it is kept)."""
    if not config:
        return False
    raw = json.loads(Path(config).read_text())  # load_params has read it already, so it parses
    return isinstance(raw.get("encoder"), dict) and "backend" in raw["encoder"]


def run(args: argparse.Namespace) -> int:
    """Builds the index (plus exemplars and graph fusion when asked) and saves it to ``--out``."""
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    tags = load_tags(args.tags, on_error=args.on_error)
    params = load_params(args)
    if not args.backend and not _config_names_backend(args.config):
        from tagindex.backends import preferred_index_backend

        params.encoder.backend = preferred_index_backend(params.encoder.model)
    start = time.perf_counter()
    encoder = fusion = None
    if args.graph:
        from tagindex.encoders import load_encoder
        from tagindex.graph.fusion import fusion_from_cli

        encoder = load_encoder(params.encoder)
        fusion = fusion_from_cli(args, params, encoder)
    index = TagIndex.build(tags, params, encoder=encoder, show_progress=not args.quiet, fusion=fusion)
    if args.products:
        from tagindex.io import load_products

        exemplars = load_products(args.products, on_error=args.on_error)
        index.add_exemplars(exemplars, cache_dir=args.cache, show_progress=not args.quiet)
        logger.info("stored %d labelled products as exemplars", index.n_exemplars)
    index.save(args.out)
    logger.info(
        "indexed %d tags (%s, dim %d) in %.1fs -> %s",
        len(index),
        params.index.kind,
        index.encoder.dim,
        time.perf_counter() - start,
        args.out,
    )
    return 0


COMMANDS = {
    "index": Command("encode a tag vocabulary and save a searchable index directory", configure, run),
}
