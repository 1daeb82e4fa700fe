"""Service parts in isolation: feedback store, encode batcher, readers-writer lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from tagindex.service.batching import EncodeBatcher
from tagindex.service.engine import RWLock
from tagindex.service.feedback import FeedbackRecord, FeedbackStore

from tagindex.config import EncoderParams
from tagindex.encoders import Encoder


def test_feedback_round_trip_and_reopen(tmp_path):
    path = tmp_path / "fb.sqlite3"
    store = FeedbackStore(path)
    stored = store.add(
        [
            FeedbackRecord("p1", "Silver ring", "rings", "accept", attributes={"metal": "silver"}, score=0.5),
            FeedbackRecord("p1", "Silver ring", "shoes", "reject"),
        ]
    )
    assert [r.id for r in stored] == [1, 2] and stored[0].created
    store.close()
    again = FeedbackStore(path)
    rows = list(again)
    assert [(r.tag, r.action, r.attributes, r.score) for r in rows] == [
        ("rings", "accept", {"metal": "silver"}, 0.5),
        ("shoes", "reject", {}, None),
    ]
    assert [r.tag for r in again.records(tag="shoes")] == ["shoes"] and again.count() == 2
    assert [r.id for r in again.records(after_id=1)] == [2]


def test_feedback_rejects_a_bad_batch_as_a_whole(tmp_path):
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    with pytest.raises(ValueError, match="action must be one of"):
        store.add([FeedbackRecord("p1", "t", "a", "accept"), FeedbackRecord("p1", "t", "b", "maybe")])
    assert store.count() == 0
    store._conn.execute("DROP TABLE feedback")  # simulate a broken database file
    with pytest.raises(sqlite3.Error):
        store.ping()


class _SlowEncoder(Encoder):
    """Deterministic stand-in that records batch sizes (isolates the batching logic)."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.params = EncoderParams(model="fake")
        self.calls: list[int] = []
        self.fail_on = fail_on

    @property
    def dim(self) -> int:
        return 4

    def encode(self, texts, show_progress=False):
        if self.fail_on in texts:
            raise RuntimeError("encoder failed")
        self.calls.append(len(texts))
        time.sleep(0.02)  # long enough for concurrent callers to queue up
        return np.array([[len(t), t.count("a"), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_batcher_merges_concurrent_calls_and_returns_each_its_rows():
    enc = _SlowEncoder()
    batcher = EncodeBatcher(enc, max_batch=64)
    texts = [["a" * i, "b" * i] for i in range(1, 33)]
    try:
        with ThreadPoolExecutor(32) as pool:
            out = list(pool.map(batcher.encode, texts))
    finally:
        batcher.close()
    for t, v in zip(texts, out, strict=True):
        assert v.shape == (2, 4) and v[0, 0] == len(t[0]) and v[1, 1] == 0
    assert sum(enc.calls) == 64 and len(enc.calls) < 32 and max(enc.calls) <= 64


def test_batcher_hands_a_failure_to_the_caller_and_keeps_working():
    batcher = EncodeBatcher(_SlowEncoder(fail_on="boom"))
    try:
        with pytest.raises(RuntimeError, match="encoder failed"):
            batcher.encode(["boom"])
        assert batcher.encode(["aa"]).tolist() == [[2.0, 2.0, 1.0, 0.0]]
    finally:
        batcher.close()


@pytest.mark.slow
def test_batched_vectors_equal_direct_vectors(svc_encoder):
    titles = ["Silver locket", "Men's running shoe size 10", "Organic green tea, 20 bags", "USB-C cable 2 m"]
    batcher = EncodeBatcher(svc_encoder)
    try:
        with ThreadPoolExecutor(4) as pool:
            got = np.concatenate(list(pool.map(lambda t: batcher.encode([t]), titles)))
    finally:
        batcher.close()
    assert np.allclose(got, svc_encoder.encode(titles), atol=1e-5)


def test_rwlock_lets_readers_share_and_writers_exclude():
    lock = RWLock()
    inside: list[str] = []
    log: list[tuple[str, int]] = []
    guard = threading.Lock()

    def reader() -> None:
        with lock.read():
            with guard:
                inside.append("r")
                log.append(("r", inside.count("w")))
            time.sleep(0.01)
            with guard:
                inside.remove("r")

    def writer() -> None:
        with lock.write():
            with guard:
                inside.append("w")
                log.append(("w", len(inside) - 1))  # anyone else inside?
            time.sleep(0.01)
            with guard:
                inside.remove("w")

    threads = [threading.Thread(target=writer if i % 4 == 0 else reader) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log) == 24 and all(others == 0 for _, others in log)


def test_feedback_exports_as_a_products_file_latest_judgement_wins(tmp_path):
    from tagindex.cli import main
    from tagindex.io import load_products

    store = FeedbackStore(tmp_path / "fb.sqlite3")
    store.add(
        [
            FeedbackRecord("p1", "Silver ring", "rings", "reject"),
            FeedbackRecord("p2", "Boots", "shoes", "add"),
        ]
    )
    store.add(
        [
            FeedbackRecord("p1", "Silver ring", "rings", "accept"),
            FeedbackRecord("p1", "Silver ring", "toys", "reject"),
        ]
    )
    store.close()
    out = tmp_path / "feedback.jsonl"
    assert main(["-q", "feedback", "--db", str(tmp_path / "fb.sqlite3"), "--out", str(out)]) == 0
    products = {p.id: p for p in load_products(out)}
    assert products["p1"].tags == ["rings"] and products["p2"].tags == ["shoes"]
    assert '"rejected": ["toys"]' in out.read_text()
    assert main(["-q", "feedback", "--db", str(tmp_path / "missing.sqlite3"), "--out", str(out)]) == 2


# ---- middleware and log filter, on a bare ASGI app (no model) ---------------------------------------
def _echo_app():
    """A Starlette app whose POST /echo answers the byte count it received."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from tagindex.service.middleware import AllowMiddleware, BodyLimitMiddleware

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"received": len(await request.body())})

    async def other(request: Request) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/echo", other, methods=["PUT"])])
    app.add_middleware(BodyLimitMiddleware, max_bytes=1_000)
    app.add_middleware(AllowMiddleware, routes=lambda: app.routes)
    return app


def test_body_limit_counts_the_bytes_received_whatever_the_headers_say():
    from starlette.testclient import TestClient

    client = TestClient(_echo_app())
    assert client.post("/echo", content=b"x" * 1_000).json() == {"received": 1_000}
    assert client.post("/echo", content=b"x" * 1_001).status_code == 413  # declared

    def chunks():
        yield b"x" * 600
        yield b"x" * 600

    r = client.post("/echo", content=chunks())  # chunked, no length
    assert r.status_code == 413 and "exceeds the limit of 1000 bytes" in r.text
    # A Content-Length that understates the body (as with Transfer-Encoding: chunked beside it).
    r = client.post("/echo", content=chunks(), headers={"Content-Length": "5"})
    assert r.status_code == 413
    assert client.post("/echo", content=b"x", headers={"Content-Length": "five"}).status_code == 400


def test_allow_lists_the_methods_of_every_route_on_the_path():
    from starlette.testclient import TestClient

    client = TestClient(_echo_app())
    r = client.options("/echo")
    assert r.status_code == 204 and r.headers["allow"] == "OPTIONS, POST, PUT"
    r = client.get("/echo")
    assert r.status_code == 405 and r.headers["allow"] == "OPTIONS, POST, PUT"


def test_secrets_are_blanked_in_access_log_lines():
    import logging

    from tagindex.service.middleware import RedactSecretsFilter

    f = RedactSecretsFilter(["s3cr3t-key"])
    # uvicorn's access line: client, method, path with query string, HTTP version, status
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/v1/feedback?api%5Fkey=abc&limit=1&Token=t&q=s3cr3t-key", "1.1", 401),
        None,
    )
    assert f.filter(record)
    line = record.getMessage()
    assert "/v1/feedback?api%5Fkey=[redacted]&limit=1&Token=[redacted]&q=[redacted]" in line
    assert "abc" not in line and "s3cr3t-key" not in line
