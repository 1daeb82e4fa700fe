"""``tagindex graph build|embed``: options and handlers (registered by :mod:`tagindex.cli.graph`).

Parsing imports nothing heavy; the graph stack (pandas, networkx, torch, torch_geometric) loads in
:func:`run`, so ``tagindex --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json

from tagindex.graph import METHODS


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="graph_command", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="build the product–attribute–tag graph and save it as a directory")
    b.add_argument("--products", required=True, help="labelled products (training split) file")
    b.add_argument("--tags", required=True, help="tags file (with parents)")
    b.add_argument("--shopify", help="Shopify product-taxonomy checkout: category–attribute links")
    b.add_argument("--out", required=True, help="graph directory to write")
    b.add_argument("--keyword-weight", type=float, default=None, help="weight of breadcrumb keyword edges")
    b.add_argument("--min-cooccurrence", type=int, default=None, help="products a tag pair must share")
    e = sub.add_parser("embed", help="train node embeddings (node2vec or GraphSAGE) for a saved graph")
    e.add_argument("--graph", required=True, help="graph directory from `tagindex graph build`")
    e.add_argument("--method", choices=list(METHODS), default="node2vec")
    e.add_argument("--out", required=True, help="embedding directory to write")
    e.add_argument("--dim", type=int, default=None, help="vector size (default 64)")
    e.add_argument("--epochs", type=int, default=None, help="node2vec epochs")
    e.add_argument("--steps", type=int, default=None, help="GraphSAGE training steps")
    e.add_argument("--p", type=float, default=None, help="node2vec return parameter")
    e.add_argument("--q", type=float, default=None, help="node2vec in-out parameter")
    e.add_argument("--walks-per-node", type=int, default=None)
    e.add_argument("--walk-length", type=int, default=None)
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--threads", type=int, default=None, help="torch threads while training")


def run(args: argparse.Namespace) -> int:
    if args.graph_command == "build":
        from tagindex.graph.build import GraphParams, build_from_files, format_counts

        params = GraphParams()
        if args.keyword_weight is not None:
            params.keyword_weight = args.keyword_weight
        if args.min_cooccurrence is not None:
            params.min_cooccurrence = args.min_cooccurrence
        manifest = build_from_files(args.products, args.tags, args.out, args.shopify, params)
        print(format_counts(manifest["counts"]))
        print(f"built in {manifest['build_seconds']:.1f}s -> {args.out}")
        return 0
    from tagindex.graph.embed import EmbedParams, embed_graph

    params_e = EmbedParams(method=args.method)
    for name, field in [
        ("dim", "dim"),
        ("epochs", "epochs"),
        ("steps", "sage_steps"),
        ("p", "p"),
        ("q", "q"),
        ("walks_per_node", "walks_per_node"),
        ("walk_length", "walk_length"),
        ("seed", "seed"),
        ("threads", "threads"),
    ]:
        if getattr(args, name) is not None:
            setattr(params_e, field, getattr(args, name))
    if params_e.context_size > params_e.walk_length:
        params_e.context_size = params_e.walk_length
    manifest = embed_graph(args.graph, args.out, params_e)
    summary = {k: manifest[k] for k in ("n_nodes", "dim", "train_seconds", "peak_rss_mb")}
    print(json.dumps({"method": args.method, **summary, "final_loss": manifest["loss_history"][-1]}))
    return 0
