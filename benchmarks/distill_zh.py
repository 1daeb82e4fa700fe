"""Distils the Chinese student (``tagindex distill``'s library path) and records wall time and load.

Usage::

    OMP_NUM_THREADS=2 nice -n 10 python -m benchmarks.distill_zh --out work/models/minilm-zh \
        --threads 2 --max-pairs 45000 --max-dictionary-pairs 20000

Writes ``benchmarks/results/distill-zh.json`` (settings, pair counts, dev metrics per epoch, wall
and CPU seconds, ``uptime`` before/after: the machine is shared, so the time is an upper bound).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import time
from pathlib import Path

from tagindex.distill import DistillParams, distill, gather_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="folder holding shopify-taxonomy/")
    parser.add_argument("--out", default="work/models/minilm-zh")
    parser.add_argument("--languages", default="zh-CN")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-pairs", type=int, default=45000)
    parser.add_argument("--max-dictionary-pairs", type=int, default=20000)
    parser.add_argument("--dictionary", default="auto")
    parser.add_argument("--sources", default="attribute,attribute-description,value,attribute-value,cedict")
    parser.add_argument("--max-seq-length", type=int, default=48)
    parser.add_argument("--english-share", type=float, default=0.25)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds (see DistillParams)")
    parser.add_argument(
        "--student",
        default=None,
        help="student init: a model directory or packaged:multilingual-e5-small (default: the teacher)",
    )
    parser.add_argument("--align", default="auto", choices=["auto", "linear", "none"])
    parser.add_argument("--align-pairs", type=int, default=4000)
    parser.add_argument("--freeze-embeddings", action="store_true", help="keep the token embeddings fixed")
    parser.add_argument("--results", default="benchmarks/results/distill-zh.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    params = DistillParams(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        dictionary=args.dictionary,
        max_dictionary_pairs=args.max_dictionary_pairs,
        max_pairs=args.max_pairs,
        sources=args.sources.split(","),
        max_seq_length=args.max_seq_length,
        english_share=args.english_share,
        time_budget_s=args.time_budget,
        align=args.align,
        align_pairs=args.align_pairs,
        freeze_embeddings=args.freeze_embeddings,
    )
    languages = args.languages.split(",")
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    load_before = os.getloadavg()
    start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    pairs = gather_pairs(Path(args.data) / "shopify-taxonomy", languages, params)
    report = distill(pairs, args.out, student=args.student, params=params, languages=languages)
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.distill_zh "
        + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
            for k, v in vars(args).items()
            if v is not False and v is not None
        ),
        "out": args.out,
        "params": params.to_dict(),
        "threads": args.threads,
        "n_pairs_gathered": len(pairs),
        "n_train": report.n_train,
        "n_dev": report.n_dev,
        "steps": report.steps,
        "sources": report.sources,
        "dev_metrics": report.epochs,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "uptime_before": uptime_before,
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "cores": os.cpu_count(),
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("n_train", "sources", "dev_metrics", "wall_s")}, indent=1))


if __name__ == "__main__":
    main()
