"""Explanations: score parts, neighbours, important words; same input and model, same output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rerank_helpers import HashCrossEncoder, HashEncoder, toy_products, toy_tags

from tagindex.calibrate import Calibration, Isotonic
from tagindex.explain import Explainer, ExplainParams
from tagindex.index import TagIndex
from tagindex.rerank import Reranker, RerankerParams


@pytest.fixture(scope="module")
def toy_index() -> TagIndex:
    return TagIndex.build(toy_tags(), encoder=HashEncoder())


def _calibration() -> Calibration:
    # logits of the stub cross-encoder are shared-word counts: one shared word -> p 0.75
    cal = Calibration("rerank", fallback=Isotonic([-1.0, 0.0, 1.0, 2.0], [0.0, 0.1, 0.75, 0.95]))
    cal.thresholds = {"0": 0.7, "1": 0.7, "2": 0.7}
    return cal


def test_explanations_hold_every_part(toy_index: TagIndex) -> None:
    reranker = Reranker(HashCrossEncoder(), RerankerParams(depth=12))
    explainer = Explainer(
        toy_index, reranker, _calibration(), labelled=toy_products(), params=ExplainParams(top_k=12)
    )
    out = explainer.explain([toy_products()[0]])[0]
    assigned = {a["tag"]: a for a in out["assigned"]}
    assert "cheese" in assigned and {"dairy", "food"} <= set(assigned)  # ancestors come along
    cheese = assigned["cheese"]
    parts = cheese["parts"]
    assert parts["graph"] is None
    assert parts["reranker_logit"] is not None and 0 < parts["reranker_probability"] < 1
    assert parts["calibrated_probability"] == pytest.approx(cheese["probability"], abs=1e-5)
    assert parts["bi_encoder"] == pytest.approx(
        float(toy_index.encode_products([toy_products()[0]])[0] @ toy_index.tag_vector("cheese")), abs=1e-4
    )
    assert [w["word"] for w in cheese["words"]][:1] == ["cheese"]
    assert all(w["effect"] > 0 for w in cheese["words"])
    # the product itself is never its own neighbour; no other labelled product carries cheese
    assert cheese["neighbours"] == []
    food = assigned["food"]
    assert {n["id"] for n in food["neighbours"]} <= {"p2", "p3"} and food["neighbours"]


def test_explanations_are_deterministic(toy_index: TagIndex) -> None:
    def run() -> str:
        reranker = Reranker(HashCrossEncoder(), RerankerParams(depth=12))
        explainer = Explainer(toy_index, reranker, _calibration(), labelled=toy_products())
        return json.dumps(explainer.explain(toy_products()), sort_keys=True)

    assert run() == run()


def test_without_reranker_or_calibration(toy_index: TagIndex) -> None:
    out = Explainer(toy_index, params=ExplainParams(untuned_tags=2)).explain(toy_products()[:2])
    assert all(len(o["assigned"]) == 2 and o["decision"].startswith("top-ranked") for o in out)
    part = out[0]["assigned"][0]["parts"]
    assert part["reranker_logit"] is None and part["calibrated_probability"] is None
    assert isinstance(out[0]["assigned"][0]["words"], list)
    with pytest.raises(ValueError, match="reranker"):
        Explainer(toy_index, None, _calibration())
    assert np.isfinite(part["bi_encoder"])


class _StubFusion:
    """Appends a fixed-per-id graph vector, weighted like graph.fusion: [sqrt(1-w) text, sqrt(w) graph]."""

    dim = 4
    weight = 0.5

    def _graph(self, keys: list[str]) -> np.ndarray:
        vecs = np.array([[len(k) % 3 + 1.0, 1.0, (ord(k[0]) % 2) * 1.0, 0.5] for k in keys], dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def _combine(self, text: np.ndarray, graph: np.ndarray) -> np.ndarray:
        w = self.weight
        return np.concatenate([np.sqrt(1 - w) * text, np.sqrt(w) * graph], axis=1).astype(np.float32)

    def fuse_tags(self, tags, vectors, by_id):
        return self._combine(vectors, self._graph([t.id for t in tags]))

    def fuse_products(self, products, vectors):
        return self._combine(vectors, self._graph([p.title for p in products]))


def test_graph_part_splits_the_fused_similarity() -> None:
    index = TagIndex.build(toy_tags(), encoder=HashEncoder(), fusion=_StubFusion())
    product = toy_products()[3]
    out = Explainer(index, labelled=toy_products(), params=ExplainParams(untuned_tags=2)).explain([product])[
        0
    ]
    fused = index.encode_products([product])[0]
    for item in out["assigned"]:
        parts = item["parts"]
        assert parts["graph"] is not None
        total = float(fused @ index.tag_vector(item["tag"]))
        assert parts["bi_encoder"] + parts["graph"] == pytest.approx(total, abs=2e-5)
        assert parts["first_stage_score"] == pytest.approx(total, abs=2e-5)
        assert isinstance(item["words"], list)
