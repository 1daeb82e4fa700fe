"""The tagging pipeline: one order of stages, and every compatibility check made once, everywhere."""

from __future__ import annotations

import pytest
from rerank_helpers import HashCrossEncoder, HashEncoder, toy_products, toy_tags

from tagindex.calibration import Calibration, Isotonic
from tagindex.cross_encoder import Reranker, RerankerParams, ScoreFusion
from tagindex.errors import CompatibilityError
from tagindex.explain import Explainer
from tagindex.index import TagIndex
from tagindex.pipeline import TaggingPipeline, check_depth
from tagindex.schema import Tag


@pytest.fixture(scope="module")
def toy_index() -> TagIndex:
    return TagIndex.build(toy_tags(), encoder=HashEncoder())


def _calibration(
    score: str = "rerank", reranker: str | None = None, levels: tuple[str, ...] = ("0", "1", "2")
):
    cal = Calibration(
        score, fallback=Isotonic([-1.0, 0.0, 1.0, 2.0], [0.0, 0.1, 0.75, 0.95]), reranker=reranker
    )
    cal.thresholds = dict.fromkeys(levels, 0.7)
    return cal


def _reranker(fingerprint: str | None = None, depth: int = 8) -> Reranker:
    info = {"fingerprint": fingerprint} if fingerprint else {}
    return Reranker(HashCrossEncoder(), RerankerParams(depth=depth), info)


def test_plain_pipeline_gives_the_index_results(toy_index: TagIndex) -> None:
    products = toy_products()
    for kwargs in (
        {},
        {"include_ancestors": True},
        {"threshold": 0.2},
        {"threshold": 0.2, "include_ancestors": True},
    ):
        want = [r.to_dict() for r in toy_index.tag(products, top_k=4, **kwargs)]
        got = [t.to_record() for t in TaggingPipeline(toy_index).tag(products, top_k=4, **kwargs)]
        assert got == want, kwargs


def test_rerank_threshold_ancestors_and_decision(toy_index: TagIndex) -> None:
    pipeline = TaggingPipeline(toy_index, _reranker(), _calibration())
    tagged = pipeline.tag(toy_products(), top_k=6, threshold=0.5, include_ancestors=True, decide=True)
    first = tagged[0]
    rows = [(t.tag, t.ancestor_of) for t in first.result.tags]
    assert rows[:3] == [("cheese", None), ("dairy", "cheese"), ("food", "cheese")]
    assert all(t.score >= 0.5 for t in first.result.tags)
    assert len(first.ranked.candidates) == 6  # decisions read every candidate, not only those kept
    assert first.assigned is not None and {"cheese", "dairy", "food"} <= {a.tag for a in first.assigned}
    assert "assigned" in first.to_record()


def test_a_calibration_of_another_vocabulary_is_refused_everywhere(toy_index: TagIndex) -> None:
    deep = _calibration("bi_encoder", levels=("0", "1", "2", "3", "4"))
    with pytest.raises(CompatibilityError, match="another vocabulary"):
        TaggingPipeline(toy_index, calibration=deep)
    with pytest.raises(CompatibilityError, match="another vocabulary"):
        Explainer(toy_index, calibration=deep)  # explanations build the same pipeline
    TaggingPipeline(toy_index, calibration=_calibration("bi_encoder", levels=("0", "2")))  # a subset fits


def test_a_calibration_of_reranker_scores_needs_that_reranker(toy_index: TagIndex) -> None:
    with pytest.raises(CompatibilityError, match="configure its reranker too"):
        TaggingPipeline(toy_index, calibration=_calibration(reranker="aaa"))
    with pytest.raises(CompatibilityError, match="fitted for reranker aaa"):
        TaggingPipeline(toy_index, _reranker("bbb"), _calibration(reranker="aaa"))
    TaggingPipeline(toy_index, _reranker("aaa"), _calibration(reranker="aaa"))


def test_a_reranker_fused_for_another_index_is_refused(toy_index: TagIndex) -> None:
    reranker = _reranker()
    reranker.info["fusion"] = ScoreFusion(1.0, 1.0, 0.0, "another-index").to_dict()
    with pytest.raises(CompatibilityError, match="fuses its scores with those of the index it was trained"):
        TaggingPipeline(toy_index, reranker)


def test_depth_bounds() -> None:
    with pytest.raises(CompatibilityError, match="at least 1"):
        check_depth(0)
    with pytest.raises(CompatibilityError, match="outside 1..5"):
        check_depth(6, max_depth=5)
    with pytest.raises(CompatibilityError, match="no reranker"):
        check_depth(3, has_reranker=False)


def test_decide_needs_a_calibration_that_reads_the_scores(toy_index: TagIndex) -> None:
    with pytest.raises(CompatibilityError, match="--decide needs --calibration"):
        TaggingPipeline(toy_index).tag(toy_products(), decide=True)
    pipeline = TaggingPipeline(toy_index, _reranker(), _calibration())
    with pytest.raises(CompatibilityError, match="decide needs rerank"):
        pipeline.tag(toy_products(), decide=True, rerank=False)


def test_the_cli_refuses_a_calibration_of_another_vocabulary(tmp_path, capsys, monkeypatch) -> None:
    """``tagindex tag --calibration`` used to accept it (only the service refused)."""
    from tagindex.cli import main
    from tagindex.config import TagIndexParams
    from tagindex.registry import ENCODERS

    monkeypatch.setitem(ENCODERS._entries, "hash-test", lambda params: HashEncoder())
    params = TagIndexParams()
    params.encoder.backend = "hash-test"
    flat = [Tag("a", "Cheese"), Tag("b", "Laptop")]
    TagIndex.build(flat, params, encoder=HashEncoder()).save(tmp_path / "idx")
    _calibration("bi_encoder").save(tmp_path / "cal.json")
    (tmp_path / "p.jsonl").write_text('{"id": "1", "title": "Aged cheese"}\n')
    code = main(
        ["-q", "tag", "--index", str(tmp_path / "idx"), "--products", str(tmp_path / "p.jsonl"),
         "--out", str(tmp_path / "run.jsonl"), "--calibration", str(tmp_path / "cal.json"), "--decide"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cal.json" in err and "another vocabulary" in err
    assert not (tmp_path / "run.jsonl").exists()
