"""Fine-tunes the encoder on each benchmark task's training split (the models ``tagindex-finetuned*`` use).

Reads the split files that ``benchmarks.run`` prepares under ``WORK/data`` (prepared here too when
missing) and writes ``WORK/models/<name>`` with ``tagindex train``'s Python API:

- ``mwpd``: MWPD train (the model selects its epoch on a dev split carved from it);
- ``mwpd-zeroshot-seed<S>``: the zero-shot split's training set (held-out tags and their products removed);
- ``ae-110k`` / ``oa-mine``: one attribute-tag dataset's train split with its own tags (cross-dataset).

    python -m benchmarks.train_models [--work work/bench] [--models mwpd,ae-110k] [--config cfg.json]

Prints and writes ``benchmarks/results/train_models.json``: wall time and dev metrics per model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from benchmarks.harness import machine_info
from benchmarks.tasks import prepare
from tagindex.io import load_products, load_tags
from tagindex.train import TrainParams, train

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("benchmarks")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="public data root")
    ap.add_argument("--work", default=str(REPO / "work" / "bench"), help="benchmark work directory")
    ap.add_argument("--models", default="mwpd,mwpd-zeroshot,ae-110k,oa-mine", help="comma list")
    ap.add_argument("--config", help="JSON TrainParams overrides for every model")
    ap.add_argument("--fast", action="store_true", help="the CI-sized configuration")
    ap.add_argument("--seed", type=int, default=0, help="split seed (as in benchmarks.run)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_models.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    work = Path(args.work)
    data = prepare(Path(args.data), work, seed=args.seed)
    sources = {
        "mwpd": (data / "mwpd" / "train.jsonl", data / "mwpd" / "tags.jsonl"),
        "mwpd-zeroshot": (
            data / f"mwpd-zeroshot-seed{args.seed}" / "train.jsonl",
            data / f"mwpd-zeroshot-seed{args.seed}" / "tags.jsonl",
        ),
        "ae-110k": (data / "ae-110k" / "train.jsonl", data / "ae-110k" / "tags.jsonl"),
        "oa-mine": (data / "oa-mine" / "train.jsonl", data / "oa-mine" / "tags.jsonl"),
    }
    params = TrainParams.fast() if args.fast else TrainParams()
    if args.config:
        params = TrainParams.from_dict({**params.to_dict(), **json.loads(Path(args.config).read_text())})
    results = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in sources:
            raise SystemExit(f"unknown model '{name}'; known: {sorted(sources)}")
        products_file, tags_file = sources[name]
        tags = load_tags(tags_file)
        products = load_products(products_file)
        if name == "mwpd-zeroshot":
            # The zero-shot split keeps held-out tags in the vocabulary; training must not see their text
            # as a positive either, so only tags used by the remaining products (and their ancestors) stay.
            used = {t for p in products for t in p.tags}
            tags = [t for t in tags if t.id in used]
        out_name = f"mwpd-zeroshot-seed{args.seed}" if name == "mwpd-zeroshot" else name
        start = time.perf_counter()
        report = train(products, tags, work / "models" / out_name, params=params)
        results[out_name] = {
            "products": str(products_file),
            "wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(report.cpu_seconds, 1),
            "best_epoch": report.best_epoch,
            "epochs": report.epochs,
            "n_fit": report.n_fit,
            "n_dev": report.n_dev,
            "params": params.to_dict(),
        }
        print(json.dumps({out_name: {k: results[out_name][k] for k in ("wall_s", "best_epoch")}}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update({"machine": machine_info(), "models": {**previous.get("models", {}), **results}})
    out.write_text(json.dumps(previous, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
