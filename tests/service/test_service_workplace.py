"""The page's workplace endpoints over HTTP: duplicates with evidence and background scans, product
upload, decision export and the taxonomy tree. Bad input is a 4xx with the reason, never a 500."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from service_support import KEY, make_settings

CSV = (
    "Handle,Title,Body (HTML),Vendor\n"
    "locket,Silver heart locket,<p>Engraved <b>sterling</b> locket</p>,Acme\n"
    "broken,,no title,Acme\n"
    "boots,Leather hiking boots,Waterproof boots,Acme\n"
    "locket,Repeated handle,again,Acme\n"
)
MAP = {"filename": "shop.csv", "id_col": "Handle", "title_col": "Title", "description_col": "Body (HTML)"}


def _is_family(p: dict) -> bool:
    a, b = p["a_path"], p["b_path"]
    shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
    return longer[: len(shorter)] == shorter and p["a"] != p["b"]


# ---- duplicates ----------------------------------------------------------------------------------------
def test_duplicates_leave_out_family_and_siblings_and_rank_by_evidence(client):
    body = client.get("/v1/tags/duplicates", params={"min_score": 0.9, "limit": 10_000}).json()
    pairs = body["pairs"]
    assert body["total"] == len(pairs) > 0 and body["include_siblings"] is False
    by_id = {t["id"]: t for t in client.get("/v1/tags", params={"limit": 1000}).json()}
    for p in pairs:
        assert p["relation"] == "other" and p["score"] >= 0.9 and p["a"] < p["b"]
        assert by_id[p["a"]]["parent"] != by_id[p["b"]]["parent"] or by_id[p["a"]]["parent"] is None
        assert set(p) >= {"a_name", "b_name", "a_path", "b_path", "evidence", "reasons", "names_equal"}
    assert not any(_is_family(p) for p in pairs)  # GS1's "Footwear" > "Footwear" is gone
    assert [p["evidence"] for p in pairs] == sorted((p["evidence"] for p in pairs), reverse=True)
    with_siblings = client.get(
        "/v1/tags/duplicates", params={"min_score": 0.9, "limit": 10_000, "include_siblings": True}
    ).json()
    assert {p["relation"] for p in with_siblings["pairs"]} == {"other", "sibling"}


def test_a_background_scan_reports_progress_then_answers_from_the_cache(client):
    params = {"min_score": 0.91}
    assert client.get("/v1/tags/duplicates/scan", params=params).json()["state"] == "idle"
    first = client.post("/v1/tags/duplicates/scan", params=params)
    assert first.status_code in (200, 202)
    deadline = time.monotonic() + 60
    job = first.json()
    while job["state"] == "running":
        assert 0 <= job["done"] <= job["total"] == 394
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.get("/v1/tags/duplicates/scan", params=params).json()
    assert job["state"] == "ready" and job["done"] == job["total"] and job["pairs"] >= 0
    again = client.post("/v1/tags/duplicates/scan", params=params)
    assert again.status_code == 200 and again.json()["state"] == "ready"
    listed = client.get("/v1/tags/duplicates", params={**params, "limit": 1}).json()
    assert listed["total"] == job["pairs"]
    # A vocabulary change starts a new version: no scan for it yet.
    added = client.post("/v1/tags", json={"tags": [{"id": "new-x", "name": "Brand new thing"}]}, headers=KEY)
    assert added.status_code == 201
    fresh = client.get("/v1/tags/duplicates/scan", params=params).json()
    assert fresh["state"] == "idle" and fresh["index_version"] == job["index_version"] + 1


# ---- upload ------------------------------------------------------------------------------------------
def test_upload_maps_columns_strips_html_and_lists_the_rows_left_out(client):
    r = client.post("/v1/products/upload", params=MAP, content=CSV.encode())
    assert r.status_code == 200, r.text
    body = r.json()
    assert [p["id"] for p in body["products"]] == ["locket", "boots"]
    assert body["products"][0]["description"] == "Engraved sterling locket"
    assert body["skipped"] == 2 and [e["where"] for e in body["errors"]] == ["shop.csv:3", "shop.csv:5"]
    assert "duplicate id 'locket'" in body["errors"][1]["reason"]
    assert body["columns"] == ["Handle", "Title", "Body (HTML)", "Vendor"]
    jsonl = "\n".join(json.dumps({"id": i, "title": f"Product {i}"}) for i in range(3))
    r = client.post("/v1/products/upload", params={"filename": "p.jsonl"}, content=jsonl.encode())
    assert r.status_code == 200 and r.json()["count"] == 3


@pytest.mark.parametrize(
    ("params", "content", "reason"),
    [
        ({"filename": "shop.csv"}, CSV.encode(), "missing required column 'id'); columns: Handle, Title"),
        ({"filename": "shop.xlsx"}, CSV.encode(), "unknown file type '.xlsx'"),
        ({"filename": "shop.csv"}, b"   \n", "the file is empty"),
        ({"filename": "shop.csv"}, b"\xff\xfeid,title\n", "not valid UTF-8"),
        (
            {"filename": "p.jsonl"},
            b'[1, 2]\n{"id"',
            "no valid product rows (first: p.jsonl:1: expected a JSON",
        ),
        ({**MAP, "id_col": "Nope"}, CSV.encode(), "missing column 'Nope' (mapped to 'id')"),
        ({"filename": "shop.csv", "format": "xml"}, CSV.encode(), "Input should be 'csv', 'jsonl'"),
        ({"filename": "x\x00/..\\evil.csv"}, b"id,title\n", "no valid product rows"),
    ],
)
def test_upload_refusals_say_why(client, params, content, reason):
    r = client.post("/v1/products/upload", params=params, content=content)
    assert r.status_code == 422, r.text
    assert reason in json.dumps(r.json()["detail"])


def test_upload_limits(index_dir, svc_encoder):
    from fastapi.testclient import TestClient
    from tagindex.service.app import create_app

    settings = make_settings(index_dir, max_upload_products=2, max_body_bytes=2_000)
    with TestClient(create_app(settings, encoder=svc_encoder)) as c:
        rows = "id,title\n" + "".join(f"{i},Product {i}\n" for i in range(3))
        r = c.post("/v1/products/upload", params={"filename": "p.csv"}, content=rows.encode())
        assert r.status_code == 422 and "at most 2 per upload" in r.json()["detail"]
        r = c.post("/v1/products/upload", params={"filename": "p.csv"}, content=b"id,title\n" + b"x" * 3_000)
        assert r.status_code == 413


# ---- export ------------------------------------------------------------------------------------------
def _judge(client, product_id: str, tag: str, action: str) -> int:
    body = {
        "product": {"id": product_id, "title": f"Title of {product_id}"},
        "judgements": [{"tag": tag, "action": action}],
    }
    r = client.post("/v1/feedback", json=body, headers=KEY)
    assert r.status_code == 201, r.text
    return int(r.json()["stored"][0]["id"])


def test_export_decisions_as_csv_and_jsonl(client):
    tags = [t["id"] for t in client.get("/v1/tags", params={"limit": 2}).json()]
    assert client.get("/v1/feedback/export").status_code == 401
    first = _judge(client, "p1", tags[0], "accept")
    _judge(client, "p1", tags[1], "reject")
    _judge(client, "p1", tags[0], "reject")  # changed mind
    _judge(client, "p2", tags[1], "add")
    r = client.get("/v1/feedback/export", headers=KEY)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["product_id"], x["action"]) for x in rows] == [
        ("p1", "accept"),
        ("p1", "reject"),
        ("p1", "reject"),
        ("p2", "add"),
    ]
    assert rows[0]["tag_name"] and rows[0]["tag_path"].endswith(rows[0]["tag_name"])
    latest = client.get("/v1/feedback/export", params={"format": "jsonl", "latest": True}, headers=KEY)
    lines = [json.loads(x) for x in latest.text.splitlines()]
    assert [(x["product_id"], x["tag"], x["action"]) for x in lines] == [
        ("p1", tags[1], "reject"),
        ("p1", tags[0], "reject"),
        ("p2", tags[1], "add"),
    ]
    later = client.get("/v1/feedback/export", params={"format": "jsonl", "after_id": first + 2}, headers=KEY)
    assert [json.loads(x)["product_id"] for x in later.text.splitlines()] == ["p2"]
    bad = client.get("/v1/feedback/export", params={"after_id": -1}, headers=KEY)
    assert bad.status_code == 422


# ---- taxonomy ----------------------------------------------------------------------------------------
def test_taxonomy_levels_and_session_counts(client):
    roots = client.get("/v1/taxonomy").json()
    assert roots["parent"] is None and sum(n["tags"] for n in roots["nodes"]) == 394
    top = max(roots["nodes"], key=lambda n: n["tags"])
    level = client.get("/v1/taxonomy", params={"parent": top["id"]}).json()
    assert (
        len(level["nodes"]) == top["children"] and sum(n["tags"] for n in level["nodes"]) == top["tags"] - 1
    )
    leaf = level["nodes"][0]["id"]
    counts = client.post(
        "/v1/taxonomy/counts",
        json={
            "assignments": [
                {"product": "p1", "tag": leaf},
                {"product": "p2", "tag": leaf},
                {"product": "p1", "tag": top["id"]},
            ]
        },
    ).json()["counts"]
    assert counts[top["id"]] == 2 and counts[leaf] == 2
    assert client.get("/v1/taxonomy", params={"parent": "no-such-tag"}).status_code == 404
    r = client.post("/v1/taxonomy/counts", json={"assignments": [{"product": "", "tag": leaf}]})
    assert r.status_code == 422
    r = client.post("/v1/taxonomy/counts", json={"assignments": "nope"})
    assert r.status_code == 422
