"""Batch tagging on Ray: workers, overhead, correctness, kill-and-resume, memory, extrapolation.

Products are MWPD offers (train + validation, ../shared/data/mwpd) resampled with perturbed titles
(seeded: words dropped, swapped and borrowed from other offers; fresh ids), written as JSONL shards.

Runs, each on the same products:
  - in-process: the ``tagindex tag`` call (``index.tag`` over all products) at one thread;
  - Ray with 1 worker and with 2 workers (one CPU each), through ``tag_with_ray``;
  - correctness: every product exactly once, tags and scores compared with the in-process run;
  - kill and resume: ``tagindex tag --engine ray`` killed after a few shards, then rerun;
  - large: ``--large`` products end to end through the CLI with a fast index (memory, streaming),
    peak RSS of the whole process tree (driver, raylet, actors) sampled every 0.2 s;
  - GPU: the ``--gpus-per-worker`` recipe, run when Ray sees a GPU, else recorded as skipped.

Example (what produced benchmarks/results/scale_ray.json; the load average is recorded because
throughput ratios on a shared machine are distorted)::

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.scale_ray --n 1000 --batch-size 125 \\
        --large 1000000 --large-batch-size 10000 --work /tmp/scale_ray

Throughputs compare steady rates: the in-process figure excludes loading the index, the Ray figures
count the shards committed after the first one over the time since it (worker start-up excluded;
the wall-clock rate with start-up is kept beside it as ``products_per_s_wall``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TAGINDEX_DATA", REPO.parent / "shared" / "data")) / "mwpd"
RESULTS = REPO / "benchmarks" / "results"
logger = logging.getLogger("scale_ray")


# ---- data --------------------------------------------------------------------------------------------
def perturb(title: str, rng: random.Random, donors: list[str]) -> str:
    """A realistic variant of a title: drop a word, swap two, borrow one from another offer."""
    words = title.split()
    if len(words) > 3 and rng.random() < 0.5:
        del words[rng.randrange(len(words))]
    if len(words) > 2 and rng.random() < 0.5:
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    if rng.random() < 0.5:
        donor = rng.choice(donors).split()
        if donor:
            words.insert(rng.randrange(len(words) + 1), rng.choice(donor))
    return " ".join(words) or title


def write_products(out_dir: Path, n: int, shard_rows: int, seed: int = 0) -> Path:
    """``n`` resampled MWPD offers as JSONL shards of ``shard_rows`` (reused when already written)."""
    marker = out_dir / "_done.json"
    if marker.exists() and json.loads(marker.read_text()) == {"n": n, "shard_rows": shard_rows, "seed": seed}:
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    offers = []
    for name in ("train.json", "validation.json"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            offers.append({"title": r["Name"] or "untitled", "description": r.get("Description") or ""})
    donors = [o["title"] for o in offers]
    rng = random.Random(seed)
    handle = None
    for i in range(n):
        if i % shard_rows == 0:
            if handle:
                handle.close()
            handle = (out_dir / f"products-{i // shard_rows:05d}.jsonl").open("w", encoding="utf-8")
        o = offers[rng.randrange(len(offers))]
        row = {"id": f"p{i:09d}", "title": perturb(o["title"], rng, donors), "description": o["description"]}
        assert handle is not None
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if handle:
        handle.close()
    marker.write_text(json.dumps({"n": n, "shard_rows": shard_rows, "seed": seed}))
    return out_dir


def build_index(out: Path, backend: str) -> Path:
    if (out / "CURRENT").exists() or (out / "manifest.json").exists():  # versioned or older plain index
        return out
    from tagindex.config import TagIndexParams
    from tagindex.convert import convert
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    converted = out.parent / "mwpd-converted"
    if not (converted / "tags.jsonl").exists():
        convert("mwpd", DATA, converted)
    params = TagIndexParams()
    params.encoder.backend = backend
    TagIndex.build(load_tags(converted / "tags.jsonl"), params).save(out)
    return out


# ---- measuring ---------------------------------------------------------------------------------------
class TreeRSS:
    """Peak of the summed RSS of this process and all its descendants, sampled in a thread.

    Summing RSS counts shared pages once per process, so this is an upper bound.
    """

    def __init__(self, root_pid: int | None = None, every: float = 0.2) -> None:
        import psutil

        self.root = psutil.Process(root_pid or os.getpid())
        self.every = every
        self.peak = 0
        self.peak_driver = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        continue
                self.peak = max(self.peak, total)
                self.peak_driver = max(self.peak_driver, self.root.memory_info().rss)
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def gib(n: int) -> float:
    return round(n / 2**30, 3)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def compare(expected: dict[str, dict[str, Any]], got: list[dict[str, Any]]) -> dict[str, Any]:
    """Every product exactly once; same tag lists; score differences."""
    ids = [r["id"] for r in got]
    by_id = {r["id"]: r for r in got}
    same_tags = sum(
        [t["tag"] for t in by_id[i]["tags"]] == [t["tag"] for t in expected[i]["tags"]]
        for i in expected
        if i in by_id
    )
    max_diff = max(
        (
            abs(a["score"] - b["score"])
            for i in expected
            if i in by_id
            for a, b in zip(by_id[i]["tags"], expected[i]["tags"], strict=False)
        ),
        default=0.0,
    )
    return {
        "products": len(expected),
        "returned": len(ids),
        "duplicates": len(ids) - len(set(ids)),
        "missing": len(set(expected) - set(ids)),
        "identical_lines": sum(by_id.get(i) == r for i, r in expected.items()),
        "same_tag_lists": same_tags,
        "max_score_diff": max_diff,
    }


# ---- runs ----------------------------------------------------------------------------------------------
def in_process(index_dir: Path, src: Path, top_k: int) -> tuple[dict[str, dict[str, Any]], float, float]:
    """The in-process ``tag`` pipeline over every product, one thread; returns lines, load s, tag s."""
    import torch

    from tagindex.engines.shards import TagOptions, load_pipeline, tag_products
    from tagindex.io import load_products

    torch.set_num_threads(1)
    start = time.perf_counter()
    options = TagOptions.of(top_k=top_k)
    pipeline = load_pipeline(index_dir, options)  # what `tagindex tag` and every Ray worker build
    products = [p for f in sorted(src.glob("*.jsonl")) for p in load_products(f)]
    loaded = time.perf_counter()
    records = tag_products(pipeline, products, options)
    done = time.perf_counter()
    return {r["id"]: r for r in records}, loaded - start, done - loaded


def ray_run(index_dir: Path, src: Path, out: Path, workers: int, batch: int, top_k: int) -> dict[str, Any]:
    import ray

    from tagindex.engines.ray_engine import tag_with_ray
    from tagindex.engines.shards import TagOptions

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
    started = time.perf_counter()
    try:
        with TreeRSS() as rss:
            summary = tag_with_ray(
                index_dir, src, out, TagOptions.of(top_k=top_k), num_workers=workers, batch_size=batch
            )
    finally:
        ray.shutdown()
    return {
        "workers": workers,
        "ray_init_s": round(started - start, 2),
        "run_s": round(summary.seconds, 2),
        "products_per_s_wall": round(summary.products_per_s, 1),
        "products_per_s": round(summary.steady_products_per_s, 1),
        "tagged": summary.tagged,
        "failures": summary.failures,
        "peak_rss_tree_gib": gib(rss.peak),
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tagindex.cli", "-q", "tag", "--engine", "ray", *args]


def kill_and_resume(index_dir: Path, src: Path, out: Path, batch: int, expected: set[str]) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = cli("--index", str(index_dir), "--products", str(src), "--out", str(out), "--num-workers", "2",
              "--batch-size", str(batch), "--top-k", "5")  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    import psutil

    started = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    proc.send_signal(signal.SIGKILL)  # the driver, mid-run, then every process it started (Ray's)
    proc.wait()
    for child in started:
        try:
            child.kill()
        except psutil.Error:
            continue
    time.sleep(1)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    from tagindex.engines.shards import read_shards

    ids = [r["id"] for r in read_shards(out)]
    summary = json.loads((out / "_summary.json").read_text())
    return {
        "shards_finished_before_kill": len(finished),
        "rerun_exit": rerun.returncode,
        "rerun_skipped": summary["shards_skipped"],
        "rerun_written": summary["shards_written"],
        "finished_shards_untouched": all(
            (out / n).exists() and (out / n).stat().st_mtime_ns == m for n, m in finished.items()
        ),
        "duplicates": len(ids) - len(set(ids)),
        "missing": len(expected - set(ids)),
        "ok": rerun.returncode == 0 and len(ids) == len(set(ids)) and set(ids) == expected,
    }


def large_run(index_dir: Path, src: Path, out: Path, workers: int, batch: int) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = cli("--index", str(index_dir), "--products", str(src), "--out", str(out), "--num-workers",
              str(workers), "--batch-size", str(batch), "--top-k", "5")  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeRSS(proc.pid, every=0.5) as rss:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"large run failed ({proc.returncode}): {stderr[-2000:]}")
    summary = json.loads((out / "_summary.json").read_text())
    import pyarrow.parquet as pq

    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    return {
        "workers": workers,
        "batch_size": batch,
        "wall_s": round(wall, 1),
        "products": summary["products"],
        "tagged": summary["tagged"],
        "failures": summary["failures"],
        "products_per_s_wall": summary["products_per_s"],
        "products_per_s": summary["steady_products_per_s"],
        "rows_in_output": len(ids),
        "duplicates": len(ids) - len(set(ids)),
        "peak_rss_tree_gib": gib(rss.peak),
        "peak_rss_driver_gib": gib(rss.peak_driver),
        "output_bytes": sum(p.stat().st_size for p in out.glob("part-*.parquet")),
    }


def driver_parse_rate(src: Path, batch: int) -> float:
    """Rows/s the driver alone reads and cuts into batches: the ceiling of one driver's cluster."""
    from tagindex.engines.shards import iter_batches, list_sources

    root, sources = list_sources(src)
    start = time.perf_counter()
    n = sum(b.n_rows for b in iter_batches(root, sources, batch))
    return n / (time.perf_counter() - start)


def gpu_check(index_dir: Path, src: Path, out: Path) -> dict[str, Any]:
    import ray

    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus < 1:
            return {"skipped": "Ray sees no GPU on this machine", "ran": False}
        from tagindex.engines.ray_engine import tag_with_ray

        shutil.rmtree(out, ignore_errors=True)
        summary = tag_with_ray(index_dir, src, out, num_workers=1, gpus_per_worker=1, batch_size=512)
        return {"ran": True, "gpus": gpus, "products_per_s": round(summary.products_per_s, 1)}
    finally:
        ray.shutdown()


def extrapolate(per_worker: float, two_worker_speedup: float, parse_rate: float) -> dict[str, Any]:
    """100M products on N nodes of C cores, from the measured per-worker rate (linear in workers,
    discounted by the measured 2-worker efficiency) and capped by one driver's read rate."""
    efficiency = min(1.0, two_worker_speedup / 2)
    rows = []
    for nodes, cores in ((1, 2), (1, 32), (10, 32), (50, 32)):
        workers = nodes * cores
        rate = min(per_worker * workers * efficiency, parse_rate)
        rows.append(
            {
                "nodes": nodes,
                "cores_per_node": cores,
                "workers": workers,
                "products_per_s": round(rate, 1),
                "hours_for_100M": round(1e8 / rate / 3600, 2),
                "bound": "driver read/parse" if rate == parse_rate else "encoder CPU",
            }
        )
    return {"per_worker_products_per_s": round(per_worker, 1), "worker_efficiency": round(efficiency, 3),
            "driver_parse_rows_per_s": round(parse_rate), "rows": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=2000, help="products for the throughput comparisons")
    p.add_argument("--batch-size", type=int, default=250, help="products per Ray task/shard (comparisons)")
    p.add_argument("--backend", default="sentence-transformers", help="encoder of the comparison index")
    p.add_argument("--large", type=int, default=1_000_000, help="products for the end-to-end run (0: skip)")
    p.add_argument("--large-backend", default="tokenlearn-static", help="encoder of the large run's index")
    p.add_argument("--large-batch-size", type=int, default=10_000)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument(
        "--no-resume", action="store_true", help="skip the kill-and-resume check (speed comparisons only)"
    )
    p.add_argument("--work", default="/tmp/scale_ray", help="scratch directory (products, indexes, outputs)")
    p.add_argument("--out", default=str(RESULTS / "scale_ray.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster; token auth writes under ~/.ray
    work = Path(args.work)
    report: dict[str, Any] = {"args": vars(args), "uptime_before": uptime(), "cpus": os.cpu_count()}

    def save() -> None:  # after every stage, so a run stopped early keeps what it measured
        report["uptime_after"] = uptime()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    index = build_index(work / f"index-{args.backend}", args.backend)
    src = write_products(work / f"products-{args.n}", args.n, shard_rows=max(args.n // 4, 1))
    logger.info("in-process run over %d products", args.n)
    expected, load_s, tag_s = in_process(index, src, args.top_k)
    report["in_process"] = {"load_s": round(load_s, 2), "tag_s": round(tag_s, 2),
                            "products_per_s": round(args.n / tag_s, 1)}  # fmt: skip
    save()
    from tagindex.engines.shards import read_shards

    for workers in (1, 2):
        logger.info("Ray run, %d worker(s)", workers)
        out = work / f"out-{workers}"
        report[f"ray_{workers}"] = ray_run(index, src, out, workers, args.batch_size, args.top_k)
        report[f"ray_{workers}"]["correctness"] = compare(expected, list(read_shards(out)))
        save()
    r1, r2 = report["ray_1"], report["ray_2"]
    report["speedup_2_vs_1_workers"] = round(r2["products_per_s"] / r1["products_per_s"], 3)
    report["ray_1_vs_in_process"] = round(r1["products_per_s"] / report["in_process"]["products_per_s"], 3)
    if not args.no_resume:
        logger.info("kill and resume")
        report["kill_and_resume"] = kill_and_resume(
            index, src, work / "out-kill", args.batch_size // 2, set(expected)
        )
        save()
    report["gpu"] = gpu_check(index, src, work / "out-gpu")
    parse_rate = driver_parse_rate(src, args.batch_size)
    report["extrapolation"] = extrapolate(r1["products_per_s"], report["speedup_2_vs_1_workers"], parse_rate)
    save()
    if args.large:
        large_index = build_index(work / f"index-{args.large_backend}", args.large_backend)
        large_src = write_products(work / f"products-{args.large}", args.large, shard_rows=100_000)
        parse_rate = driver_parse_rate(large_src, args.large_batch_size)
        logger.info("large run: %d products", args.large)
        large = large_run(large_index, large_src, work / "out-large", 2, args.large_batch_size)
        report["large"] = {"backend": args.large_backend, **large}
    report["extrapolation"] = extrapolate(r1["products_per_s"], report["speedup_2_vs_1_workers"], parse_rate)
    save()
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    ip = report["in_process"]
    print(f"\n{'run':<22}{'products/s':>12}{'wall s':>10}{'identical':>11}{'same tags':>11}{'peak GiB':>10}")
    print(
        f"{'in-process, 1 thread':<22}{ip['products_per_s']:>12}{ip['tag_s']:>10}{'-':>11}{'-':>11}{'-':>10}"
    )
    for w in (1, 2):
        r = report[f"ray_{w}"]
        c = r["correctness"]
        print(f"{f'ray, {w} worker(s)':<22}{r['products_per_s']:>12}{r['run_s']:>10}"
              f"{c['identical_lines']:>11}{c['same_tag_lists']:>11}{r['peak_rss_tree_gib']:>10}")  # fmt: skip
    if "large" in report:
        lg = report["large"]
        print(f"{'large ' + str(lg['products']):<22}{lg['products_per_s']:>12}{lg['wall_s']:>10}"
              f"{'-':>11}{'-':>11}{lg['peak_rss_tree_gib']:>10}")  # fmt: skip
    print(f"\n2 vs 1 workers: {report['speedup_2_vs_1_workers']}x; Ray 1 worker / in-process: "
          f"{report['ray_1_vs_in_process']}; kill+resume ok: "
          f"{report.get('kill_and_resume', {}).get('ok', 'not run')}")  # fmt: skip
    for row in report["extrapolation"]["rows"]:
        print(
            f"100M on {row['nodes']} x {row['cores_per_node']} cores: "
            f"{row['hours_for_100M']} h ({row['bound']})"
        )
    print(f"load: {report['uptime_before']} -> {report['uptime_after']}")


if __name__ == "__main__":
    sys.exit(main())
