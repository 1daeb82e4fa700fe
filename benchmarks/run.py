"""Runs every registered system on the benchmark tasks in one process and prints one table per task.

Usage (from the repository root; ``make bench`` does the same after installing)::

    python -m benchmarks.run                      # all tasks, all systems
    python -m benchmarks.run --tasks mwpd --sample 300 --speed-n 100 --latency-n 20   # quick look

Writes ``benchmarks/results/<task>.json`` (quality, speed, full evaluate reports, git commit, machine,
library versions), the runs as ``WORK/runs/<task>/<system>.jsonl`` (score them again with
``tagindex evaluate``), then refreshes the plots and the tables in ``benchmarks/README.md``.
Speed is measured on the main task (``mwpd``) only.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, Measurement, Task, git_commit, library_versions, machine_info, measure
from benchmarks.report import refresh, table
from benchmarks.systems import SYSTEMS
from benchmarks.tasks import TASKS, load_task, prepare
from tagindex.io import write_jsonl
from tagindex.metrics import evaluate, format_table, gold_from_products

logger = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SPEED_TASKS = {"mwpd"}
CURVE_KS = tuple(range(1, 11))


def quality(report: dict[str, Any], task: Task) -> dict[str, float | None]:
    """The table's quality columns from an evaluate report."""
    section = report["levels"][str(task.level)] if task.level is not None else report["overall"]
    tail = report.get("buckets", {}).get("<=5", {})
    return {
        "recall@1": section.get("recall@1"),
        "recall@5": section.get("recall@5"),
        "recall@10": section.get("recall@10"),
        "macro_recall@5": section.get("macro_recall@5"),
        "mrr": section.get("mrr"),
        "tail_macro_recall@5": tail.get("macro_recall@5") if task.train else None,
        "challenge": report.get("challenge"),
        "curve": [section.get(f"recall@{k}") for k in CURVE_KS],
    }


def run_task(
    name: str, data: Path, ctx: Context, args: argparse.Namespace, systems: list[str]
) -> dict[str, Any]:
    task = load_task(name, data, sample=args.sample, seed=args.seed, train_sample=args.train_sample)
    logger.info(
        "task %s: %d train, %d test products, %d tags", name, len(task.train), len(task.test), len(task.tags)
    )
    speed = name in SPEED_TASKS and not args.no_speed
    gold = gold_from_products(task.test)
    rows = []
    for system_name in systems:
        system = SYSTEMS[system_name]()
        logger.info("  %s ...", system_name)
        start = time.perf_counter()
        try:
            m = measure(
                system,
                task,
                ctx,
                speed_n=args.speed_n if speed else 0,
                latency_n=args.latency_n if speed else 0,
            )
        except Exception as exc:
            if args.fail_fast:
                raise
            logger.exception("system %s failed on %s", system_name, name)
            m = Measurement(system_name, system.description, skipped=f"failed: {type(exc).__name__}: {exc}")
        finally:
            system.close()
        rows.append(_row(m, task, gold, ctx))
        logger.info("  %s done in %.0fs", system_name, time.perf_counter() - start)
        del system
        gc.collect()
    split_manifest = task.data / "split.json" if task.data else None
    return {
        "task": name,
        "title": task.title,
        "n_train": len(task.train),
        "n_test": len(task.test),
        "n_tags": len(task.tags),
        "split": json.loads(split_manifest.read_text())["counts"]
        if split_manifest and split_manifest.exists()
        else None,
        "systems": rows,
    }


def _row(m: Measurement, task: Task, gold: dict[str, list[str]], ctx: Context) -> dict[str, Any]:
    row: dict[str, Any] = {"system": m.system, "description": m.description}
    if m.run is None:
        row["skipped"] = m.skipped
        return row
    runs_dir = ctx.work / "runs" / task.name
    write_jsonl(
        runs_dir / f"{m.system}.jsonl",
        (
            {"id": pid, "tags": [{"tag": t, "score": round(s, 6)} for t, s in ranked]}
            for pid, ranked in m.run.items()
        ),
    )
    report = evaluate(m.run, gold, tags=task.tags, train=task.train or None, ks=CURVE_KS)
    row.update(quality=quality(report, task), speed=m.speed(), versions=m.versions, report=report)
    return row


def refreshes_report(out: Path, *, no_report: bool) -> bool:
    """Whether a run writing to ``out`` refreshes benchmarks/README.md's results block and plots.

    The block describes benchmarks/results only: results written elsewhere (an A/B run, a scratch
    comparison) must not replace it, so ``--out`` anywhere else implies ``--no-report``.
    """
    return not no_report and out.resolve() == RESULTS.resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="all", help=f"comma list of {', '.join(TASKS)} (default all)")
    parser.add_argument("--systems", default="all", help=f"comma list of {', '.join(SYSTEMS)} (default all)")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="public data root")
    parser.add_argument("--work", default=str(REPO / "work" / "bench"), help="converted data, caches, runs")
    parser.add_argument("--out", default=str(RESULTS), help="results directory")
    parser.add_argument(
        "--sample", type=int, default=None, help="seeded subset of test products (quick runs)"
    )
    parser.add_argument(
        "--train-sample",
        type=int,
        default=None,
        help="seeded subset of training products (pipeline checks only)",
    )
    parser.add_argument("--speed-n", type=int, default=300, help="products for the batch throughput run")
    parser.add_argument("--latency-n", type=int, default=100, help="products for single-product latency")
    parser.add_argument("--no-speed", action="store_true", help="skip speed measurements")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument(
        "--seed-cache",
        help="copy product vectors from this VectorCache directory first (saves re-encoding on a busy "
        "machine; build times then exclude encoding of cached products, and the results say so)",
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing system")
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="do not refresh plots and README tables (implied when --out is not benchmarks/results)",
    )
    parser.add_argument(
        "--cache",
        help="reuse (and keep) this product-vector cache across runs; build times then exclude encoding "
        "that an earlier run did (default: a fresh cache per run, deleted at the end)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("sentence_transformers", "httpx", "faiss", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    tasks = TASKS if args.tasks == "all" else [t.strip() for t in args.tasks.split(",")]
    systems = list(SYSTEMS) if args.systems == "all" else [s.strip() for s in args.systems.split(",")]
    unknown = [t for t in tasks if t not in TASKS] + [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown task/system: {unknown}")
    data_root = Path(args.data)
    if not (data_root / "mwpd" / "train.json").exists():
        parser.error(f"{data_root}: public data not found (run `make data` or pass --data)")
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare(data_root, work, seed=args.seed)
    # A fresh vector cache per invocation: peers share product vectors within this run only, so build
    # times are not flattered by vectors left over from an earlier run.
    cache = Path(args.cache) if args.cache else work / f"vector-cache-{os.getpid()}"
    if args.seed_cache:
        import shutil

        shutil.copytree(args.seed_cache, cache, dirs_exist_ok=True)
    ctx = Context(work=work, cache_dir=cache, seed=args.seed)
    header = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "git": git_commit(REPO),
        "machine": machine_info(),
        "versions": library_versions(),
        "settings": {
            "sample": args.sample,
            "train_sample": args.train_sample,
            "seed_cache": args.seed_cache,
            "speed_n": args.speed_n,
            "latency_n": args.latency_n,
            "k": ctx.k,
            "seed": args.seed,
            "speed_tasks": sorted(SPEED_TASKS),
        },
    }
    try:
        for name in tasks:
            result = {**header, **run_task(name, data, ctx, args, systems)}
            path = out / f"{name}.json"
            path.write_text(json.dumps(result, indent=1) + "\n")
            task_title = result["title"]
            print(f"\n## {name}: {task_title}  ({result['n_test']} test products, {result['n_tags']} tags)")
            print(format_table(*table(result)))
            print(f"-> {path}")
    finally:
        import shutil

        if not args.cache:
            shutil.rmtree(cache, ignore_errors=True)
    if refreshes_report(out, no_report=args.no_report):
        refresh(out, REPO / "benchmarks" / "README.md")
    elif not args.no_report:
        logger.info("results written to %s, not %s: README tables left as they are", out, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
