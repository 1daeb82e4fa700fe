"""The rerank / calibrated decision / explanation stage of the service, through TestClient.

A real cross-encoder trained in seconds on 48 real MWPD offers (``stage_files``), the real MWPD index
and the packaged MiniLM: rerank only reorders and rescores, bounds and missing stages are 4xx, decisions
keep the hierarchy, explanations are deterministic, mismatched files are refused at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import make_settings
from tagindex.service.app import create_app
from tagindex.service.stage import StageConfigError, preflight

from tagindex.io import load_tags
from tagindex.text import ancestors

pytestmark = pytest.mark.slow  # real encoder, real cross-encoder

LOCKET = {
    "id": "p1",
    "title": "Victorian Silver Masonic Locket 1890",
    "description": "An oval silver locket with a chain.",
}


@pytest.fixture
def stage_client(stage_index_dir: Path, svc_encoder, stage_files) -> Iterator[TestClient]:
    settings = make_settings(
        stage_index_dir,
        max_top_k=50,
        max_rerank_depth=30,
        reranker_dir=stage_files["reranker"],
        calibration_file=stage_files["calibration"],
    )
    with TestClient(create_app(settings, encoder=svc_encoder)) as c:
        yield c


@pytest.fixture
def exemplar_client(stage_index_dir: Path, tmp_path, svc_encoder, stage_files, mwpd_train_sample):
    target = stage_index_dir
    titles = tmp_path / "labelled.jsonl"
    titles.write_text(
        "".join(
            json.dumps({"id": p.id, "title": p.title, "tags": list(p.tags)}) + "\n"
            for p in mwpd_train_sample[:48]
        )
    )
    settings = make_settings(
        target,
        reranker_dir=stage_files["reranker"],
        calibration_file=stage_files["calibration"],
        labelled_products=titles,
    )
    with TestClient(create_app(settings, encoder=svc_encoder)) as c:
        yield c


def _tag(client: TestClient, **body):
    r = client.post("/v1/tag", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_rerank_rescores_but_never_drops_or_invents(stage_client, sample_products):
    for product in [LOCKET, *sample_products[:4]]:
        plain = _tag(stage_client, product=product, top_k=10, rerank=False)
        reranked = _tag(stage_client, product=product, top_k=10, rerank_depth=10)
        assert not plain["reranked"] and reranked["reranked"] and reranked["rerank_depth"] == 10
        before = {t["tag"]: t for t in plain["results"][0]["tags"]}
        after = reranked["results"][0]["tags"]
        assert sorted(t["tag"] for t in after) == sorted(before)  # same candidates, maybe reordered
        for t in after:
            assert t["bi_encoder_score"] == pytest.approx(before[t["tag"]]["score"], abs=1e-5)
            assert t["rerank_score"] is not None and 0.0 <= t["score"] <= 1.0
        scores = [t["score"] for t in after]
        assert scores == sorted(scores, reverse=True)
        assert any(abs(t["score"] - t["bi_encoder_score"]) > 1e-3 for t in after)  # rescored, not copied


def test_tail_beyond_the_depth_keeps_bi_encoder_order(stage_client):
    plain = _tag(stage_client, product=LOCKET, top_k=12, rerank=False)["results"][0]["tags"]
    body = _tag(stage_client, product=LOCKET, top_k=12, rerank_depth=4)
    tags = body["results"][0]["tags"]
    head_ids = {t["tag"] for t in plain[:4]}
    assert {t["tag"] for t in tags[:4]} == head_ids
    assert [t["tag"] for t in tags[4:]] == [t["tag"] for t in plain[4:]]
    assert all(t["rerank_score"] is None for t in tags[4:])
    assert all(t["rerank_score"] is not None for t in tags[:4])


def test_rerank_is_on_by_default_with_the_configured_depth(stage_client):
    body = _tag(stage_client, product=LOCKET, top_k=5)
    assert body["reranked"] and body["rerank_depth"] == 8  # the reranker's own depth
    info = stage_client.get("/v1/info").json()
    assert info["stage"]["rerank_depth"] == 8 and info["stage"]["calibration"] == "rerank"
    assert info["explainer"] == "tagindex" and info["decider"] == "calibrated"
    assert info["limits"]["max_rerank_depth"] == 30


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"rerank_depth": 0}, "greater than or equal to 1"),
        ({"rerank_depth": 31}, "outside 1..30"),
        ({"rerank_depth": 5, "rerank": False}, "needs rerank"),
        ({"rerank": "yes"}, "valid boolean"),
    ],
)
def test_rerank_depth_bounds_are_422_with_a_reason(stage_client, extra, reason):
    r = stage_client.post("/v1/tag", json={"product": LOCKET, **extra})
    assert r.status_code == 422 and reason in r.text, r.text


@pytest.mark.parametrize("extra", [{"rerank": True}, {"rerank_depth": 5}])
def test_rerank_without_a_reranker_is_422(client, extra):
    r = client.post("/v1/tag", json={"product": LOCKET, **extra})
    assert r.status_code == 422 and "no reranker is configured" in r.text, r.text
    ok = client.post("/v1/tag", json={"product": LOCKET, "rerank": False})
    assert ok.status_code == 200 and ok.json()["results"][0]["tags"][0]["rerank_score"] is None


def test_decisions_are_calibrated_and_hierarchy_consistent(stage_client, mwpd_converted, sample_products):
    by_id = {t.id: t for t in load_tags(mwpd_converted / "tags.jsonl")}
    body = _tag(stage_client, products=sample_products[:8], top_k=10, decide=True, include_ancestors=True)
    assert body["decider"] == "calibrated"
    n_assigned = 0
    for result in body["results"]:
        assigned = {a["tag"]: a for a in result["assigned"]}
        n_assigned += len(assigned)
        for a in assigned.values():
            parent = by_id[a["tag"]].parent
            assert parent is None or parent in assigned, f"{a['tag']} assigned without its parent"
            assert 0.0 <= a["probability"] <= 1.0 and a["level"] == len(ancestors(a["tag"], by_id))
        for t in result["tags"]:
            assert (t["decision"] == "accept") == (t["tag"] in assigned), t
            if t["ancestor_of"] is None and t["rerank_score"] is not None:
                assert 0.0 <= t["probability"] <= 1.0
    assert n_assigned > 0  # the lenient test calibration assigns something on real offers


def test_decide_needs_rerank_when_calibrated_on_reranker_scores(stage_client):
    r = stage_client.post("/v1/tag", json={"product": LOCKET, "rerank": False, "decide": True})
    assert r.status_code == 422 and "needs rerank" in r.text
    plain = _tag(stage_client, product=LOCKET, rerank=False)["results"][0]
    assert plain["assigned"] is None and plain["tags"][0]["probability"] is None


def test_bi_encoder_calibration_decides_without_a_reranker(index_dir, svc_encoder, stage_files):
    settings = make_settings(index_dir, calibration_file=stage_files["calibration_bi"])
    with TestClient(create_app(settings, encoder=svc_encoder)) as c:
        body = _tag(c, product=LOCKET, top_k=5, decide=True, explain=True)
        assert not body["reranked"] and body["decider"] == "calibrated"
        tags = body["results"][0]["tags"]
        assert all(t["rerank_score"] is None and t["probability"] is not None for t in tags)
        parts = tags[0]["explanation"]["parts"]
        assert "calibrated_probability" in parts and "reranker_logit" not in parts
        assert c.post("/v1/tag", json={"product": LOCKET, "rerank": True}).status_code == 422


def test_explanations_have_reranker_parts_and_are_deterministic(stage_client):
    body = {"product": LOCKET, "top_k": 5, "explain": True, "decide": True}
    first = _tag(stage_client, **body)
    second = _tag(stage_client, **body)
    assert first["explainer"] == "tagindex"
    for a, b in zip(first["results"][0]["tags"], second["results"][0]["tags"], strict=True):
        assert a["tag"] == b["tag"] and a["explanation"] == b["explanation"] and a["score"] == b["score"]
    top = first["results"][0]["tags"][0]
    parts = top["explanation"]["parts"]
    assert parts["reranker_logit"] == pytest.approx(top["rerank_score"], abs=1e-4)
    assert parts["calibrated_probability"] == pytest.approx(top["probability"], abs=1e-4)
    assert parts["bi_encoder_similarity"] == pytest.approx(top["bi_encoder_score"], abs=1e-5)
    assert 0.0 <= parts["reranker_probability"] <= 1.0 and parts["rank"] == 1
    words = top["explanation"]["words"]
    text_words = first["results"][0]["encoded_text"].split()
    assert all(w["effect"] > 0 for w in words)
    assert all(w["word"] in " ".join(text_words) for w in words)


def test_explanations_show_labelled_products_carrying_the_tag(exemplar_client, mwpd_train_sample):
    labels = {p.id: p for p in mwpd_train_sample[:48]}
    product = mwpd_train_sample[50]
    body = _tag(
        exemplar_client,
        product={"id": product.id, "title": product.title, "description": product.description},
        top_k=5,
        explain=True,
    )
    assert exemplar_client.get("/v1/info").json()["stage"]["labelled_exemplars"] == 48
    seen = 0
    for t in body["results"][0]["tags"]:
        for ex in t["explanation"]["examples"]:
            seen += 1
            carrier = labels[ex["id"]]
            assert ex["title"] == carrier.title
            # carries the tag itself or a descendant of it (GS1 ids: every level is listed)
            assert t["tag"] in carrier.tags
    assert seen > 0


def test_concurrent_requests_match_sequential_ones(stage_client, sample_products):
    import torch

    bodies = [{"product": p, "top_k": 8, "decide": True} for p in sample_products[:12]]
    sequential = [_tag(stage_client, **b)["results"][0] for b in bodies]
    with ThreadPoolExecutor(6) as pool:
        concurrent = list(pool.map(lambda b: _tag(stage_client, **b)["results"][0], bodies))
        # the service caps torch's pool (compute_threads=1) for worker threads too
        assert pool.submit(torch.get_num_threads).result() == 1
    for a, b in zip(sequential, concurrent, strict=True):
        assert [t["tag"] for t in a["tags"]] == [t["tag"] for t in b["tags"]]
        assert [t["score"] for t in a["tags"]] == pytest.approx([t["score"] for t in b["tags"]], abs=1e-4)
        assert [x["tag"] for x in a["assigned"]] == [x["tag"] for x in b["assigned"]]


def test_added_tags_are_reranked_with_their_new_text(stage_client):
    from service_support import KEY

    new = {"id": "x-lockets", "name": "Silver lockets", "parent": "64010100_Jewellery"}
    r = stage_client.post("/v1/tags", json={"tags": [new]}, headers=KEY)
    assert r.status_code == 201, r.text
    tags = _tag(stage_client, product=LOCKET, top_k=10, rerank_depth=10)["results"][0]["tags"]
    assert "x-lockets" in [t["tag"] for t in tags]
    assert stage_client.delete("/v1/tags/x-lockets", headers=KEY).status_code == 200
    renamed = {**new, "name": "Lockets and pendants in silver"}
    assert stage_client.post("/v1/tags", json={"tags": [renamed]}, headers=KEY).status_code == 201
    again = _tag(stage_client, product=LOCKET, top_k=30, rerank_depth=30)["results"][0]["tags"]
    old = {t["tag"]: t for t in tags}["x-lockets"]["rerank_score"]
    fresh = {t["tag"]: t for t in again}["x-lockets"]["rerank_score"]
    assert fresh is not None and abs(fresh - old) > 1e-4  # the new text was read, not a cached one


# ---- refused at start-up --------------------------------------------------------------------------
def test_a_calibration_for_another_reranker_is_refused(stage_index_dir, svc_encoder, stage_files):
    settings = make_settings(
        stage_index_dir,
        reranker_dir=stage_files["other_reranker"],
        calibration_file=stage_files["calibration"],
    )
    with pytest.raises(StageConfigError, match="fitted for reranker"):
        preflight(settings)
    with (
        pytest.raises(StageConfigError, match="fitted for reranker"),
        TestClient(create_app(settings, encoder=svc_encoder)),
    ):
        pass


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"calibration_file": "calibration"}, "configure its reranker too"),
        ({"rerank_depth": 5}, "no reranker"),
        ({"reranker_dir": "reranker", "rerank_depth": 500}, "outside 1..100"),
        ({"reranker_dir": "broken"}, "cannot load the reranker"),
        ({"calibration_file": "broken"}, "cannot read calibration"),
        ({"decider": "calibrated"}, "needs a calibration"),
    ],
)
def test_unusable_stage_settings_are_refused(
    stage_index_dir, svc_encoder, stage_files, tmp_path, overrides, message
):
    broken = tmp_path / "broken"
    broken.mkdir()
    paths = {**stage_files, "broken": broken}
    settings = make_settings(
        stage_index_dir, **{k: paths.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
    )
    with (
        pytest.raises(StageConfigError, match=message),
        TestClient(create_app(settings, encoder=svc_encoder)),
    ):
        pass


def test_a_reranker_fused_for_another_index_is_refused(index_dir, svc_encoder, stage_files):
    from tagindex.rerank import Reranker

    assert Reranker.load(stage_files["reranker"]).info.get("fusion")  # else this test proves nothing
    settings = make_settings(index_dir, reranker_dir=stage_files["reranker"])  # no exemplars: another key
    with (
        pytest.raises(StageConfigError, match="fuses its scores with those of the index it was trained"),
        TestClient(create_app(settings, encoder=svc_encoder)),
    ):
        pass


def test_a_calibration_of_another_vocabulary_is_refused(tmp_path, svc_encoder, stage_files):
    from tagindex.index import TagIndex
    from tagindex.schema import Tag

    flat = tmp_path / "flat"
    TagIndex.build([Tag("a", "Jewellery"), Tag("b", "Food")], encoder=svc_encoder).save(flat)
    settings = make_settings(flat, calibration_file=stage_files["calibration_bi"])
    with pytest.raises(StageConfigError, match="another vocabulary"):
        preflight(settings)
    with (
        pytest.raises(StageConfigError, match="another vocabulary"),
        TestClient(create_app(settings, encoder=svc_encoder)),
    ):
        pass


def test_serve_refuses_a_mismatched_reranker_with_a_clear_error(index_dir, stage_files, capsys):
    from tagindex.cli import main

    code = main(
        [
            "serve",
            "--index",
            str(index_dir),
            "--reranker",
            str(stage_files["other_reranker"]),
            "--calibration",
            str(stage_files["calibration"]),
        ]
    )
    assert code == 2
    assert "tagindex serve: error: the calibration was fitted for reranker" in capsys.readouterr().err
