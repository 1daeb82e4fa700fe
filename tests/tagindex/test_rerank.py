"""Cross-encoder rerank: candidates are only reordered, training on a tiny real sample works."""

from __future__ import annotations

import numpy as np
import pytest
from rerank_helpers import HashCrossEncoder, HashEncoder, mwpd_sample, toy_products, toy_tags

from tagindex.index import TagIndex
from tagindex.pipeline import TaggingPipeline
from tagindex.rerank import (
    Reranker,
    RerankerParams,
    from_bi_encoder,
    positives_of,
    split_dev,
    train_reranker,
    with_ancestors,
)


@pytest.fixture(scope="module")
def toy_index() -> TagIndex:
    return TagIndex.build(toy_tags(), encoder=HashEncoder())


def _stub_reranker(depth: int = 5) -> Reranker:
    return Reranker(HashCrossEncoder(), RerankerParams(depth=depth))


@pytest.mark.parametrize("depth", [1, 3, 5, 12, 50])
def test_rerank_never_drops_or_invents_candidates(toy_index: TagIndex, depth: int) -> None:
    products = toy_products()
    before = toy_index.tag(products, top_k=8)
    after = _stub_reranker().rerank(toy_index, products, before, depth=depth)
    for b, a in zip(before, after, strict=True):
        assert a.id == b.id
        assert sorted(c.tag for c in a.candidates) == sorted(t.tag for t in b.tags)
        # the tail beyond the depth keeps the bi-encoder order
        assert [c.tag for c in a.candidates[depth:]] == [t.tag for t in b.tags[depth:]]
        assert all(c.rerank_score is not None for c in a.candidates[:depth])
        assert all(c.rerank_score is None for c in a.candidates[depth:])
        scores = [c.score for c in a.candidates]
        assert scores == sorted(scores, reverse=True)


def test_rerank_orders_head_by_cross_encoder(toy_index: TagIndex) -> None:
    products = toy_products()
    after = _stub_reranker().rerank(toy_index, products, toy_index.tag(products, top_k=12), depth=12)
    assert after[0].candidates[0].tag == "cheese"
    assert after[5].candidates[0].tag == "headphones"
    for r in after:
        logits = [c.rerank_score for c in r.candidates]
        assert logits == sorted(logits, reverse=True)


def test_rerank_checks_its_input(toy_index: TagIndex) -> None:
    products = toy_products()
    cands = toy_index.tag(products, top_k=4)
    with pytest.raises(ValueError, match="depth"):
        _stub_reranker().rerank(toy_index, products, cands, depth=0)
    with pytest.raises(ValueError, match="candidate lists"):
        _stub_reranker().rerank(toy_index, products[:2], cands)
    with pytest.raises(ValueError, match="does not match"):
        _stub_reranker().rerank(toy_index, products[::-1], cands)


def test_ancestor_rows_are_not_reranked(toy_index: TagIndex) -> None:
    products = toy_products()[:2]
    with_anc = toy_index.tag(products, top_k=3, include_ancestors=True)
    plain = toy_index.tag(products, top_k=3)
    for wrapped, ranked in zip(from_bi_encoder(with_anc), plain, strict=True):
        kept = [c.tag for c in wrapped.candidates]
        order = [t.tag for t in ranked.tags]
        assert kept == [t for t in order if t in kept]  # ranked rows only, in bi-encoder order
        assert all(c.score == c.bi_score for c in wrapped.candidates)


def test_the_pipeline_rescores_full_depth_and_cuts(toy_index: TagIndex) -> None:
    products = toy_products()
    ranked = TaggingPipeline(toy_index, _stub_reranker(), depth=10).rank(products, top_k=2)
    assert all(len(r.candidates) == 2 for r in ranked)
    assert ranked[3].candidates[0].tag == "laptop"  # found inside the depth, not the bi-encoder top-2
    res = with_ancestors(ranked[0], toy_index.by_id, {})
    tags = [t.tag for t in res.tags]
    assert len(tags) == len(set(tags)) and "food" in tags


def test_split_and_positives() -> None:
    products = toy_products()
    train, dev = split_dev(products, 0.34, seed=1)
    assert len(dev) == 2 and {p.id for p in train}.isdisjoint(p.id for p in dev)
    assert split_dev(products, 0.34, seed=1) == (train, dev)
    by_id = {t.id: t for t in toy_tags()}
    assert positives_of(products[0], by_id) == {"cheese", "dairy", "food"}
    with pytest.raises(ValueError):
        split_dev(products, 1.5, seed=1)


@pytest.mark.slow
def test_train_reranker_on_tiny_real_sample(tmp_path, tiny_model) -> None:
    sample = mwpd_sample(tmp_path, n_train=40, n_val=6)
    if sample is None:
        pytest.skip("../shared/data/mwpd is absent")
    tags, train, val = sample
    index = TagIndex.build(tags)
    # The cross-encoder starts from the tiny model: training, saving and reloading are tested here;
    # what a MiniLM cross-encoder is worth is measured by benchmarks/rerank_mwpd.py.
    params = RerankerParams(
        model=str(tiny_model),
        max_products=30,
        hard_negatives=2,
        random_negatives=1,
        dev_fraction=0.2,
        dev_eval_products=4,
        depth=8,
    )
    reranker = train_reranker(index, train, params)
    report = reranker.info["training"]
    assert report["train_pairs"] > report["train_positive_pairs"] > 0
    dev_ids = set(reranker.info["dev_ids"])
    assert len(dev_ids) == 8 and dev_ids <= {p.id for p in train}
    reranker.save(tmp_path / "rr")
    loaded = Reranker.load(tmp_path / "rr")
    assert loaded.params == params and set(loaded.info["dev_ids"]) == dev_ids
    assert loaded.fingerprint is not None
    cands = index.tag(val, top_k=10)
    a = reranker.rerank(index, val, cands, depth=8)
    b = loaded.rerank(index, val, cands, depth=8)
    for x, y, c in zip(a, b, cands, strict=True):
        assert [t.tag for t in x.candidates] == [t.tag for t in y.candidates]
        np.testing.assert_allclose(
            [t.score for t in x.candidates], [t.score for t in y.candidates], atol=1e-5
        )
        assert sorted(t.tag for t in x.candidates) == sorted(t.tag for t in c.tags)
    (tmp_path / "rr" / "model" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="checksum"):
        Reranker.load(tmp_path / "rr")


def test_fusion_fit_recovers_the_weights_that_generated_the_labels() -> None:
    from tagindex.rerank import Fusion, sigmoid

    rng = np.random.default_rng(0)
    cross, bi = rng.normal(size=4000), rng.normal(size=4000)
    labels = (rng.random(4000) < sigmoid(1.5 * cross + 3.0 * bi - 1.0)).astype(float)
    fusion = Fusion.fit(cross, bi, labels, "k")
    assert fusion.cross == pytest.approx(1.5, abs=0.25)
    assert fusion.bi == pytest.approx(3.0, abs=0.4)
    assert fusion.bias == pytest.approx(-1.0, abs=0.25)
    assert Fusion.from_dict(fusion.to_dict()) == fusion


def test_rerank_ranks_by_fusion_only_on_the_index_it_was_fitted_on(toy_index: TagIndex, caplog) -> None:
    from tagindex.rerank import Fusion, index_key

    products = toy_products()
    before = toy_index.tag(products, top_k=6)
    reranker = _stub_reranker()
    # A fusion that trusts only the bi-encoder gives back the bi-encoder order in the head.
    reranker.info["fusion"] = Fusion(0.0, 1.0, 0.0, index_key(toy_index)).to_dict()
    after = reranker.rerank(toy_index, products, before, depth=6)
    for b, a in zip(before, after, strict=True):
        assert [c.tag for c in a.candidates] == [t.tag for t in b.tags]
        assert all(c.cross_score is not None for c in a.candidates)
        assert [c.rerank_score for c in a.candidates] == pytest.approx([c.bi_score for c in a.candidates])
    # On another index (other scores) the weights do not apply: cross-encoder order, with a warning.
    from tagindex.config import EncoderParams

    encoder = HashEncoder(dim=16)
    encoder.params = EncoderParams(backend="hash", model="hash-16")  # another model: another key
    other = TagIndex.build(toy_tags(), encoder=encoder)
    plain = _stub_reranker().rerank(other, products, other.tag(products, top_k=6), depth=6)
    with caplog.at_level("WARNING"):
        fused = reranker.rerank(other, products, other.tag(products, top_k=6), depth=6)
    assert [[c.tag for c in r.candidates] for r in fused] == [[c.tag for c in r.candidates] for r in plain]
    assert "fitted on another index" in caplog.text
