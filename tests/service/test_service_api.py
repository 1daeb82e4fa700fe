"""The HTTP API through TestClient, against a real index of the 394 MWPD GS1 tags (packaged MiniLM)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_support import KEY, make_settings
from tagindex.service.app import create_app

from tagindex.index import TagIndex
from tagindex.schema import Product

pytestmark = pytest.mark.slow  # loads the real encoder and a real index

LOCKET = {
    "id": "p1",
    "title": "Victorian Silver Masonic Locket 1890",
    "description": "An oval silver locket.",
}


# ---- tagging -----
def test_tag_single_matches_the_library(client, index_dir, svc_encoder):
    r = client.post("/v1/tag", json={"product": LOCKET, "top_k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    (result,) = body["results"]
    assert result["id"] == "p1"
    scores = [t["score"] for t in result["tags"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    direct = TagIndex.load(index_dir, encoder=svc_encoder).tag_one(
        Product("p1", LOCKET["title"], LOCKET["description"]), top_k=5
    )
    assert [t["tag"] for t in result["tags"]] == [t.tag for t in direct.tags]
    assert np.allclose(scores, [t.score for t in direct.tags], atol=1e-5)
    first = result["tags"][0]
    assert first["path"][-1] == first["name"] and first["decision"] is None and first["explanation"] is None


def test_an_adapted_index_answers_as_the_library_title_match_included(
    mwpd_converted, svc_encoder, shared_data, tmp_path
):
    from tagindex.adapt import AdaptParams, adapt
    from tagindex.convert import shopify_categories
    from tagindex.io import load_products, load_tags

    catalog = [Product(p.id, p.title) for p in load_products(mwpd_converted / "train.jsonl")[:150]]
    apparel = [t for t in shopify_categories(shared_data / "shopify-taxonomy") if t.id.startswith("aa")]
    index, _ = adapt(
        load_tags(mwpd_converted / "tags.jsonl"),
        catalog,
        AdaptParams(rounds=1, enrich=False),
        encoder=svc_encoder,
        graft=apparel,  # Shopify's apparel names lent to the GS1 tags (adapt --graft)
    )
    assert index.adjuster is not None and index.adjuster.lexical_weight > 0
    index.save(tmp_path / "adapted")
    shirt = {"id": "p3", "title": "Chicago Bears Men's Sideline Legend Performance T-Shirt - Navy"}
    # A title naming nothing, in a shop category that names a lent name.
    crumb = {
        "id": "p4",
        "title": "Chicago Bears 2014 Edition",
        "attributes": {"breadcrumb": "NFL > Bears > T-Shirts"},
    }
    products = [LOCKET, {"id": "p2", "title": "Coleman Sundome 4-Person Dome Tent"}, shirt, crumb]
    with TestClient(create_app(make_settings(tmp_path / "adapted"), encoder=svc_encoder)) as c:
        r = c.post("/v1/tag", json={"products": products, "top_k": 5, "explain": True})
    assert r.status_code == 200, r.text
    direct = TagIndex.load(tmp_path / "adapted", encoder=svc_encoder).tag(
        [
            Product(p["id"], p["title"], p.get("description", ""), attributes=p.get("attributes", {}))
            for p in products
        ],
        top_k=5,
    )
    for served, lib in zip(r.json()["results"], direct, strict=True):
        assert [t["tag"] for t in served["tags"]] == [t.tag for t in lib.tags]
        assert np.allclose([t["score"] for t in served["tags"]], [t.score for t in lib.tags], atol=1e-5)
    # The explanation says how much of a score the title match added: the tent's head noun names a tag.
    tent = r.json()["results"][1]["tags"]
    assert all(t["explanation"]["parts"]["title_match"] >= 0 for t in tent)
    first = tent[0]
    assert first["name"] == "Tents/Weather Structures" and first["explanation"]["parts"]["title_match"] > 0
    assert any("product type" in n for n in first["explanation"]["notes"])
    # GS1 names no T-shirt: the match came through a name the graft lent, and the note says which.
    top = r.json()["results"][2]["tags"][0]
    assert top["name"] == "Upper Body Wear/Tops" and top["explanation"]["parts"]["title_match"] > 0
    assert any(
        n.startswith("the title names") and "lent by the grafted" in n for n in top["explanation"]["notes"]
    )
    # The shop's category named it: the note says that, not the title.
    via_crumb = [t for t in r.json()["results"][3]["tags"] if t["name"] == "Upper Body Wear/Tops"]
    assert via_crumb and via_crumb[0]["explanation"]["parts"]["title_match"] > 0
    assert any(
        n.startswith("the shop's category 'NFL > Bears > T-Shirts' names '") and "lent by the grafted" in n
        for n in via_crumb[0]["explanation"]["notes"]
    )


def test_tag_batch_keeps_order_and_derives_missing_ids(client, sample_products):
    batch = sample_products[:5] + [{"title": "Nike running shoe, men's size 10"}]
    r = client.post("/v1/tag", json={"products": batch, "top_k": 3})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results[:5]] == [p["id"] for p in sample_products[:5]]
    assert results[5]["id"].startswith("text-") and all(len(x["tags"]) == 3 for x in results)
    again = client.post("/v1/tag", json={"product": {"title": "Nike running shoe, men's size 10"}}).json()
    assert again["results"][0]["id"] == results[5]["id"]  # same text, same derived id


def test_explanations_and_decisions_use_real_scores(client):
    body = {"product": LOCKET, "top_k": 4, "explain": True, "decide": True, "accept_threshold": 0.3}
    first = client.post("/v1/tag", json=body).json()
    second = client.post("/v1/tag", json=body).json()
    for a, b in zip(first["results"][0]["tags"], second["results"][0]["tags"], strict=True):
        assert a["tag"] == b["tag"] and a["explanation"] == b["explanation"]  # deterministic
    result = first["results"][0]
    assert first["explainer"] == "similarity" and first["decider"] == "threshold"
    assert "Locket" in result["encoded_text"]
    for hit in result["tags"]:
        x = hit["explanation"]
        assert x["parts"]["bi_encoder_similarity"] == pytest.approx(hit["score"], abs=1e-5)
        assert x["path"] == hit["path"]
        assert hit["decision"] == ("accept" if hit["score"] >= 0.3 else "review")
        assert len(x["neighbours"]) == 3
        for n in x["neighbours"]:
            assert n["tag"] != hit["tag"]
            assert n["margin"] == pytest.approx(hit["score"] - n["product_similarity"], abs=1e-5)
    # The neighbour's product similarity is what the index itself scores for that tag.
    n = result["tags"][0]["explanation"]["neighbours"][0]
    ranked = client.post("/v1/tag", json={"product": LOCKET, "top_k": 394}).json()["results"][0]["tags"]
    assert {t["tag"]: t["score"] for t in ranked}[n["tag"]] == pytest.approx(
        n["product_similarity"], abs=1e-5
    )


def test_matched_terms_are_words_shared_with_the_tag():
    from tagindex.service.explanations import shared_terms, terms

    # Keys fold plurals the way the title match does; the product's own word is what is shown.
    assert shared_terms(terms("Silver Rings, 2 pieces"), terms("Jewellery > Ring")) == ["rings"]
    assert shared_terms(terms("Phone accessories"), terms("Accessory Kits")) == ["accessories"]
    assert shared_terms(terms("Dresses"), terms("Dress Shoes")) == ["dresses"]
    assert "the" not in terms("the ring").values()


def test_decide_without_any_threshold_is_a_clear_422(client):
    r = client.post("/v1/tag", json={"product": LOCKET, "decide": True})
    assert r.status_code == 422 and "accept_threshold" in r.json()["detail"]


def test_ancestors_follow_their_tag(client):
    tags = client.post("/v1/tag", json={"product": LOCKET, "top_k": 2, "include_ancestors": True}).json()[
        "results"
    ][0]["tags"]
    ranked = [t for t in tags if t["ancestor_of"] is None]
    assert len(ranked) == 2
    for i, t in enumerate(tags):
        if t["ancestor_of"] is not None:
            assert t["name"] in tags[i - 1]["path"] or tags[i - 1]["ancestor_of"] == t["ancestor_of"]


# ---- vocabulary -----
def test_similar_to_a_tag_whose_id_has_a_slash(client):
    tag_id = "70010900_Candle/Soap Craft Supplies"
    r = client.get(f"/v1/tags/{tag_id}/similar", params={"top_k": 5})
    assert r.status_code == 200, r.text
    hits = r.json()["tags"]
    assert len(hits) == 5 and tag_id not in [h["tag"] for h in hits]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert client.get(f"/v1/tags/{tag_id}").json()["name"] == "Candle/Soap Craft Supplies"
    assert client.get("/v1/tags/no-such-tag/similar").status_code == 404
    assert client.get("/v1/tags/no-such-tag").status_code == 404


def test_similar_to_free_text(client):
    r = client.post("/v1/tags/similar", json={"text": "footwear", "top_k": 3})
    assert r.status_code == 200
    assert "Footwear" in [h["name"] for h in r.json()["tags"]]


def test_duplicates_are_pairs_over_the_threshold_best_evidence_first(client):
    body = client.get("/v1/tags/duplicates", params={"min_score": 0.9, "limit": 500}).json()
    pairs = body["pairs"]
    assert body["total"] == len(pairs) > 0
    assert all(p["score"] >= 0.9 and p["a"] < p["b"] for p in pairs)
    assert [p["evidence"] for p in pairs] == sorted((p["evidence"] for p in pairs), reverse=True)
    # GS1 repeats names down the levels ("Footwear" > "Footwear"): parent and child, not duplicates.
    assert not any(p["a_name"] == p["b_name"] == "Footwear" for p in pairs)
    assert client.get("/v1/tags/duplicates", params={"min_score": 0.9, "limit": 1}).json()["total"] == len(
        pairs
    )


def test_vocabulary_search_ranks_name_matches_first(client):
    hits = client.get("/v1/tags", params={"q": "jewel"}).json()
    assert hits[0]["name"] == "Jewellery"
    assert all("jewel" in " ".join(h["path"]).casefold() or "jewel" in h["id"].casefold() for h in hits)
    assert client.get("/v1/tags", params={"q": "zzzz-nothing"}).json() == []


# ---- changes -----
LOCKETS_TAG = {
    "id": "64010100_Lockets",
    "name": "Lockets",
    "parent": "64010100_Jewellery",
    "synonyms": ["locket"],
}


def test_write_endpoints_need_the_key(client):
    assert client.post("/v1/tags", json={"tags": [LOCKETS_TAG]}).status_code == 401
    assert (
        client.post("/v1/tags", json={"tags": [LOCKETS_TAG]}, headers={"X-API-Key": "wrong"}).status_code
        == 401
    )
    assert client.delete("/v1/tags/64010100_Jewellery").status_code == 401
    assert client.get("/v1/feedback").status_code == 401
    assert "64010100_Lockets" not in client.get("/v1/tags", params={"q": "lockets"}).text


def test_added_tag_is_searchable_at_once_and_saved(client, index_dir, svc_encoder):
    r = client.post("/v1/tags", json={"tags": [LOCKETS_TAG]}, headers=KEY)
    assert r.status_code == 201, r.text
    assert r.json()["changed"] == ["64010100_Lockets"] and r.json()["n_tags"] == 395
    assert client.post("/v1/tags/similar", json={"text": "locket", "top_k": 1}).json()["tags"][0]["tag"] == (
        "64010100_Lockets"
    )
    tags = client.post("/v1/tag", json={"product": LOCKET, "top_k": 3}).json()["results"][0]["tags"]
    assert "64010100_Lockets" in [t["tag"] for t in tags]
    assert client.get("/v1/tags/64010100_Lockets").json()["path"][-2:] == ["Jewellery", "Lockets"]
    assert "64010100_Lockets" in TagIndex.load(index_dir, encoder=svc_encoder)  # on disk, intact manifest
    again = client.post("/v1/tags", json={"tags": [LOCKETS_TAG]}, headers=KEY)
    assert again.status_code == 409 and "already present" in again.json()["detail"]
    orphan = {"id": "x", "name": "X", "parent": "no-such-parent"}
    assert client.post("/v1/tags", json={"tags": [orphan]}, headers=KEY).status_code == 409


def test_retire_needs_cascade_for_parents_and_is_saved(client, index_dir, svc_encoder):
    parent = "64010000_Personal Accessories"
    r = client.delete(f"/v1/tags/{parent}", headers=KEY)
    assert r.status_code == 409 and "child" in r.json()["detail"]
    r = client.delete(f"/v1/tags/{parent}", params={"cascade": True}, headers=KEY)
    assert r.status_code == 200, r.text
    removed = r.json()["changed"]
    assert parent in removed and "64010100_Jewellery" in removed and r.json()["n_tags"] == 394 - len(removed)
    hits = client.post("/v1/tags/similar", json={"text": "jewellery", "top_k": 20}).json()["tags"]
    assert not set(removed) & {h["tag"] for h in hits}
    assert client.delete(f"/v1/tags/{parent}", headers=KEY).status_code == 404
    assert parent not in TagIndex.load(index_dir, encoder=svc_encoder)


# ---- feedback -----
def test_feedback_is_stored_and_survives_a_restart(index_dir, svc_encoder):
    settings = make_settings(index_dir)
    body = {
        "product": LOCKET,
        "judgements": [
            {"tag": "64010100_Jewellery", "action": "accept", "score": 0.4},
            {"tag": "70010900_Candle/Soap Craft Supplies", "action": "reject", "score": 0.3},
        ],
        "user": "ana",
    }
    with TestClient(create_app(settings, encoder=svc_encoder)) as c:
        r = c.post("/v1/feedback", json=body, headers=KEY)
        assert r.status_code == 201, r.text
        assert [s["action"] for s in r.json()["stored"]] == ["accept", "reject"] and r.json()["total"] == 2
        bad = {**body, "judgements": [{"tag": "no-such-tag", "action": "add"}]}
        assert c.post("/v1/feedback", json=bad, headers=KEY).status_code == 422
        wrong = {**body, "judgements": [{"tag": "64010100_Jewellery", "action": "maybe"}]}
        assert c.post("/v1/feedback", json=wrong, headers=KEY).status_code == 422
    with TestClient(create_app(settings, encoder=svc_encoder)) as c:  # a restart
        rows = c.get("/v1/feedback", headers=KEY).json()
        assert rows["total"] == 2
        assert [(x["product_id"], x["tag"], x["action"], x["user"]) for x in rows["rows"]] == [
            ("p1", "64010100_Jewellery", "accept", "ana"),
            ("p1", "70010900_Candle/Soap Craft Supplies", "reject", "ana"),
        ]
        assert rows["rows"][0]["title"] == LOCKET["title"] and rows["rows"][0]["index_fingerprint"]
        assert settings.feedback_path().exists() and settings.feedback_path().parent == index_dir.parent


# ---- limits and errors: always a 4xx with a reason, never a 500 -----
@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"products": [{"title": "x"}] * 9}, 422, "exceeds the limit of 8"),
        ({"product": {"title": "x"}, "top_k": 401}, 422, "top_k 401 exceeds"),
        ({"product": {"title": "x" * 20_001}}, 422, "the limit is 20000"),
        ({"product": {"title": "x"}, "top_k": True}, 422, "valid integer"),
        ({"product": {"title": "x"}, "top_k": 0}, 422, "greater than or equal"),
        ({"product": {"title": "   "}}, 422, "blank"),
        ({"product": {"title": "x"}, "products": [{"title": "y"}]}, 422, "exactly one"),
        ({}, 422, "exactly one"),
        ({"product": {"title": "x"}, "colour": "red"}, 422, "Extra inputs"),
        ({"products": []}, 422, "at least 1"),
    ],
)
def test_bad_tag_requests_get_a_4xx_with_the_reason(client, body, status, reason):
    r = client.post("/v1/tag", json=body)
    assert r.status_code == status, r.text
    assert reason in r.text


def test_unparsable_and_oversized_bodies(client, index_dir, svc_encoder):
    r = client.post("/v1/tag", content=b'{"product": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.text
    r = client.post("/v1/tag", content=b'{"product": {"title": "x"}, "threshold": NaN}',
                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and "finite" in r.text
    big = json.dumps({"products": [{"title": "x" * 10_000}] * 200}).encode()  # ~2 MB > 1 MB limit
    r = client.post("/v1/tag", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit of 1000000 bytes" in r.text

    def chunks():  # no Content-Length: the limit must still hold while reading
        for _ in range(20):
            yield b" " * 100_000

    r = client.post("/v1/tag", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.text


def test_unexpected_errors_become_a_json_500_without_a_traceback(index_dir, svc_encoder, monkeypatch):
    with TestClient(
        create_app(make_settings(index_dir), encoder=svc_encoder), raise_server_exceptions=False
    ) as c:

        def broken(*args, **kwargs):
            raise RuntimeError("simulated fault")

        monkeypatch.setattr(c.app.state.engine, "tag", broken)
        r = c.post("/v1/tag", json={"product": LOCKET})
        assert r.status_code == 500
        assert r.json() == {"detail": "internal error (RuntimeError); see the service log"}
        assert c.get("/healthz").status_code == 200  # the service lives on


# ---- operations -----
def test_health_ready_info_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    info = client.get("/v1/info").json()
    assert info["index"]["n_tags"] == 394 and info["limits"]["max_batch"] == 8
    client.post("/v1/tag", json={"product": LOCKET})
    client.post("/v1/tag", json={"products": []})
    text = client.get("/metrics").text
    assert 'tagindex_http_requests_total{method="POST",route="/v1/tag",status="200"} 1.0' in text
    assert 'tagindex_http_requests_total{method="POST",route="/v1/tag",status="422"} 1.0' in text
    assert 'tagindex_http_request_duration_seconds_bucket{le="0.05",method="POST",route="/v1/tag"}' in text
    assert "tagindex_products_tagged_total 1.0" in text and "tagindex_tags 394.0" in text


def test_openapi_documents_every_route_with_examples_and_security(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/v1/tag", "post"),
        ("/v1/tags", "get"),
        ("/v1/tags", "post"),
        ("/v1/tags/{tag_id}", "delete"),
        ("/v1/tags/{tag_id}", "get"),
        ("/v1/tags/{tag_id}/similar", "get"),
        ("/v1/tags/similar", "post"),
        ("/v1/tags/duplicates", "get"),
        ("/v1/tags/duplicates/scan", "post"),
        ("/v1/tags/duplicates/scan", "get"),
        ("/v1/products/upload", "post"),
        ("/v1/feedback/export", "get"),
        ("/v1/taxonomy", "get"),
        ("/v1/taxonomy/counts", "post"),
        ("/v1/feedback", "post"),
        ("/v1/feedback", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    assert expected <= {(p, m) for p, ops in paths.items() for m in ops}
    for path, method in expected:
        op = paths[path][method]
        assert op.get("description") or op.get("summary"), (path, method)
    schemas = spec["components"]["schemas"]
    for name in ("TagRequest", "SimilarTextRequest", "AddTagsRequest", "FeedbackRequest", "TagResponse"):
        assert schemas[name].get("examples"), name
    for path, method in [
        ("/v1/tags", "post"),
        ("/v1/tags/{tag_id}", "delete"),
        ("/v1/feedback", "post"),
        ("/v1/feedback/export", "get"),
    ]:
        assert paths[path][method]["security"] == [{"APIKeyHeader": []}]
        assert "401" in paths[path][method]["responses"]
    assert "413" in paths["/v1/tag"]["post"]["responses"]


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    from tagindex.service.settings import Settings

    monkeypatch.setenv("TAGINDEX_INDEX_DIR", str(tmp_path / "ix"))
    monkeypatch.setenv("TAGINDEX_API_KEY", "from-env")
    monkeypatch.setenv("TAGINDEX_MAX_BATCH", "3")
    s = Settings()
    assert s.max_batch == 3 and s.api_key is not None and s.api_key.get_secret_value() == "from-env"
    assert s.feedback_path() == (tmp_path / "ix.feedback.sqlite3").resolve()


def test_the_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="tag-form"' in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_a_registered_explainer_and_decider_plug_in(index_dir, svc_encoder):
    from tagindex.service.explanations import TagExplanation, register_decider, register_explainer

    class Constant:
        name = "constant"
        needs_threshold = False

        def __init__(self, engine):
            self.engine = engine

        def explain(self, ctx):
            return {
                t.tag: TagExplanation(parts={"bi_encoder_similarity": t.score, "extra": 1.0})
                for t in ctx.result.tags
            }

        def decide(self, result, threshold):
            return {t.tag: ("accept", "always") for t in result.tags}

    register_explainer("constant", Constant)
    register_decider("constant", Constant)
    settings = make_settings(index_dir, explainer="constant", decider="constant")
    with TestClient(create_app(settings, encoder=svc_encoder)) as c:
        body = c.post("/v1/tag", json={"product": LOCKET, "top_k": 2, "explain": True, "decide": True}).json()
    assert body["explainer"] == "constant" and body["decider"] == "constant"
    for hit in body["results"][0]["tags"]:
        assert hit["explanation"]["parts"]["extra"] == 1.0 and hit["decision"] == "accept"
    app = create_app(make_settings(index_dir, explainer="nope"), encoder=svc_encoder)
    with pytest.raises(ValueError, match="unknown explainer"), TestClient(app):
        pass
