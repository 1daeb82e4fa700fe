"""A real ``tagindex serve`` process on loopback, spoken to over HTTP, stopped and started again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from service_support import API_KEY, KEY, REPO

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m tagindex.cli serve`` in a subprocess, waited on until /readyz answers 200."""

    def __init__(self, index_dir: Path, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TAGINDEX_API_KEY": API_KEY, "PYTHONPATH": str(REPO)}
        self.path = log
        self.log_start = log.stat().st_size if log.exists() else 0
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tagindex.cli",
                "serve",
                "--index",
                str(index_dir),
                "--port",
                str(self.port),
                *extra,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server not ready in 180 s; see {log}")

    def stop(self) -> bool:
        """SIGTERM; True when uvicorn shut the app down cleanly (it then re-raises the signal)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return (
            code in (0, -signal.SIGTERM)
            and b"Application shutdown complete" in self.path.read_bytes()[self.log_start :]
        )


def test_serve_over_http_then_restart(index_dir, sample_products, tmp_path):
    log = tmp_path / "server.log"
    server = Server(index_dir, log)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            one = http.post("/v1/tag", json={"product": sample_products[0], "top_k": 5})
            assert one.status_code == 200, one.text
            assert one.json()["results"][0]["id"] == sample_products[0]["id"]

            # Concurrent requests share encoder batches; each must still get its own answer.
            def tag(p: dict) -> list[str]:
                r = http.post("/v1/tag", json={"product": p, "top_k": 3})
                assert r.status_code == 200, r.text
                return [t["tag"] for t in r.json()["results"][0]["tags"]]

            with ThreadPoolExecutor(8) as pool:
                concurrent = list(pool.map(tag, sample_products[:16]))
            batch = http.post("/v1/tag", json={"products": sample_products[:16], "top_k": 3}).json()[
                "results"
            ]
            assert concurrent == [[t["tag"] for t in r["tags"]] for r in batch]

            new = {"id": "custom_Lockets", "name": "Lockets", "parent": "64010100_Jewellery"}
            assert http.post("/v1/tags", json={"tags": [new]}, headers=KEY).status_code == 201
            hits = http.post("/v1/tags/similar", json={"text": "lockets", "top_k": 1}).json()["tags"]
            assert hits[0]["tag"] == "custom_Lockets"
            fb = {"product": sample_products[1], "judgements": [{"tag": "custom_Lockets", "action": "add"}]}
            assert http.post("/v1/feedback", json=fb, headers=KEY).status_code == 201
            assert 'route="/v1/tag",status="200"' in http.get("/metrics").text
    finally:
        assert server.stop()  # graceful shutdown on SIGTERM

    server = Server(index_dir, log)  # the restart
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            rows = http.get("/v1/feedback", headers=KEY).json()["rows"]
            assert [(r["product_id"], r["tag"], r["action"]) for r in rows] == [
                (sample_products[1]["id"], "custom_Lockets", "add")
            ]
            assert http.get("/v1/tags/custom_Lockets").json()["path"][-1] == "Lockets"
            assert http.get("/v1/info").json()["index"]["n_tags"] == 395
    finally:
        assert server.stop()


def test_serve_refuses_a_missing_index_with_a_clear_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tagindex.cli", "serve", "--index", str(tmp_path / "nope"), "--port", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    # the store's message for a missing directory (the versioned layout has no top-level manifest.json)
    assert (
        "tagindex serve: error:" in proc.stderr
        and "nope: not found (expected a saved tagindex)" in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_serve_with_reranker_and_calibration_over_http(
    stage_index_dir, sample_products, stage_files, tmp_path
):
    """``tagindex serve --reranker --rerank-depth --calibration``: concurrent reranked requests over real
    HTTP give the answers sequential ones give; bounds are 422; a mismatched pair never starts."""
    extra = (
        "--reranker",
        str(stage_files["reranker"]),
        "--rerank-depth",
        "6",
        "--calibration",
        str(stage_files["calibration"]),
    )
    server = Server(stage_index_dir, tmp_path / "server.log", extra)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            info = http.get("/v1/info").json()
            assert info["stage"]["rerank_depth"] == 6 and info["decider"] == "calibrated"

            def tag(p: dict) -> dict:
                r = http.post("/v1/tag", json={"product": p, "top_k": 8, "decide": True})
                assert r.status_code == 200, r.text
                return r.json()

            sequential = [tag(p) for p in sample_products[:10]]
            with ThreadPoolExecutor(8) as pool:
                concurrent = list(pool.map(tag, sample_products[:10]))
            for a, b in zip(sequential, concurrent, strict=True):
                assert a["reranked"] and a["rerank_depth"] == 6
                ra, rb = a["results"][0], b["results"][0]
                assert [t["tag"] for t in ra["tags"]] == [t["tag"] for t in rb["tags"]]
                for x, y in zip(ra["tags"], rb["tags"], strict=True):
                    if x["rerank_score"] is None:
                        assert y["rerank_score"] is None
                    else:
                        assert y["rerank_score"] == pytest.approx(x["rerank_score"], abs=1e-4)
                assert all(t["rerank_score"] is not None for t in ra["tags"][:6])
                assert all(t["rerank_score"] is None for t in ra["tags"][6:])
                assert [x["tag"] for x in ra["assigned"]] == [x["tag"] for x in rb["assigned"]]
            too_deep = http.post("/v1/tag", json={"product": sample_products[0], "rerank_depth": 101})
            assert too_deep.status_code == 422 and "outside 1..100" in too_deep.text
    finally:
        assert server.stop()

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "tagindex.cli", "serve", "--index", str(stage_index_dir), "--port", "1"]
    cmd += [
        "--reranker",
        str(stage_files["other_reranker"]),
        "--calibration",
        str(stage_files["calibration"]),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tagindex serve: error: the calibration was fitted for reranker" in proc.stderr
