"""The exemplar scorer's few-shot regime on labelled catalogs of 300-8,000 products (MWPD dev split).

Random products of the pool of the dev split of MWPD *train* (20%, seed 13) are stored as labelled
exemplars of the packaged MiniLM (int8) base index and the dev split is tagged with the regular
settings (k = 20, vote weight 0.5) and with the few-shot ones (``ExemplarParams.few_shot_k`` /
``few_shot_vote_weight``, forced at every size). Validation is never read.

    python -m benchmarks.few_shot_regime --data work/mwpd --work work/lc
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import sys
from pathlib import Path

from benchmarks.learning_curve import score
from tagindex.config import ExemplarParams
from tagindex.devsplit import dev_split
from tagindex.index import TagIndex
from tagindex.io import load_products, load_tags

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="work/mwpd", help="converted MWPD (tagindex convert mwpd)")
    ap.add_argument("--work", default="work/lc", help="learning_curve.py's work dir (base index, cache)")
    ap.add_argument("--sizes", default="300,1000,1900,3000,5000,8000")
    ap.add_argument("--samples", type=int, default=2, help="random samples per size")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data, work = Path(args.data), Path(args.work)
    tags = load_tags(data / "tags.jsonl")
    pool, dev = dev_split(load_products(data / "train.jsonl"), 0.2, 13)
    base_dir = work / "base-index-onnx-int8"
    base = TagIndex.load(base_dir)
    pool_vecs = base.encode_products(pool, cache_dir=str(work / "cache"))
    dev_vecs = base.encode_products(dev, cache_dir=str(work / "cache"))
    ids, gold = [p.id for p in dev], {p.id: list(p.tags) for p in dev}
    settings = {"k=20": ExemplarParams(few_shot_below=0), "few-shot": ExemplarParams(few_shot_below=10**9)}
    rows = []
    print("| labelled products | sample | lvl3 R@1 k=20 | few-shot | challenge k=20 | few-shot |")
    print("|---|---|---|---|---|---|")
    for n in [int(x) for x in args.sizes.split(",")]:
        for sample in range(1, args.samples + 1):
            picked = random.Random(sample).sample(range(len(pool)), n)
            row: dict[str, object] = {"products": n, "sample": sample}
            for name, params in settings.items():
                index = TagIndex.load(base_dir)
                index.params.exemplars = params
                index.add_exemplars([pool[i] for i in picked], vectors=pool_vecs[picked])
                row[name] = score(index, ids, dev_vecs, gold, tags)
            rows.append(row)
            a, b = row["k=20"], row["few-shot"]
            print(
                f"| {n} | {sample} | {a['lvl3_r1']:.3f} | {b['lvl3_r1']:.3f} | "  # type: ignore[index]
                f"{a['challenge']:.3f} | {b['challenge']:.3f} |",  # type: ignore[index]
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "few_shot_regime.json"
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result = {"eval": "MWPD dev split of train (20%, seed 13)", "rows": rows, "uptime_after": uptime}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
