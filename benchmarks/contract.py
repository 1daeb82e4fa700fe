"""CLI contract check: the same commands on the same real sample must give the same outputs (byte for
byte outside the numbers; numbers to float rounding across CPUs, see ``tests/test_contract.py``).

Runs ``tagindex index``, ``tag`` (plain, ``--ancestors``, ``--threshold``, an index with exemplars,
and a tiny trained reranker with a calibration and ``--decide``), ``similar``, ``evaluate`` and
``explain`` in process on a small deterministic slice of MWPD, and writes every run file and
printed output under ``--out``. ``tests/test_contract.py`` compares them with the references in
``tests/data/contract/``, which this script wrote with the code of commit 4f4bfd5 (before the
architecture change):

    cd /work/main && .venv/bin/python /path/to/benchmarks/contract.py \\
        --data ../shared/data --out /path/to/tests/data/contract

One deliberate change since: the exemplar scorer's few-shot regime (``ExemplarParams.few_shot_below``,
docs/learning.md) scores this slice's 300-exemplar index with k = 5 and vote weight 0.15, so the six
outputs that go through that index (``tag_exemplars``, ``tag_rerank``, ``tag_rerank_decide``,
``explain``, ``evaluate.txt``/``.json``) were rewritten by this script at the commit that made it;
the other six are still the pre-architecture bytes. A second deliberate change, in session 18: an
attribute's field name is shown to the encoder as the word it means (``TextParams.attribute_labels``:
MWPD's "breadcrumb" as "category", which the encoder had read as bread crumbs), so every output
that encodes this slice's offers (all but the three ``similar_*.txt``) was rewritten by this script at that
commit; on this slice the exemplar index's challenge metric went from 0.5878 to 0.6180. Formats and
fields did not change.

The script only calls the command line (``tagindex.cli.main``) so it runs unchanged on either side.
Every path the commands see is relative to the work directory, since ``evaluate`` records them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

N_PRODUCTS = 40  # validation offers tagged by every command
N_TRAIN = 300  # training offers: exemplars, reranker training and calibration

OUTPUTS = (
    "tag_plain.jsonl",
    "tag_ancestors.jsonl",
    "tag_threshold.jsonl",
    "tag_exemplars.jsonl",
    "tag_rerank.jsonl",
    "tag_rerank_decide.jsonl",
    "similar_tag.txt",
    "similar_text.txt",
    "similar_duplicates.txt",
    "evaluate.txt",
    "evaluate.json",
    "explain.jsonl",
)


def _cli(*argv: str) -> str:
    """Runs one command in process; returns what it printed on stdout (fails on a non-zero exit)."""
    from tagindex.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["-q", *argv])
    if code != 0:
        raise RuntimeError(f"tagindex {' '.join(argv)} exited with {code}")
    return out.getvalue()


def _head(src: Path, dst: Path, n: int) -> None:
    with src.open(encoding="utf-8") as f:
        lines = [line for _, line in zip(range(n), f, strict=False)]
    dst.write_text("".join(lines), encoding="utf-8")


def run_contract(data: Path, out: Path, work: Path) -> list[Path]:
    """Runs every contract command on the MWPD slice under ``work``; copies the outputs to ``out``.

    Args:
        data: The real data directory (holding ``mwpd/``).
        out: Directory receiving the outputs named in :data:`OUTPUTS`.
        work: Scratch directory (indexes, reranker, calibration).

    Returns:
        The output files written.
    """
    import torch

    torch.set_num_threads(1)  # training and scoring reduce in one fixed order
    data = data.resolve()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    os.chdir(work)
    try:
        _cli("convert", "mwpd", "--src", str(data / "mwpd"), "--out", "mwpd")
        _head(Path("mwpd/validation.jsonl"), Path("products.jsonl"), N_PRODUCTS)
        _head(Path("mwpd/train.jsonl"), Path("train.jsonl"), N_TRAIN)
        tags = "mwpd/tags.jsonl"
        # The PyTorch encoder, named: the default backend became ONNX int8 (issue 15), whose integer
        # kernels differ between CPU generations, so its scores are not byte-stable across machines.
        pytorch = ("--backend", "sentence-transformers")
        _cli("index", "--tags", tags, "--out", "index", *pytorch)
        _cli("index", "--tags", tags, "--products", "train.jsonl", "--out", "index-ex", *pytorch)
        tag = ("tag", "--products", "products.jsonl")
        _cli(*tag, "--index", "index", "--out", "tag_plain.jsonl")
        _cli(*tag, "--index", "index", "--ancestors", "--top-k", "5", "--out", "tag_ancestors.jsonl")
        _cli(*tag, "--index", "index", "--threshold", "0.35", "--out", "tag_threshold.jsonl")
        _cli(*tag, "--index", "index-ex", "--ancestors", "--out", "tag_exemplars.jsonl")
        _cli(
            "train-reranker",
            "--index",
            "index-ex",
            "--products",
            "train.jsonl",
            "--out",
            "reranker",
            "--fast",
            "--max-products",
            "60",
            "--depth",
            "8",
        )
        _cli(
            "calibrate",
            "--index",
            "index-ex",
            "--products",
            "train.jsonl",
            "--reranker",
            "reranker",
            "--depth",
            "8",
            "--target-precision",
            "0.75",
            "--out",
            "calibration.json",
        )
        rerank = ("--index", "index-ex", "--reranker", "reranker")
        _cli(*tag, *rerank, "--top-k", "12", "--out", "tag_rerank.jsonl")
        _cli(
            *tag,
            *rerank,
            "--calibration",
            "calibration.json",
            "--decide",
            "--ancestors",
            "--threshold",
            "0.05",
            "--out",
            "tag_rerank_decide.jsonl",
        )
        Path("similar_tag.txt").write_text(
            _cli(
                "similar",
                "--index",
                "index",
                "--top-k",
                "5",
                "51121600_Vitamins/Minerals/Nutritional Supplements",
            )
        )
        Path("similar_text.txt").write_text(_cli("similar", "--index", "index", "red wine"))
        Path("similar_duplicates.txt").write_text(
            _cli("similar", "--index", "index", "--duplicates", "--min-score", "0.8", "--top-k", "20")
        )
        Path("evaluate.txt").write_text(
            _cli(
                "evaluate",
                "--run",
                "tag_exemplars.jsonl",
                "--gold",
                "products.jsonl",
                "--tags",
                tags,
                "--train",
                "train.jsonl",
                "--json",
                "evaluate.json",
            )
        )
        _cli(
            "explain",
            *rerank,
            "--calibration",
            "calibration.json",
            "--products",
            "products.jsonl",
            "--train",
            "train.jsonl",
            "--limit",
            "5",
            "--out",
            "explain.jsonl",
        )
        written = []
        for name in OUTPUTS:
            shutil.copyfile(name, out / name)
            written.append(out / name)
        return written
    finally:
        os.chdir(previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="real data directory")
    parser.add_argument("--out", type=Path, required=True, help="directory for the outputs")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tagindex-contract-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for path in run_contract(args.data, args.out, work):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
