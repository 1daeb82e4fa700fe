"""``tagindex index``: encode a tag vocabulary into a saved, searchable index directory."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from tagindex.cli.common import (
    Command,
    add_ensemble_options,
    add_option,
    encoder_backends,
    graft_exclusions,
    load_params,
    logger,
)


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
    add_option(p, "--translate")
    add_option(p, "--translate-glossary")
    add_ensemble_options(p)
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
    match = p.add_argument_group("product-type match without a catalog (see `tagindex adapt`)")
    match.add_argument(
        "--title-match",
        type=float,
        default=None,
        metavar="WEIGHT",
        help="add the title/tag-name product-type match to the cosine, WEIGHT x the product's score "
        "spread (2.0 is adapt's default); nothing fitted, no catalog needed",
    )
    add_option(match, "--graft")  # needs --title-match: checked with the other options
    add_option(match, "--graft-exclude")
    p.add_argument("--graph", help="embedding directory from `tagindex graph embed`: fuse graph vectors")
    p.add_argument(
        "--graph-products",
        help="the graph's labelled products (neighbour pool; default: the file the graph was built from)",
    )
    p.add_argument("--graph-weight", type=float, default=None, help="share of the score from the graph")
    codes = p.add_argument_group("exemplar storage (with --products)")
    codes.add_argument(
        "--exemplar-codes",
        choices=["float32", "ivf-sq8", "ivf-pq", "ivf-opq"],
        default=None,
        help="how exemplar vectors are stored: float32 (default: exact neighbour search), or FAISS IVF "
        "codes, for very large exemplar sets: ivf-sq8 (1 byte a dimension), ivf-pq / ivf-opq "
        "(--exemplar-pq-m bytes); tag prototypes stay exact, neighbour votes become approximate",
    )
    codes.add_argument(
        "--exemplar-pq-m", type=int, default=None, help="ivf-pq/ivf-opq: bytes a vector (divides the dim; 16)"
    )
    codes.add_argument(
        "--exemplar-nlist", type=int, default=None, help="IVF cells (default: ~4 sqrt(exemplars))"
    )
    codes.add_argument(
        "--exemplar-nprobe", type=int, default=None, help="cells searched per product (default 32)"
    )
    codes.add_argument(
        "--exemplar-train-size",
        type=int,
        default=None,
        help="exemplars sampled to train the cells and codebooks (default 100000)",
    )
    ray = p.add_argument_group("distributed encoding of --products")
    ray.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default): this process encodes the labelled products; ray: a pool of Ray actors "
        "does (needs tagindex[scale])",
    )
    ray.add_argument("--num-workers", type=int, help="--engine ray: actors, one CPU each (default: all CPUs)")
    ray.add_argument("--ray-address", help="--engine ray: join this Ray cluster (default: start a local Ray)")


def _config_names_backend(config: str | None) -> bool:
    """Whether the ``--config`` file chooses the encoder backend itself (then it is kept)."""
    if not config:
        return False
    raw = json.loads(Path(config).read_text())  # load_params has read it already, so it parses
    return isinstance(raw.get("encoder"), dict) and "backend" in raw["encoder"]


def _compressed_params(args: argparse.Namespace, dim: int) -> Any:
    """The :class:`~tagindex.compressed_exemplars.CompressedParams` asked for (None: float32 vectors),
    checked against the vector dimension before anything is encoded."""
    from tagindex.compressed_exemplars import FLOAT32, CompressedExemplarIndex, CompressedParams
    from tagindex.errors import InputError

    tuning = {
        "--exemplar-pq-m": args.exemplar_pq_m,
        "--exemplar-nlist": args.exemplar_nlist,
        "--exemplar-nprobe": args.exemplar_nprobe,
        "--exemplar-train-size": args.exemplar_train_size,
    }
    given = [flag for flag, value in tuning.items() if value is not None]
    if args.exemplar_codes in (None, FLOAT32):
        if given:
            raise InputError(f"{given[0]}: only with --exemplar-codes ivf-sq8, ivf-pq or ivf-opq")
        return None
    if not args.products:
        raise InputError(f"--exemplar-codes {args.exemplar_codes}: needs --products (the exemplars)")
    for flag, value in tuning.items():
        if value is not None and value < 1:
            raise InputError(f"{flag} {value}: must be at least 1")
    params = CompressedParams(kind=args.exemplar_codes)
    if args.exemplar_pq_m is not None:
        params.pq_m = args.exemplar_pq_m
    if args.exemplar_nlist is not None:
        params.nlist = args.exemplar_nlist
    if args.exemplar_nprobe is not None:
        params.nprobe = args.exemplar_nprobe
    if args.exemplar_train_size is not None:
        params.train_size = args.exemplar_train_size
    try:
        CompressedExemplarIndex(dim, params)
    except ValueError as exc:
        raise InputError(f"--exemplar-pq-m: {exc}") from None
    return params


def _encode_on_ray(index: Any, products: list[Any], args: argparse.Namespace) -> Any:
    """The products' vectors, encoded by Ray actors that each load this index's tags-only save."""
    import tempfile

    import numpy as np

    from tagindex.engines.ray_engine import encode_with_ray

    chunk = 4096
    out_parent = Path(args.out).resolve().parent
    out_parent.mkdir(parents=True, exist_ok=True)
    model = index.params.encoder.model
    with tempfile.TemporaryDirectory(prefix=".index-ray-", dir=out_parent) as tmp:
        index.save(Path(tmp) / "tags")
        index.params.encoder.model = model  # save() points it into the temporary copy
        start = time.perf_counter()
        parts = list(
            encode_with_ray(
                Path(tmp) / "tags",
                (products[i : i + chunk] for i in range(0, len(products), chunk)),
                num_workers=args.num_workers,
                address=args.ray_address,
            )
        )
    seconds = time.perf_counter() - start
    logger.info(
        "encoded %d labelled products on Ray in %.1fs (%.0f/s)",
        len(products),
        seconds,
        len(products) / max(seconds, 1e-9),
    )
    return np.concatenate(parts) if parts else np.zeros((0, index.vector_dim), np.float32)


def _check_title_match(args: argparse.Namespace) -> None:
    """The title match ranks tags by adjusted cosines: not with exemplar or graph scoring."""
    from tagindex.errors import InputError

    if args.graft and args.title_match is None:
        raise InputError("--graft: lends names to the title match; give --title-match WEIGHT")
    if args.title_match is None:
        return
    if not (math.isfinite(args.title_match) and args.title_match > 0):
        raise InputError(f"--title-match {args.title_match}: must be a number above 0")
    for flag, value in (("--products", args.products), ("--graph", args.graph)):
        if value:
            raise InputError(f"--title-match: not with {flag} (that scoring does not read titles)")


def run(args: argparse.Namespace) -> int:
    """Builds the index (plus exemplars and graph fusion when asked) and saves it to ``--out``."""
    from tagindex.errors import InputError
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    _check_title_match(args)
    params = load_params(args)  # option errors before a large tags file is read
    tags = load_tags(args.tags, on_error=args.on_error)
    graft = load_tags(args.graft, on_error=args.on_error) if args.graft else None
    exclude = graft_exclusions(args, graft, tags)
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
    if args.engine == "ray" and not args.products:
        raise InputError("--engine ray: encodes the labelled products; give them with --products")
    if args.engine == "ray" and args.cache:
        raise InputError("--cache: not used with --engine ray (the actors encode every product)")
    index = TagIndex.build(tags, params, encoder=encoder, show_progress=not args.quiet, fusion=fusion)
    codes = _compressed_params(args, index.vector_dim)
    if args.products:
        from tagindex.io import load_products

        exemplars = load_products(args.products, on_error=args.on_error)
        if codes is not None:
            from tagindex.compressed_exemplars import check_trainable

            try:
                check_trainable(len(exemplars), codes)
            except ValueError as exc:
                raise InputError(f"{args.products}: {exc}") from None
        vectors = _encode_on_ray(index, exemplars, args) if args.engine == "ray" else None
        index.add_exemplars(exemplars, vectors, cache_dir=args.cache, show_progress=not args.quiet)
        logger.info("stored %d labelled products as exemplars", index.n_exemplars)
        if codes is not None:
            index.compress_exemplars(codes)
    if args.title_match is not None:
        from tagindex.adapt import AdaptParams, title_match_index

        report = title_match_index(index, AdaptParams(lexical_weight=args.title_match), graft, exclude)
        if "graft" in report:
            logger.info(
                "graft: %d of %d outside categories lent to %d tags",
                report["graft"]["lent"],
                report["graft"]["source_categories"],
                report["graft"]["tags_receiving"],
            )
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
