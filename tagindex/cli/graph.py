"""``tagindex graph build|embed``: the options and handlers live in :mod:`tagindex.graph.cli`.

That module imports only what parsing needs; the graph stack (torch, torch_geometric) loads when an
action runs.
"""

from __future__ import annotations

import argparse

from tagindex.cli.common import Command


def configure(p: argparse.ArgumentParser) -> None:
    """Adds the ``build`` and ``embed`` actions."""
    from tagindex.graph.cli import configure as configure_graph

    configure_graph(p)


def run(args: argparse.Namespace) -> int:
    """Runs the chosen graph action."""
    from tagindex.graph.cli import run as run_graph

    return run_graph(args)


COMMANDS = {
    "graph": Command(
        "build the product–attribute–tag graph (build) and train node embeddings (embed)", configure, run
    ),
}
