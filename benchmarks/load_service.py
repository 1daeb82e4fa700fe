"""Load test of the HTTP service: latency percentiles and throughput on loopback, for bounded time.

Starts ``tagindex serve`` on a copy of the given index (or uses ``--url``), then for each scenario
(single-product /v1/tag, batch /v1/tag, similar tags by id, similar tags by text) and each concurrency
level runs closed-loop async clients (httpx) for ``--duration`` seconds and records every request's
latency. Prints a table and writes JSON under benchmarks/results/.

The client shares the machine with the server (2 cores here); its own CPU use is part of what is
measured, as it would be for a co-located caller. Machine load before and after is recorded, since
other processes on a shared machine move these figures.

With ``--reranker DIR`` (and optionally ``--calibration FILE``) the server gets the rerank stage and the
tagging scenarios run once without rerank (``"rerank": false``) and once per ``--rerank-depths`` K
(``"rerank_depth": K``), so the table compares them under the same load.

Example:
    python benchmarks/load_service.py --index work/mwpd-index --products work/mwpd/validation.jsonl \
        --duration 20 --out benchmarks/results/service_load_mwpd.json
    python benchmarks/load_service.py --index work/mwpd-index --products work/mwpd/validation.jsonl \
        --reranker work/mwpd-reranker --calibration work/mwpd-calibration.json --rerank-depths 10 20 \
        --duration 8 --out benchmarks/results/service_load_rerank.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--index", required=True, help="index directory (a copy is served, never changed)")
    p.add_argument("--products", required=True, help="products file (JSONL from `tagindex convert`)")
    p.add_argument("--url", help="use this running server instead of starting one")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per scenario and concurrency")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded requests first")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--batch-size", type=int, default=16, help="products per batch request")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument(
        "--scenarios",
        nargs="+",
        default=["tag_single", "tag_batch", "similar_tag", "similar_text"],
        choices=["tag_single", "tag_batch", "similar_tag", "similar_text"],
    )
    p.add_argument("--n-products", type=int, default=1000, help="distinct products cycled through")
    p.add_argument("--reranker", help="reranker directory: serve with it and compare with/without rerank")
    p.add_argument("--calibration", help="calibration file served with the reranker (assigned tags)")
    p.add_argument("--rerank-depths", type=int, nargs="+", default=[10, 20], help="rerank depths K compared")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "service_load.json"))
    return p.parse_args(argv)


def load_products(path: str, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(out) >= n:
                break
            r = json.loads(line)
            out.append({"id": str(r["id"]), "title": r["title"], "description": r.get("description", "")})
    if not out:
        raise SystemExit(f"{path}: no products")
    return out


class ServedIndex:
    """``tagindex serve`` on a temporary copy of the index, on a free loopback port."""

    def __init__(self, index: str, extra: list[str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tagindex-load-"))
        shutil.copytree(index, self.tmp / "index")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TAGINDEX_API_KEY": secrets.token_urlsafe(16), "PYTHONPATH": str(REPO)}
        self.log = (self.tmp / "server.log").open("wb")
        cmd = [sys.executable, "-m", "tagindex.cli", "-q", "serve", "--index", str(self.tmp / "index")]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port), *(extra or [])],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {(self.tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.close()
        raise SystemExit("server not ready within 300 s")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rerank_fields(depth: int | None, served_reranker: bool) -> dict[str, Any]:
    """Request fields of a rerank variant: a depth K, or rerank off (explicitly when a reranker is
    served, since it is then on by default)."""
    if depth is not None:
        return {"rerank_depth": depth}
    return {"rerank": False} if served_reranker else {}


def make_request(
    scenario: str,
    i: int,
    products: list[dict[str, Any]],
    tag_ids: list[str],
    args: argparse.Namespace,
    rerank: dict[str, Any] | None = None,
):
    """(method, path, json body, products in the request) for request number ``i``."""
    rerank = rerank or {}
    if scenario == "tag_single":
        return "POST", "/v1/tag", {"product": products[i % len(products)], "top_k": args.top_k, **rerank}, 1
    if scenario == "tag_batch":
        start = (i * args.batch_size) % len(products)
        batch = (products * 2)[start : start + args.batch_size]
        return "POST", "/v1/tag", {"products": batch, "top_k": args.top_k, **rerank}, len(batch)
    if scenario == "similar_tag":
        tag = tag_ids[i % len(tag_ids)]
        return "GET", f"/v1/tags/{quote(tag, safe='/')}/similar?top_k={args.top_k}", None, 0
    return "POST", "/v1/tags/similar", {"text": products[i % len(products)]["title"], "top_k": args.top_k}, 0


async def run_level(
    url: str,
    scenario: str,
    concurrency: int,
    products: list[dict[str, Any]],
    tag_ids: list[str],
    args: argparse.Namespace,
    server_pid: int | None = None,
    rerank_depth: int | None = None,
    served_reranker: bool = False,
) -> dict[str, Any]:
    """Closed loop: ``concurrency`` clients each send the next request as soon as the last returns."""
    rerank = rerank_fields(rerank_depth, served_reranker)
    latencies: list[float] = []
    server_ms: list[float] = []
    errors: dict[str, int] = {}
    counter = 0
    n_products = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker(record_from: float, stop_at: float) -> None:
            nonlocal counter, n_products
            while time.perf_counter() < stop_at:
                i = counter
                counter += 1
                method, path, body, n = make_request(scenario, i, products, tag_ids, args, rerank)
                start = time.perf_counter()
                r: httpx.Response | None = None
                try:
                    r = await client.request(method, path, json=body)
                    status = str(r.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - start
                if start < record_from:
                    continue
                if status != "200":
                    errors[status] = errors.get(status, 0) + 1
                    continue
                latencies.append(elapsed)
                n_products += n
                if r is not None and scenario.startswith("tag"):
                    server_ms.append(r.json()["elapsed_ms"])

        now = time.perf_counter()
        record_from = now + args.warmup
        stop_at = record_from + args.duration
        cpu: list[float | None] = []

        async def sample_cpu() -> None:  # server CPU time over exactly the recorded window
            await asyncio.sleep(max(record_from - time.perf_counter(), 0))
            cpu.append(cpu_seconds(server_pid))
            await asyncio.sleep(max(stop_at - time.perf_counter(), 0))
            cpu.append(cpu_seconds(server_pid))

        await asyncio.gather(sample_cpu(), *(worker(record_from, stop_at) for _ in range(concurrency)))
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    row: dict[str, Any] = {
        "scenario": scenario,
        "rerank_depth": rerank_depth,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": args.duration,
        "throughput_rps": round(len(latencies) / args.duration, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "mean_ms": round(float(lat.mean()), 2),
        "max_ms": round(float(lat.max()), 2),
    }
    if cpu and cpu[0] is not None and cpu[1] is not None and latencies:
        # Load-independent cost: on an idle core a lone request takes about this long.
        row["server_cpu_ms_per_request"] = round((cpu[1] - cpu[0]) * 1000 / len(latencies), 2)
    if scenario.startswith("tag"):
        row["products_per_s"] = round(n_products / args.duration, 2)
        row["server_p50_ms"] = round(float(np.percentile(server_ms, 50)), 2) if server_ms else None
    if scenario == "tag_batch":
        row["batch_size"] = args.batch_size
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    products = load_products(args.products, args.n_products)
    extra = []
    if args.reranker:
        extra += ["--reranker", args.reranker]
    if args.calibration:
        extra += ["--calibration", args.calibration]
    server = None if args.url else ServedIndex(args.index, extra)
    url = args.url or server.url  # type: ignore[union-attr]
    load_before = os.getloadavg()
    rows = []
    try:
        info = httpx.get(f"{url}/v1/info", timeout=30).json()
        tag_ids = [t["id"] for t in httpx.get(f"{url}/v1/tags", params={"limit": 1000}, timeout=30).json()]
        served_reranker = bool((info.get("stage") or {}).get("reranker"))
        if args.reranker and not served_reranker:
            raise SystemExit("the server does not report a reranker (see its log)")
        for scenario in args.scenarios:
            depths = [None, *args.rerank_depths] if served_reranker and scenario.startswith("tag") else [None]
            for depth, c in [(d, c) for d in depths for c in args.concurrency]:
                pid = server.proc.pid if server is not None else None
                row = asyncio.run(
                    run_level(url, scenario, c, products, tag_ids, args, pid, depth, served_reranker)
                )
                rows.append(row)
                rerankable = served_reranker and scenario.startswith("tag")
                label = scenario + (f" K={depth}" if depth else (" no-rerank" if rerankable else ""))
                print(
                    f"{label:21s} c={c:<3d} n={row['requests']:<6d} p50 {row['p50_ms']:8.1f} ms  "
                    f"p95 {row['p95_ms']:8.1f}  p99 {row['p99_ms']:8.1f}  {row['throughput_rps']:8.1f} req/s"
                    + (f"  {row['products_per_s']:8.1f} products/s" if "products_per_s" in row else "")
                    + (f"  server p50 {row['server_p50_ms']:.1f} ms" if row.get("server_p50_ms") else "")
                    + (
                        f"  server CPU {row['server_cpu_ms_per_request']:.1f} ms/req"
                        if "server_cpu_ms_per_request" in row
                        else ""
                    )
                    + (f"  errors {row['errors']}" if row["errors"] else ""),
                    flush=True,
                )
    finally:
        if server is not None:
            server.close()
    load_after = os.getloadavg()
    single = next(
        (
            r
            for r in rows
            if r["scenario"] == "tag_single" and r["concurrency"] == 1 and r["rerank_depth"] is None
        ),
        None,
    )
    result = {
        "benchmark": "service_load",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "index": info["index"],
        "products_file": args.products,
        "top_k": args.top_k,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        },
        "goal": {"scenario": "tag_single c=1", "p50_ms": 15, "p99_ms": 50},
        "goal_met": None if single is None else bool(single["p50_ms"] <= 15 and single["p99_ms"] <= 50),
        "rerank": {
            "stage": info.get("stage"),
            "reranker_dir": args.reranker,
            "calibration": args.calibration,
            "depths": args.rerank_depths if served_reranker else [],
        }
        if served_reranker
        else "not measured: no --reranker given",
        "rows": rows,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
