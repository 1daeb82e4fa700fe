"""Service commands: ``tagindex serve`` (HTTP API and page) and ``feedback`` (export its feedback)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tagindex.cli.common import Command, add_option, logger


# ---- serve ------------------------------------------------------------------------------------------
def configure_serve(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex serve``; other settings come from ``TAGINDEX_*`` environment variables."""
    add_option(p, "--index", required=True, help="index directory; tags added over HTTP are saved here")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--feedback-db", help="SQLite feedback file (default: <index>.feedback.sqlite3 beside it)")
    add_option(p, "--reranker", help="reranker directory from `tagindex train-reranker` (rerank /v1/tag)")
    add_option(p, "--rerank-depth", help="candidates reranked by default (default: the reranker's)")
    add_option(p, "--calibration", help="calibration file from `tagindex calibrate` (assigned tags)")


def run_serve(args: argparse.Namespace) -> int:
    """Checks the artifacts, then serves the app with uvicorn until interrupted."""
    try:
        import uvicorn

        from tagindex.service.app import create_app
        from tagindex.service.settings import Settings
        from tagindex.service.stage import preflight
    except ImportError as exc:
        raise ValueError(f"serve needs the service extra: pip install 'tagindex[service]' ({exc})") from None
    from tagindex.store import read_manifest

    read_manifest(args.index, "tagindex")  # a clear error now rather than a traceback at start-up
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


# ---- feedback ---------------------------------------------------------------------------------------
def configure_feedback(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex feedback``."""
    p.add_argument(
        "--db",
        required=True,
        help="feedback SQLite file written by `tagindex serve`, or its postgresql:// URL",
    )
    add_option(p, "--out", required=True, help="products file to write (JSONL, tags = accepted or added)")


def run_feedback(args: argparse.Namespace) -> int:
    """Writes the products that received feedback, with their accepted or added tags."""
    from tagindex.io import write_jsonl
    from tagindex.service.feedback_pg import open_feedback_store

    if "://" not in args.db and not Path(args.db).is_file():
        raise ValueError(f"{args.db}: no such feedback database")
    store = open_feedback_store(args.db)
    try:
        n = write_jsonl(args.out, store.export_products())
    finally:
        store.close()
    logger.info("wrote %d products with feedback -> %s", n, args.out)
    return 0


COMMANDS = {
    "serve": Command(
        "HTTP API and merchandiser web page over an index (needs tagindex[service])",
        configure_serve,
        run_serve,
    ),
    "feedback": Command(
        "export merchandiser feedback from the service as a products file", configure_feedback, run_feedback
    ),
}
