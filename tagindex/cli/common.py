"""What every command shares: the :class:`Command` record, options defined once, parameter loading,
logging set-up and the mapping of user errors to one line and exit status 2.

Nothing here imports numpy, torch, faiss or pandas: the parser must build in well under a second.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("tagindex")

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One sub-command: its one-line help, the function adding its options, the function running it.

    ``run`` returns the exit status; it raises :class:`tagindex.errors.TagindexError` (or ``ValueError``)
    for anything the user can fix, which :func:`run_command` turns into one line and exit status 2.
    """

    help: str
    configure: Configure
    run: Handler


# Options several commands take, defined once. A command may override the help text (what the
# option means *there*) or ``required``; the flag, type, choices and default stay the same everywhere.
_SHARED: dict[str, dict[str, Any]] = {
    "--index": {"help": "index directory"},
    "--tags": {
        "help": "tags file: CSV, JSONL or Parquet (id optional: derived from the name), .txt with one "
        "name per line, or a SKOS vocabulary (.ttl, .rdf, .skos)"
    },
    "--products": {"help": "products file (CSV, JSONL or Parquet)"},
    "--graft": {
        "help": "tags file of an outside category taxonomy (e.g. Shopify's, from `tagindex convert shopify "
        "--include categories`) whose concrete names are lent to the tags they name and lie near "
        "(`index` needs --title-match with it)"
    },
    "--graft-exclude": {
        "default": None,
        "metavar": "FILE",
        "help": "with --graft: (outside category id, tag id) pairs never lent, tab-separated, one a "
        "line; lines of `tagindex show --index IDX --lent` can be kept as they are",
    },
    "--id-col": {"default": None, "help": "products: the column holding the id (default 'id')"},
    "--title-col": {"default": None, "help": "products: the column holding the title (default 'title')"},
    "--description-col": {
        "default": None,
        "help": "products: the column holding the description, HTML allowed (default 'description'); "
        "a Shopify export: --id-col Handle --title-col Title --description-col 'Body (HTML)'",
    },
    "--out": {"help": "file or directory to write"},
    "--model": {"help": "sentence-transformers model directory (default: packaged MiniLM)"},
    "--config": {"help": "JSON parameters (see `tagindex config`)"},
    "--translate": {
        "default": None,
        "metavar": "LANG",
        "help": "render text in LANG (zh-CN) in English before an English encoder reads it: CC-CEDICT "
        "senses chosen to fit the index's English tag names (needs the zh extra; stored in the index)",
    },
    "--translate-glossary": {
        "default": None,
        "metavar": "TAXONOMY",
        "help": "with --translate: a Shopify product-taxonomy checkout whose attribute and value "
        "localisations join the dictionary (copied into the index)",
    },
    "--ensemble-backend": {
        "default": None,
        "metavar": "NAME",
        "help": "a second encoder backend (e.g. use-multilingual) that reads the original, untranslated "
        "text: its unit vector is appended to the first encoder's and one FAISS index ranks by "
        "(1 - W) * first cosine + W * second cosine (stored in the index; use-multilingual needs the "
        "fast-encoders extra)",
    },
    "--ensemble-weight": {
        "type": float,
        "default": None,
        "metavar": "W",
        "help": "with --ensemble-backend: the second encoder's share W of the score, strictly between "
        "0 and 1 (default 0.5)",
    },
    "--cache": {"help": "directory caching product vectors between runs"},
    "--description-chars": {
        "type": int,
        "default": None,
        "help": "characters of product description the encoder reads",
    },
    "--seed": {"type": int, "default": None, "help": "random seed"},
    "--on-error": {
        "choices": ["raise", "skip"],
        "default": "raise",
        "help": "malformed rows: fail (default) or skip them with a count",
    },
    "--reranker": {"help": "reranker directory from `tagindex train-reranker`"},
    "--calibration": {"help": "calibration file from `tagindex calibrate`"},
    "--rerank-depth": {"type": int, "default": None, "help": "candidates the reranker rescores"},
    "--language": {
        "default": None,
        "help": "show tag names in this language (e.g. zh-CN) where the tag has one (see convert --locale)",
    },
    "--top-k": {"type": int, "default": 10, "help": "tags per product (default 10)"},
    "--per-kind": {
        "default": None,
        "metavar": "SPEC",
        "help": "per-kind limits and thresholds, KIND=LIMIT[@THRESHOLD] or KIND=@THRESHOLD joined by "
        "commas (e.g. category=1,keyword=5@0.4); categories then form one path and attribute values "
        "one per attribute (default: the index's optimized settings, else none)",
    },
    "--kind-norm": {
        "default": None,
        "metavar": "KINDS",
        "help": "comma list of kinds whose scores are z-normalised per tag over the products tagged "
        "together (hubness correction; their --per-kind threshold then reads z-scores)",
    },
    "--category-title-weight": {
        "type": float,
        "default": None,
        "metavar": "W",
        "help": "choose categories by W * similarity of the title + (1 - W) * of the full text (0-1)",
    },
    "--hierarchy": {
        "choices": ["close", "prune", "none"],
        "default": "close",
        "help": "assigned tags: add ancestors (close, default), drop orphans (prune) or neither (none)",
    },
}


def add_option(p: argparse._ActionsContainer, flag: str, **overrides: Any) -> argparse.Action:
    """Adds the shared option ``flag`` to ``p`` (a parser or an argument group); ``overrides`` replace
    its help, default or ``required``."""
    return p.add_argument(flag, **{**_SHARED[flag], **overrides})


def add_global_options(p: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """``-q``/``-v``: on the main parser, and again (hidden, no default) after any command name;
    ``--version`` on the main parser."""
    if not sub:
        from tagindex.version import __version__

        p.add_argument("--version", action="version", version=f"tagindex {__version__}")
    extra: dict[str, Any] = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS} if sub else {}
    p.add_argument(
        "-q", "--quiet", action="store_true", **{"help": "no progress bars, warnings only", **extra}
    )
    p.add_argument("-v", "--verbose", action="store_true", **{"help": "debug logging", **extra})


def add_ensemble_options(p: argparse.ArgumentParser) -> None:
    """``--ensemble-backend`` (its help listing the registered backends) and ``--ensemble-weight``."""
    backend_help = _SHARED["--ensemble-backend"]["help"] + "; one of: " + ", ".join(encoder_backends())
    add_option(p, "--ensemble-backend", help=backend_help)
    add_option(p, "--ensemble-weight")


def encoder_backends() -> list[str]:
    """Encoder backend names from the encoder registry, default first (imports no backend)."""
    from tagindex.registry import ENCODERS

    return ENCODERS.names()


def load_params(args: argparse.Namespace) -> Any:
    """Index parameters: the ``--config`` file (or defaults) with the command line's overrides."""
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
    if getattr(args, "translate", None):
        from tagindex.translate import check_language

        params.encoder.translate = check_language(args.translate)
    if getattr(args, "translate_glossary", None):
        if not params.encoder.translate:
            raise ValueError("--translate-glossary: give the language with --translate (e.g. zh-CN)")
        params.encoder.translate_glossary = args.translate_glossary
    _ensemble_params(args, params)
    return params


def _ensemble_params(args: argparse.Namespace, params: Any) -> None:
    """Sets ``--ensemble-backend`` / ``--ensemble-weight`` on ``params.encoder`` and checks the result
    (flags or ``--config``) before any file or model is read.

    Raises:
        InputError: An unknown backend, a weight outside (0, 1), or a weight without a backend.
    """
    from tagindex.errors import InputError
    from tagindex.registry import ENCODERS

    encoder = params.encoder
    backend, weight = getattr(args, "ensemble_backend", None), getattr(args, "ensemble_weight", None)
    config = getattr(args, "config", None)
    source = "--ensemble-backend" if backend else f"{config}: encoder.ensemble_backend"
    if backend:
        encoder.ensemble_backend = backend
    if encoder.ensemble_backend and encoder.ensemble_backend not in ENCODERS:
        raise InputError(
            f"{source}: unknown encoder backend '{encoder.ensemble_backend}' "
            f"(known: {', '.join(ENCODERS.names())})"
        )
    if weight is not None:
        if not encoder.ensemble_backend:
            raise InputError(
                "--ensemble-weight: give the second encoder with --ensemble-backend (e.g. use-multilingual)"
            )
        encoder.ensemble_weight = weight
    share = encoder.ensemble_weight
    if encoder.ensemble_backend and (
        isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 < share < 1.0
    ):
        where = "--ensemble-weight" if weight is not None else f"{config}: encoder.ensemble_weight"
        raise InputError(f"{where} {share!r}: must lie strictly between 0 and 1")


def graft_exclusions(args: argparse.Namespace, graft: Any, tags: Any) -> set[tuple[str, str]]:
    """The checked ``--graft-exclude`` pairs (empty without the option).

    Raises:
        InputError: --graft-exclude without --graft, or a bad line (with its number).
    """
    from tagindex.adapt.graft import check_exclusions, read_exclusions
    from tagindex.errors import InputError

    if not args.graft_exclude:
        return set()
    if graft is None:
        raise InputError("--graft-exclude: names pairs of the --graft taxonomy; give --graft too")
    return check_exclusions(args.graft_exclude, read_exclusions(args.graft_exclude), graft, tags)


def add_kind_options(p: argparse.ArgumentParser) -> None:
    """``--per-kind``, ``--kind-norm``, ``--category-title-weight`` (see :mod:`tagindex.kinds`)."""
    for flag in ("--per-kind", "--kind-norm", "--category-title-weight"):
        add_option(p, flag)


def kind_policy(args: argparse.Namespace) -> Any:
    """The :class:`tagindex.kinds.KindPolicy` the kind options ask for (None: none asked)."""
    from tagindex.kinds import KindPolicy

    return KindPolicy.parse(
        getattr(args, "per_kind", None),
        getattr(args, "kind_norm", None),
        getattr(args, "category_title_weight", None),
    )


def add_product_columns(p: argparse.ArgumentParser) -> None:
    """``--id-col``, ``--title-col``, ``--description-col``: read products whose columns have other names."""
    for flag in ("--id-col", "--title-col", "--description-col"):
        add_option(p, flag)


def product_columns(args: argparse.Namespace) -> dict[str, str] | None:
    """The column map for :func:`tagindex.io.load_products` from the ``--*-col`` options (None if unset)."""
    columns = {field: getattr(args, f"{field}_col", None) for field in ("id", "title", "description")}
    return {field: column for field, column in columns.items() if column} or None


def configure_output(args: argparse.Namespace) -> None:
    """Logging and third-party progress/log noise, set before any heavy library is imported.

    Default: our INFO lines as plain text on stderr (the one-line summaries), warnings with their
    level. ``-q``: warnings only, and no progress bars from tqdm, huggingface_hub or transformers
    (whose "Loading weights" bar reads these variables when it is first imported). ``-v``: debug
    logging with timestamps and logger names.
    """
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host program's (or pytest's) handlers win
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            if verbose
            else _PlainFormatter()
        )
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if verbose else logging.WARNING)
        # Other libraries stay at WARNING unless -v; our own INFO summaries show unless -q.
        logging.getLogger("tagindex").setLevel(
            logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
        )
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
        if "transformers" in sys.modules:  # imported already (in-process callers): switch it off directly
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()


class _PlainFormatter(logging.Formatter):
    """INFO records as the bare message; warnings and errors prefixed with their level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def error_line(command: str, exc: BaseException) -> str:
    """The one line a user error prints: ``tagindex CMD: error: MESSAGE`` (newlines folded)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return f"tagindex {command}: error: {text}"


def run_command(name: str, command: Command, args: argparse.Namespace) -> int:
    """Runs ``command``; user errors become one line on stderr and exit status 2."""
    from tagindex.errors import TagindexError

    try:
        return command.run(args)
    except (TagindexError, ValueError, KeyError, OSError) as exc:
        print(error_line(name, exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
