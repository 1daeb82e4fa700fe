"""Hostile-traffic checks of the HTTP service (issue #16): a long fuzzing campaign and an RSS check.

``fuzz``: runs seeded schemathesis rounds (all operations; examples, coverage and fuzzing phases; with
the API key so writes are reached) against one server process until it has answered at least
``--requests`` requests, then reports the server's own count of answers by status (its Prometheus
counter), so 5xx answers are counted by the server, not inferred by the fuzzer.

``rss``: sends ``--requests`` hostile requests to one server process (distinct ``min_score`` values for
the duplicates scan, bodies near and over the size limit, chunked bodies over it, unknown and invalid
tag ids, 64-bit overflows, deeply nested JSON) and reports its resident memory before and after
(goal: flat within 10%).

Both serve a copy of an index built from the MWPD vocabulary (394 GS1 tags, packaged MiniLM) with
``uvicorn --factory tagindex.service.app:create_app``, and record machine load before and after.

Example:
    python -m benchmarks.service_hostile fuzz --requests 20000 --seed 1129
    python -m benchmarks.service_hostile rss --requests 10000 --seed 1129
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
API_KEY = "hostile-benchmark-key"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("check", choices=["fuzz", "rss"])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="folder holding mwpd/")
    p.add_argument("--requests", type=int, default=None, help="fuzz: 20000; rss: 10000")
    p.add_argument("--seed", type=int, default=1129)
    p.add_argument("--examples", type=int, default=400, help="fuzz: schemathesis --max-examples per round")
    p.add_argument("--clients", type=int, default=4, help="rss: concurrent client threads")
    p.add_argument("--out", help="JSON result (default: benchmarks/results/service_<check>.json)")
    return p.parse_args(argv)


# ---- the served index and server -----------------------------------------------------------------------
def build_index(data: Path, work: Path) -> Path:
    """The MWPD vocabulary indexed with the packaged MiniLM (built once per run)."""
    from tagindex.convert import convert
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    convert("mwpd", data / "mwpd", work / "mwpd")
    out = work / "index"
    TagIndex.build(load_tags(work / "mwpd" / "tags.jsonl")).save(out)
    return out


class Server:
    """One uvicorn process serving ``index``; its pid gives its RSS."""

    def __init__(self, index: Path, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "TAGINDEX_INDEX_DIR": str(index),
            "TAGINDEX_API_KEY": API_KEY,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
        }
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tagindex.service.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.close()
        raise RuntimeError(f"server not ready in 300 s; see {log}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def answers_by_status(self) -> dict[int, int]:
        """The server's own count of answers, by status (``tagindex_http_requests_total``)."""
        counts: dict[int, int] = {}
        for line in httpx.get(f"{self.url}/metrics", timeout=30).text.splitlines():
            if line.startswith("tagindex_http_requests_total{"):
                labels, value = line.rsplit(" ", 1)
                status = int(labels.split('status="', 1)[1].split('"', 1)[0])
                counts[status] = counts.get(status, 0) + int(float(value))
        return counts

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---- fuzz ----------------------------------------------------------------------------------------------
def run_fuzz(server: Server, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    target = args.requests or 20_000
    rounds = []
    seed = args.seed
    while sum(server.answers_by_status().values()) < target:
        cmd = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "--seed",
            str(seed),
            "--max-examples",
            str(args.examples),
            "--phases",
            "examples,coverage,fuzzing",
            "--checks",
            "not_a_server_error",
            "--header",
            f"X-API-Key: {API_KEY}",
            "--workers",
            "2",
            "--no-shrink",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "60",
        ]
        start = time.perf_counter()
        run = subprocess.run(
            cmd, cwd=work, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}
        )
        rounds.append(
            {
                "seed": seed,
                "exit_code": run.returncode,
                "seconds": round(time.perf_counter() - start, 1),
                "answered_so_far": sum(server.answers_by_status().values()),
                "summary": run.stdout.strip().splitlines()[-3:],
            }
        )
        print(
            f"round seed={seed}: exit {run.returncode}, {rounds[-1]['answered_so_far']} answered", flush=True
        )
        seed += 1
    by_status = server.answers_by_status()
    return {
        "requests_answered": sum(by_status.values()),
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "server_errors_5xx": sum(v for k, v in by_status.items() if k >= 500),
        "rounds": rounds,
        "schemathesis_examples_per_round": args.examples,
    }


# ---- rss -----------------------------------------------------------------------------------------------
def hostile_requests(n: int, seed: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx keyword arguments) for ``n`` hostile requests, a seeded mix."""
    rng = random.Random(seed)
    key = {"X-API-Key": API_KEY}
    big_title = "x" * 900_000  # under the 1 MB body limit, over the 20,000-character field limit
    for i in range(n):
        kind = i % 10
        if kind in (0, 1, 2):  # distinct min_score, unauthenticated: the cache must stay bounded
            yield "GET", "/v1/tags/duplicates", {"params": {"min_score": rng.uniform(0.5, 1.0), "limit": 1}}
        elif kind == 3:
            yield "POST", "/v1/tag", {"json": {"product": {"title": big_title}}}
        elif kind == 4:  # over the limit: declared, and chunked without a length
            if rng.random() < 0.5:
                yield (
                    "POST",
                    "/v1/tag",
                    {"content": b" " * 1_100_000, "headers": {"Content-Type": "application/json"}},
                )
            else:
                yield "POST", "/v1/tag", {"content": iter([b" " * 200_000] * 6)}
        elif kind == 5:
            bad = "".join(rng.choice("abc/%.. \t\x7f") for _ in range(rng.randint(1, 40)))
            yield "GET", f"/v1/tags/{quote(bad, safe='/')}/similar", {}
        elif kind == 6:
            tag = {"id": f"bad id {i}\t", "name": " ", "synonyms": ["s"] * 150_000}
            yield "POST", "/v1/tags", {"json": {"tags": [tag]}, "headers": key}
        elif kind == 7:
            yield "GET", "/v1/feedback", {"params": {"after_id": 2**63 + i}, "headers": key}
        elif kind == 8:
            depth = rng.randint(1_000, 20_000)
            yield (
                "POST",
                "/v1/tag",
                {"content": b"[" * depth + b"]" * depth, "headers": {"Content-Type": "application/json"}},
            )
        else:
            body = {
                "product": {"title": f"hostile {i}"},
                "judgements": [{"tag": f"no-such-{i}", "action": "add"}],
            }
            yield "POST", "/v1/feedback", {"json": body, "headers": key}


def run_rss(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    n = args.requests or 10_000
    with httpx.Client(base_url=server.url, timeout=60) as client:  # warm-up: allocator and caches settle
        for i in range(300):
            client.post("/v1/tag", json={"product": {"title": f"warm-up product {i}"}})
            client.get("/v1/tags/duplicates", params={"min_score": 0.9, "limit": 1})
    before = server.rss_mb()
    statuses: dict[int, int] = {}
    requests = list(hostile_requests(n, args.seed))
    start = time.perf_counter()

    def send(chunk: list[tuple[str, str, dict[str, Any]]]) -> dict[int, int]:
        counts: dict[int, int] = {}
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for method, path, kwargs in chunk:
                try:
                    status = client.request(method, path, **kwargs).status_code
                except httpx.TransportError:  # the server may close a connection after a 413
                    status = 0
                counts[status] = counts.get(status, 0) + 1
        return counts

    chunks = [requests[i :: args.clients] for i in range(args.clients)]
    with ThreadPoolExecutor(args.clients) as pool:
        for counts in pool.map(send, chunks):
            for k, v in counts.items():
                statuses[k] = statuses.get(k, 0) + v
    seconds = time.perf_counter() - start
    after = server.rss_mb()
    return {
        "requests": n,
        "seconds": round(seconds, 1),
        "client_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "rss_mb_before": round(before, 1),
        "rss_mb_after": round(after, 1),
        "rss_change": round(after / before - 1, 4),
        "flat_within_10pct": abs(after / before - 1) <= 0.10,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out or RESULTS / f"service_{args.check}.json")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tagindex-hostile-") as tmp:
        work = Path(tmp)
        index = build_index(Path(args.data), work)
        server = Server(index, work / "server.log")
        try:
            result = run_fuzz(server, args, work) if args.check == "fuzz" else run_rss(server, args)
            result["server_rss_mb_end"] = round(server.rss_mb(), 1)
        finally:
            server.close()
            log_tail = (work / "server.log").read_text(errors="replace")[-2000:]
        if args.check == "fuzz":
            shutil.rmtree(work / ".hypothesis", ignore_errors=True)
    result = {
        "check": args.check,
        "seed": args.seed,
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.service_hostile", *(argv or sys.argv[1:])]
        ),
        "index": "MWPD vocabulary (394 tags), packaged MiniLM",
        **result,
        "server_log_tail": log_tail,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine_note": "shared 2-core machine; counts, not timings, are the result",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    shown = {k: v for k, v in result.items() if k not in ("rounds", "server_log_tail")}
    print("\n".join(f"{k:>24}  {v}" for k, v in shown.items()))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
