"""The load test's requests: rerank variants ask for exactly what the table's rows say."""

from __future__ import annotations

import pytest

pytest.importorskip("httpx")

from benchmarks.load_service import make_request, parse_args, rerank_fields  # noqa: E402

PRODUCTS = [{"id": str(i), "title": f"product {i}", "description": ""} for i in range(5)]


def test_rerank_variants_set_the_request_fields() -> None:
    assert rerank_fields(None, served_reranker=False) == {}  # a server without reranker: plain requests
    assert rerank_fields(None, served_reranker=True) == {"rerank": False}  # rerank is on by default there
    assert rerank_fields(20, served_reranker=True) == {"rerank_depth": 20}


def test_requests_carry_the_variant() -> None:
    args = parse_args(["--index", "x", "--products", "y", "--batch-size", "3", "--top-k", "7"])
    assert args.rerank_depths == [10, 20] and args.reranker is None
    method, path, body, n = make_request("tag_single", 6, PRODUCTS, [], args, {"rerank_depth": 10})
    assert (method, path, n) == ("POST", "/v1/tag", 1)
    assert body == {"product": PRODUCTS[1], "top_k": 7, "rerank_depth": 10}
    _, _, body, n = make_request("tag_batch", 1, PRODUCTS, [], args, {"rerank": False})
    assert n == 3 and body["rerank"] is False and [p["id"] for p in body["products"]] == ["3", "4", "0"]
    _, path, body, n = make_request("similar_text", 0, PRODUCTS, [], args, {"rerank_depth": 10})
    assert path == "/v1/tags/similar" and "rerank_depth" not in body and n == 0
