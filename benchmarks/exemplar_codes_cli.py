"""Exemplar codes through the real command line: ``tagindex index --products ... --exemplar-codes K``.

Where ``benchmarks/exemplar_scale.py`` measures the search structures in one process, this runs the
user's path end to end, one ``tagindex`` process per step, for each exemplar storage (``float32``,
the exact reference, then the codes asked for):

- **build**: ``tagindex index --tags MWPD --products EXEMPLARS --backend tokenlearn-static
  --exemplar-codes K --engine ray --num-workers W`` (tag encoding, Ray encoding of every exemplar,
  the zero-shot gate fit, code training, atomic save): wall time and peak RSS of the process tree
  (Ray actors included);
- **disk**: bytes of the saved index version, and of its exemplar files per exemplar;
- **load**: a fresh process that loads the index and builds its exemplar scorer (what ``tagindex tag``
  and the service do first): seconds and peak RSS (``ru_maxrss``), beside the same for the index
  without exemplars (the encoder and tags alone);
- **tag**: ``tagindex tag --index`` on ``--queries`` MWPD validation offers (title-only, never among
  the exemplars): wall time, and top-1 agreement of each coded index with the float32 index.

Exemplars: ``--n`` MWPD train offers resampled with perturbed titles (title-only; labels = the source
offer's tags), the set ``benchmarks/exemplar_scale.py`` encodes (same seed).

Example (what produced benchmarks/results/exemplar_codes_cli.json)::

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.exemplar_codes_cli --n 1000000 --queries 1000 \\
        --workers 2 --work /tmp/exemplar_codes_cli

Timings on a shared machine are distorted: the load average is recorded before and after each step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.exemplar_scale import load_offers, resampled
from benchmarks.scale_ray import RESULTS, TreeRSS, gib, uptime

logger = logging.getLogger("exemplar_codes_cli")
TAGINDEX = [sys.executable, "-m", "tagindex.cli"]

LOAD_SCRIPT = """
import json, resource, sys, time
start = time.perf_counter()
from tagindex.index import TagIndex
imported = time.perf_counter()
index = TagIndex.load(sys.argv[1])
index.scorer()
done = time.perf_counter()
print(json.dumps({"import_s": round(imported - start, 2), "load_s": round(done - imported, 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "exemplars": index.n_exemplars, "storage": index.exemplar_storage}))
"""


def write_inputs(work: Path, n: int, queries: int) -> tuple[Path, Path, Path]:
    """The tags, the ``n`` resampled labelled exemplars and the title-only queries, as files."""
    train, validation = load_offers(work)
    tags = work / "mwpd-converted" / "tags.jsonl"
    exemplars = work / f"exemplars-{n}.jsonl"
    if not exemplars.exists():
        chunks, source = resampled(train, n)
        tmp = exemplars.with_suffix(".tmp")
        with tmp.open("w") as f:
            row = 0
            for chunk in chunks:
                for p in chunk:
                    f.write(
                        json.dumps({"id": p.id, "title": p.title, "tags": train[int(source[row])].tags})
                        + "\n"
                    )
                    row += 1
        tmp.rename(exemplars)
    query_file = work / f"queries-{queries}.jsonl"
    query_file.write_text(
        "".join(json.dumps({"id": o.id, "title": o.title}) + "\n" for o in validation[:queries])
    )
    return tags, exemplars, query_file


def run_measured(cmd: list[str], log: Path) -> dict[str, Any]:
    """Runs ``cmd`` (output to ``log``): wall seconds and the peak RSS of its process tree."""
    before = uptime()
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        with TreeRSS(proc.pid) as rss:
            code = proc.wait()
    seconds = time.perf_counter() - start
    if code:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}; see {log}")
    # The tree's sum counts pages shared between processes (Ray's object store) once per process: an
    # upper bound; the command's own process alone is the lower one.
    return {"seconds": round(seconds, 1), "peak_tree_rss_gib": gib(rss.peak),
            "peak_command_rss_gib": gib(rss.peak_driver), "uptime_before": before,
            "uptime_after": uptime()}  # fmt: skip


def disk(index_dir: Path) -> dict[str, Any]:
    from tagindex.store import read_manifest

    manifest = read_manifest(index_dir, "tagindex", verify=False)
    root = manifest.root
    sizes = {p.name: p.stat().st_size for p in root.iterdir() if p.is_file()}
    exemplar_files = {
        k: v
        for k, v in sizes.items()
        if k.startswith("exemplar")  # codes or vectors, sums, the table
    }
    n = max(int(manifest["n_exemplars"]), 1)
    return {
        "index_bytes": sum(sizes.values()),
        "exemplar_files": exemplar_files,
        "exemplar_bytes_per_exemplar": round(sum(exemplar_files.values()) / n, 2),
        "vector_bytes_per_exemplar": round(
            (sizes.get("exemplar_codes.faiss") or sizes.get("exemplar_vectors.safetensors", 0)) / n, 2
        ),
        "exemplar_storage": manifest.get("exemplar_storage", {"kind": "float32"}),
    }


def load_rss(index_dir: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(index_dir)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def top1(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["id"]: (r["tags"][0]["tag"] if r["tags"] else "") for r in rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=1_000_000, help="resampled labelled exemplars")
    p.add_argument("--queries", type=int, default=1000, help="MWPD validation offers tagged")
    p.add_argument("--workers", type=int, default=2, help="Ray actors encoding the exemplars")
    p.add_argument(
        "--configs",
        default="ivf-sq8,ivf-pq:32,ivf-pq:16",
        help="storages besides float32: KIND or KIND:PQ_M (nprobe --nprobe, nlist --nlist)",
    )
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument(
        "--remeasure-load",
        metavar="LABEL",
        help="only load the indexes of an earlier run again (e.g. after a code change) and add the "
        "figures to --out as load_LABEL beside the first ones",
    )
    p.add_argument("--work", default="/tmp/exemplar_codes_cli")
    p.add_argument("--out", default=str(RESULTS / "exemplar_codes_cli.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.remeasure_load:
        earlier = json.loads(Path(args.out).read_text())
        earlier[f"bare_load_{args.remeasure_load}"] = load_rss(work / "index-bare")
        for earlier_row in earlier["runs"]:
            index_dir = Path(earlier_row["command"].split("--out ")[1].split()[0])
            earlier_row[f"load_{args.remeasure_load}"] = load_rss(index_dir)
            logger.info("%s: %s", earlier_row["storage"], earlier_row[f"load_{args.remeasure_load}"])
        earlier[f"uptime_{args.remeasure_load}"] = uptime()
        Path(args.out).write_text(json.dumps(earlier, indent=2) + "\n")
        return 0
    report: dict[str, Any] = {
        "args": vars(args),
        "uptime_before": uptime(),
        "cpus": os.cpu_count(),
        "runs": [],
    }

    def save() -> None:
        report["uptime_after"] = uptime()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    tags, exemplars, queries = write_inputs(work, args.n, args.queries)
    base = [*TAGINDEX, "-q", "index", "--tags", str(tags), "--backend", "tokenlearn-static"]
    # The index without exemplars: what loading costs before any exemplar.
    bare = work / "index-bare"
    if not (bare / "CURRENT").exists():
        subprocess.run([*base, "--out", str(bare)], check=True)
    report["bare_load"] = load_rss(bare)
    storages = [("float32", None)] + [
        (c.split(":")[0], int(c.split(":")[1]) if ":" in c else None) for c in args.configs.split(",") if c
    ]
    reference: dict[str, str] | None = None
    for kind, pq_m in storages:
        name = kind + (f" m={pq_m}" if pq_m else "")
        logger.info("building %s", name)
        out = work / ("index-" + name.replace(" ", "").replace("=", ""))
        cmd = [*base, "--products", str(exemplars), "--out", str(out), "--engine", "ray",
               "--num-workers", str(args.workers)]  # fmt: skip
        if kind != "float32":
            cmd += ["--exemplar-codes", kind, "--exemplar-nlist", str(args.nlist),
                    "--exemplar-nprobe", str(args.nprobe)]  # fmt: skip
            if pq_m:
                cmd += ["--exemplar-pq-m", str(pq_m)]
        row: dict[str, Any] = {"storage": name, "command": " ".join(cmd[2:])}
        row["build"] = run_measured(cmd, work / f"build-{out.name}.log")
        row["disk"] = disk(out)
        row["load"] = load_rss(out)
        run = work / f"run-{out.name}.jsonl"
        row["tag"] = run_measured(
            [
                *TAGINDEX,
                "-q",
                "tag",
                "--index",
                str(out),
                "--products",
                str(queries),
                "--out",
                str(run),
                "--top-k",
                "1",
            ],  # fmt: skip
            work / f"tag-{out.name}.log",
        )
        got = top1(run)
        if reference is None:
            reference = got
        row["top1_agreement_with_float32"] = round(
            sum(got[i] == reference[i] for i in reference) / max(len(reference), 1), 4
        )
        report["runs"].append(row)
        logger.info("%s", json.dumps(row))
        save()
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    bare = report["bare_load"]
    print(f"\n{report['args']['n']:,} exemplars through `tagindex index` (--engine ray, "
          f"{report['args']['workers']} workers); index without exemplars loads in "
          f"{bare['load_s']} s at {bare['peak_rss_mib']} MiB")  # fmt: skip
    print(f"{'storage':<14}{'build s':>9}{'build GiB':>10}{'disk MB':>9}{'B/exemplar':>11}{'vec B/ex':>9}"
          f"{'load s':>8}{'load MiB':>9}{'tag s':>7}{'top-1 agr':>10}")  # fmt: skip
    for r in report["runs"]:
        print(
            f"{r['storage']:<14}{r['build']['seconds']:>9}{r['build']['peak_tree_rss_gib']:>10}"
            f"{r['disk']['index_bytes'] / 1e6:>9.1f}{r['disk']['exemplar_bytes_per_exemplar']:>11}"
            f"{r['disk']['vector_bytes_per_exemplar']:>9}{r['load']['load_s']:>8}{r['load']['peak_rss_mib']:>9}"
            f"{r['tag']['seconds']:>7}{r['top1_agreement_with_float32']:>10}"
        )
    print(f"load: {report['uptime_before']} -> {report['uptime_after']}")


if __name__ == "__main__":
    sys.exit(main())
