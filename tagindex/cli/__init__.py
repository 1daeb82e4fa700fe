"""The ``tagindex`` command line. Only this package configures logging.

Command names, options and the run format (one JSON line per product:
``{"id": ..., "tags": [{"tag": ..., "score": ...}, ...]}``, best first) are a stable contract.

Layout: one module per command group (:mod:`~tagindex.cli.index`, :mod:`~tagindex.cli.tagging`,
:mod:`~tagindex.cli.vocab`, :mod:`~tagindex.cli.train`, :mod:`~tagindex.cli.rerank`,
:mod:`~tagindex.cli.explain`, :mod:`~tagindex.cli.graph`, :mod:`~tagindex.cli.serve`); what they
share (options defined once, parameter loading, error mapping) is in :mod:`tagindex.cli.common`.

Adding a command is one module plus one line in :data:`REGISTRY`::

    # tagindex/cli/adapt.py
    from tagindex.cli.common import Command, add_option

    def configure(p: argparse.ArgumentParser) -> None:
        add_option(p, "--index", required=True)       # shared options: same flag, type, default
        p.add_argument("--rounds", type=int, default=3)  # options only this command has

    def run(args: argparse.Namespace) -> int:
        from tagindex.index import TagIndex            # heavy imports inside run(), never at the top
        ...
        return 0

    COMMANDS = {"adapt": Command("one-line help", configure, run)}

    # here, in REGISTRY:
    "adapt": "tagindex.cli.adapt",

A command module imports only the standard library and :mod:`tagindex.cli.common` at module level, so
``tagindex --help`` stays under a second. ``run`` raises :class:`tagindex.errors.TagindexError` (or
``ValueError``) for anything the user can fix; the CLI prints ``tagindex CMD: error: MESSAGE`` on one
line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from tagindex.cli.common import Command, add_global_options, configure_output, run_command

# Command name -> module defining it (in its ``COMMANDS`` dict). The order is the order of ``--help``.
REGISTRY: dict[str, str] = {
    "index": "tagindex.cli.index",
    "adapt": "tagindex.cli.adapt",
    "tag": "tagindex.cli.tagging",
    "similar": "tagindex.cli.vocab",
    "convert": "tagindex.cli.vocab",
    "train": "tagindex.cli.train",
    "transfer": "tagindex.cli.train",
    "update": "tagindex.cli.vocab",
    "evaluate": "tagindex.cli.tagging",
    "optimize": "tagindex.cli.optimize",
    "split": "tagindex.cli.train",
    "show": "tagindex.cli.tagging",
    "config": "tagindex.cli.train",
    "graph": "tagindex.cli.graph",
    "serve": "tagindex.cli.serve",
    "feedback": "tagindex.cli.serve",
    "train-reranker": "tagindex.cli.rerank",
    "calibrate": "tagindex.cli.rerank",
    "explain": "tagindex.cli.explain",
    "learn": "tagindex.cli.learn",
    "review-queue": "tagindex.cli.learn",
    "retrain": "tagindex.cli.learn",
    "distill": "tagindex.cli.distill",
}


def get_command(name: str) -> Command:
    """The :class:`Command` registered as ``name``."""
    command: Command = importlib.import_module(REGISTRY[name]).COMMANDS[name]
    return command


def build_parser() -> argparse.ArgumentParser:
    """The full parser: global options and one sub-parser per registered command."""
    parser = argparse.ArgumentParser(
        prog="tagindex", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in REGISTRY:
        command = get_command(name)
        sp = sub.add_parser(name, help=command.help, description=command.help)
        add_global_options(sp, sub=True)
        command.configure(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tagindex`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_output(args)
    return run_command(args.command, get_command(args.command), args)
