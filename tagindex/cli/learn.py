"""Learning commands: ``tagindex learn``, ``review-queue`` and ``retrain``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tagindex.cli.common import Command, add_option, logger


def _rejected(path: str) -> dict[str, list[str]]:
    """The optional ``rejected`` list of each row of a products file (id -> tag ids), checked."""
    from tagindex.errors import InputError
    from tagindex.io import read_records

    out: dict[str, list[str]] = {}
    for line, row in read_records(path):
        if isinstance(row, str) or "rejected" not in row or row["rejected"] in (None, ""):
            continue
        value = row["rejected"]
        if isinstance(value, str):  # CSV: a JSON list or a|b
            value = json.loads(value) if value.startswith("[") else value.split("|")
        if not isinstance(value, list) or not all(isinstance(t, str | int) for t in value):
            raise InputError(f"{path}:{line}: 'rejected' must be a list of tag ids")
        out[str(row.get("id"))] = [str(t) for t in value]
    return out


# ---- learn ------------------------------------------------------------------------------------------
def configure_learn(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex learn``."""
    add_option(p, "--index", required=True, help="index directory, updated in place (atomically)")
    add_option(
        p,
        "--products",
        help="judged products: `tags` = accepted tags, optional `rejected` = tags judged wrong",
    )
    p.add_argument("--undo", nargs="+", type=int, default=[], metavar="ID", help="delete judgements by id")
    add_option(p, "--on-error")


def run_learn(args: argparse.Namespace) -> int:
    """Applies judgements to a saved index (no re-training) and saves it in place."""
    from tagindex.errors import InputError
    from tagindex.index import TagIndex
    from tagindex.io import load_products
    from tagindex.learn import learn, save_learned, undo

    if not args.products and not args.undo:
        raise InputError("give judged products (--products) and/or judgement ids to delete (--undo)")
    index = TagIndex.load(args.index)
    made = []
    if args.products:
        products = load_products(args.products, on_error=args.on_error)
        rejected = _rejected(args.products)
        if not any(p.tags for p in products) and not any(rejected.values()):
            raise InputError(f"{args.products}: no product has accepted `tags` or a `rejected` list")
        made = learn(index, products, rejected=rejected)
    removed = undo(index, args.undo) if args.undo else []
    unknown = sorted(set(args.undo) - {j.id for j in removed})
    if unknown:
        raise InputError(f"no judgement(s) with id {unknown[:10]} in {args.index}; nothing was changed")
    save_learned(index, args.index)
    state = index.learned
    assert state is not None
    logger.info(
        "learned %d judgement(s) (ids %s..%s)%s; index version %d, %d judgement(s) in all -> %s",
        len(made),
        made[0].id if made else "-",
        made[-1].id if made else "-",
        f", undid {len(removed)}" if removed else "",
        state.version,
        len(state.judgements),
        args.index,
    )
    return 0


# ---- review-queue -----------------------------------------------------------------------------------
def configure_queue(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex review-queue``."""
    add_option(p, "--index", required=True)
    add_option(p, "--products", required=True, help="the pool of products to choose from")
    p.add_argument("--n", type=int, default=50, help="queue length (default 50)")
    add_option(p, "--out", required=True, help="queue file (JSON lines: id, tags, reason)")
    add_option(p, "--seed", default=13, help="random seed (default 13)")
    add_option(p, "--cache")
    add_option(p, "--on-error")


def run_queue(args: argparse.Namespace) -> int:
    """Writes the products whose judgement teaches the index most, one JSON line each, with why."""
    from tagindex.active import QueueParams, review_queue
    from tagindex.errors import InputError
    from tagindex.index import TagIndex
    from tagindex.io import load_products, write_jsonl

    if args.n < 1:
        raise InputError("--n must be at least 1")
    index = TagIndex.load(args.index)
    pool = load_products(args.products, on_error=args.on_error)
    vectors = index.encode_products(pool, cache_dir=args.cache)
    queue = review_queue(index, pool, args.n, vectors=vectors, params=QueueParams(seed=args.seed))
    n = write_jsonl(args.out, [q.to_dict() for q in queue])
    kinds: dict[str, int] = {}
    for q in queue:
        kinds[q.kind] = kinds.get(q.kind, 0) + 1
    logger.info("queued %d of %d products (%s) -> %s", n, len(pool), kinds, args.out)
    return 0


# ---- retrain ----------------------------------------------------------------------------------------
def configure_retrain(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex retrain``."""
    add_option(p, "--index", required=True, help="the current index (not modified)")
    p.add_argument("--feedback", help="feedback SQLite file from `tagindex serve` (judged products)")
    add_option(p, "--products", help="labelled products (gold `tags`): training data and exemplars")
    add_option(p, "--out", required=True, help="directory of the new index version")
    add_option(p, "--config", help="TrainParams as JSON (see `tagindex train --help`)")
    p.add_argument("--fast", action="store_true", help="the CI-sized training configuration")
    p.add_argument("--holdout", type=float, default=0.2, help="share of judged products held out (0.2)")
    add_option(p, "--seed", default=13, help="seed of the held-out slice (default 13)")
    p.add_argument(
        "--pool",
        help="unjudged catalog products: those the current index labels confidently are added to "
        "the training data (self-training)",
    )
    p.add_argument(
        "--pseudo-min-probability",
        type=float,
        help="probability a pool product's best tag needs under the classifier fitted on the "
        "exemplars (default 0.5)",
    )


def run_retrain(args: argparse.Namespace) -> int:
    """Fine-tunes on every judgement + labelled products and writes a new index version."""
    from tagindex.errors import InputError
    from tagindex.io import load_products
    from tagindex.retrain import PseudoLabelParams, retrain
    from tagindex.train import TrainParams

    rows: list[dict[str, Any]] = []
    if args.feedback:
        if not Path(args.feedback).is_file():
            raise InputError(f"{args.feedback}: no such feedback database")
        from tagindex.service.feedback import FeedbackStore

        store = FeedbackStore(args.feedback)
        try:
            rows = store.export_products()
        finally:
            store.close()
    labelled = load_products(args.products) if args.products else []
    if args.fast:
        params = TrainParams.fast()
    elif args.config:
        try:
            params = TrainParams.from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise InputError(f"{args.config}: cannot read training config: {exc}") from None
    else:
        params = None  # retrain() picks by the number of judged + labelled products
    if not 0 <= args.holdout < 1:
        raise InputError("--holdout must be in [0, 1)")
    pseudo = PseudoLabelParams()
    if args.pseudo_min_probability is not None:
        pseudo.min_probability = args.pseudo_min_probability
    if not 0 <= pseudo.min_probability <= 1:
        raise InputError("--pseudo-min-probability must be in [0, 1]")
    pool = load_products(args.pool) if args.pool else []
    report = retrain(
        args.index, rows, args.out, labelled, params, args.holdout, args.seed, pool=pool, pseudo=pseudo
    )
    logger.info(
        "new index version -> %s; held-out judgements: recall@1 %s (old) -> %s (new)",
        args.out,
        report["held_out_metrics"]["old"].get("recall@1"),
        report["held_out_metrics"]["new"].get("recall@1"),
    )
    return 0


COMMANDS = {
    "learn": Command(
        "apply merchandiser judgements to an index at once (no re-training), in place",
        configure_learn,
        run_learn,
    ),
    "review-queue": Command(
        "choose the products whose judgement teaches the index most (active learning)",
        configure_queue,
        run_queue,
    ),
    "retrain": Command(
        "fine-tune on all judgements and labelled products; write a new index version",
        configure_retrain,
        run_retrain,
    ),
}
