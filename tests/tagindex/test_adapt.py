"""`tagindex adapt` (issue 13): each ingredient on a small slice of real MWPD data, determinism and the
index format round trip. The catalog is MWPD train offers with their labels removed."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tagindex import Product, Tag, TagIndex
from tagindex.adapt import AdaptParams, ScoreAdjuster, adapt, adapt_vectors
from tagindex.adapt.enrich import drift_guard, mine_terms, tokens
from tagindex.adapt.hierarchy import depth_order, fixed_depth, leaves_mask, parent_rows, path_scores
from tagindex.adapt.hubness import fit_hubness, fit_occurrence_cap, k_occurrence
from tagindex.adapt.propagate import mutual_knn, spread
from tagindex.adapt.selftrain import confident, prototypes, pseudo_labels
from tagindex.io import load_products, load_tags
from tagindex.store import IndexFormatError, read_manifest
from tagindex.text import ancestors, tag_text

OFF = {
    "hubness": "none",
    "hierarchy": False,
    "leaves_only": False,
    "enrich": False,
    "rounds": 0,
    "occurrence_cap": False,
}


@pytest.fixture(scope="module")
def tags(mwpd_dir: Path) -> list[Tag]:
    return load_tags(mwpd_dir / "tags.jsonl")


@pytest.fixture(scope="module")
def catalog(mwpd_dir: Path) -> list[Product]:
    """The first 160 MWPD train offers without their labels."""
    products = load_products(mwpd_dir / "train.jsonl")[:160]
    return [Product(p.id, p.title, p.description, p.attributes) for p in products]


@pytest.fixture(scope="module")
def vectors(encoder, tags: list[Tag], catalog: list[Product]) -> dict:
    index = TagIndex.build(tags, encoder=encoder)
    by_id = index.by_id
    texts = [tag_text(t, by_id) for t in index.tags]
    return {
        "index": index,
        "texts": texts,
        "tags": np.stack([index.tag_vector(t.id) for t in index.tags]),
        "catalog": index.encode_products(catalog),
    }


# ---- hierarchy (pure logic on the real GS1 tree) ----------------------------------------------------
def test_path_scores_mix_each_tag_with_its_ancestors_mean(tags: list[Tag]) -> None:
    parents = parent_rows(tags)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, len(tags))).astype(np.float32)
    out = path_scores(scores, parents, 0.6)
    by_id = {t.id: t for t in tags}
    row = {t.id: i for i, t in enumerate(tags)}
    leaf = next(t for t in tags if len(ancestors(t.id, by_id)) == 2)
    anc = [row[a] for a in ancestors(leaf.id, by_id)]
    expected = 0.6 * scores[:, row[leaf.id]] + 0.4 * scores[:, anc].mean(axis=1)
    np.testing.assert_allclose(out[:, row[leaf.id]], expected, rtol=1e-5)
    root = next(i for i, t in enumerate(tags) if t.parent is None)
    np.testing.assert_array_equal(out[:, root], scores[:, root])
    leaves = leaves_mask(parents)
    assert leaves.sum() == sum(1 for t in tags if not any(o.parent == t.id for o in tags))


def test_decoding_is_leaves_only_on_a_fixed_level_tree_and_off_on_a_ragged_one(
    tags: list[Tag], shared_data: Path
) -> None:
    from tagindex.convert import shopify_categories

    gs1 = parent_rows(tags)  # every MWPD leaf is a level-3 GS1 class
    shopify = parent_rows(shopify_categories(shared_data / "shopify-taxonomy"))  # leaves at depths 1-8
    flat = np.full(5, -1, dtype=np.int64)
    assert fixed_depth(gs1) and not fixed_depth(shopify) and not fixed_depth(flat)
    # A few leaves off the common depth (orphans, an odd short branch) keep a fixed-level tree fixed.
    ragged_gs1 = np.concatenate([gs1, [-1]])
    assert fixed_depth(ragged_gs1) and not fixed_depth(ragged_gs1, share=1.0)
    auto = AdaptParams()
    assert auto.decoding(gs1) == (True, True)
    assert auto.decoding(shopify) == (False, False) and auto.decoding(flat) == (False, False)
    assert AdaptParams(leaves_only=True).decoding(shopify) == (False, True)
    assert AdaptParams(hierarchy=False).decoding(gs1) == (False, True)


def test_adapt_on_a_ragged_taxonomy_ranks_inner_tags(encoder, catalog: list[Product]) -> None:
    # "Hats" has kinds below it; in a ragged tree it stays an answer (for a hat of no stated kind).
    tags = [
        Tag("acc", "Clothing Accessories"),
        Tag("hats", "Hats", parent="acc"),
        Tag("top", "Top Hats", parent="hats"),
        Tag("sun", "Sun Hats", parent="hats"),
        Tag("belts", "Belts", parent="acc"),
        Tag("shoes", "Shoes"),
    ]
    quick = {**OFF, "hierarchy": None, "leaves_only": None}
    index, report = adapt(tags, catalog[:40], AdaptParams.from_dict(quick), encoder=encoder)
    assert report["adapt"]["decoding"] == {"hierarchy": False, "leaves_only": False}
    rows = {index.tags[int(r)].id for r in index.adjuster.rankable}
    assert rows == {t.id for t in tags}
    ranked = index.tag([Product("p", "Hats")], top_k=6)[0].tags
    assert {t.tag for t in ranked} == rows and ranked[0].tag == "hats"
    leaves, _ = adapt(
        tags, catalog[:40], AdaptParams.from_dict({**quick, "leaves_only": True}), encoder=encoder
    )
    assert {leaves.tags[int(r)].id for r in leaves.adjuster.rankable} == {"top", "sun", "belts", "shoes"}


def test_depth_order_rejects_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        depth_order(np.array([1, 0, -1]))


# ---- hubness ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", ["csls", "zscore"])
def test_hubness_correction_lowers_the_worst_hub(vectors: dict, method: str) -> None:
    cat, tag_vecs = vectors["catalog"], vectors["tags"]
    sims = cat @ tag_vecs.T
    before = k_occurrence(np.argsort(-sims, axis=1)[:, :5].tolist())
    bias, scale = fit_hubness(cat, tag_vecs, method, k=10)
    after = k_occurrence(np.argsort(-((sims - bias) / scale), axis=1)[:, :5].tolist())
    assert max(after.values()) < max(before.values())
    assert fit_hubness(cat, tag_vecs, "none")[0].tolist() == [0.0] * len(tag_vecs)
    with pytest.raises(ValueError, match="unknown hubness"):
        fit_hubness(cat, tag_vecs, "softmax")


# ---- k-occurrence cap (synthetic scores: the logic, exact counts checked by brute force) --------------
def _hub_scores(n: int = 400, n_tags: int = 40, seed: int = 0) -> np.ndarray:
    """Product i belongs to tag i % n_tags (clear winner); tag 0 is a hub, runner-up of everybody."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=0.1, size=(n, n_tags)).astype(np.float32)
    scores[np.arange(n), np.arange(n) % n_tags] += 2.0
    scores[:, 0] += 1.0
    return scores


def _top_k_share(scores: np.ndarray, penalty: np.ndarray, k: int) -> np.ndarray:
    top = np.argsort(-(scores - penalty), axis=1, kind="stable")[:, :k]
    return np.bincount(top.ravel(), minlength=scores.shape[1]) / len(scores)


@pytest.mark.parametrize("candidates", [1, 64])
def test_occurrence_cap_holds_on_its_catalog_and_spares_tags_under_it(candidates: int) -> None:
    scores = _hub_scores()
    before = _top_k_share(scores, np.zeros(40), 2)
    assert before[0] == 1.0  # the hub is in everybody's top 2
    # One candidate beyond k forces the exact fallback (full rescoring of the rows that need it).
    penalty, report = fit_occurrence_cap(
        lambda rows: scores[rows], len(scores), 40, k=2, limit=0.1, factor=2.0, candidates=candidates
    )
    after = _top_k_share(scores, penalty, 2)
    prevalence = np.bincount(np.argmax(scores, axis=1), minlength=40) / len(scores)
    assert (after <= np.maximum(0.1, 2.0 * prevalence) + 1e-9).all()
    assert penalty[0] > 0 and after[0] <= 0.1
    # Every other tag stays under its cap (own products + a share of the freed runner-up places).
    assert (before[1:] <= 0.1).all() and (penalty[1:] == 0).all()
    assert report["tags_over_cap_before"] == 1 and report["tags_over_cap_after"] == 0
    assert report["penalised_tags"] == 1 and report["max_share_after"] == pytest.approx(after.max(), abs=1e-4)


def test_occurrence_cap_respects_prevalence_and_is_deterministic() -> None:
    scores = _hub_scores(seed=1)
    scores[:120, 5] += 5.0  # tag 5 wins 30% of the catalog: a head, not a hub
    fit = lambda: fit_occurrence_cap(lambda rows: scores[rows], len(scores), 40, k=2, limit=0.05)  # noqa: E731
    (a, rep_a), (b, rep_b) = fit(), fit()
    np.testing.assert_array_equal(a, b)
    assert rep_a == rep_b
    after = _top_k_share(scores, a, 2)
    assert after[5] >= 0.3 and a[5] == 0  # within factor x prevalence: untouched
    # 5% is below twice the fair share of 40 tags in a top 2 (2 x 2 / 40): the limit rises to it.
    assert rep_a["limit_raised_to"] == pytest.approx(0.1)
    assert after[0] <= 0.1
    # Family prevalence: the hub shares tag 5's family, so it may reach twice the family's top-1 share.
    groups = np.arange(40)
    groups[0] = 5
    pen, rep = fit_occurrence_cap(lambda rows: scores[rows], len(scores), 40, k=2, limit=0.05, groups=groups)
    family = (np.argmax(scores, axis=1)[:, None] == [0, 5]).any(axis=1).mean()
    share = _top_k_share(scores, pen, 2)
    assert 0.1 < share[0] <= 2 * family and pen[0] < a[0]
    # k = 2 of 3 tags: twice the fair share is more than everything, so nothing is capped.
    pen, rep = fit_occurrence_cap(lambda rows: scores[rows][:, :3], len(scores), 3, k=2, limit=0.05)
    assert rep["limit_raised_to"] == 1.0 and rep["tags_over_cap_after"] == 0 and not pen.any()
    assert fit_occurrence_cap(lambda rows: scores[rows][:, :2], len(scores), 2, k=2)[0].tolist() == [0, 0]


def test_occurrence_cap_on_a_tiny_catalog_leaves_every_tag_a_place() -> None:
    # One product, 30 tags: 5% of the catalog rounds to no product; each tag may still hold one.
    scores = _hub_scores(n=1, n_tags=30)
    pen, rep = fit_occurrence_cap(lambda rows: scores[rows], 1, 30, k=5, limit=0.05)
    assert not pen.any() and rep["tags_over_cap_after"] == 0


def test_hub_statistics_are_skipped_where_hubs_cannot_exist() -> None:
    params = AdaptParams()
    # 5 / 0.05 = 100 tags: below that an average tag is in more than 5% of the top 5s.
    assert "37 rankable tags, fewer than 100" in (params.hub_skip(37, 10_000) or "")
    assert params.hub_skip(100, 10_000) is None and params.hub_skip(281, 20) is None
    assert "too few" in (params.hub_skip(281, 19) or "")
    assert AdaptParams(occurrence_limit=0.01).hub_skip(281, 10_000) is not None  # 500 needed
    assert AdaptParams(hub_min_tags=0).hub_skip(2, 1) is None  # forced on


def test_hub_defaults_follow_the_vocabulary_kind_and_shape(tags: list[Tag], shared_data: Path) -> None:
    from tagindex.convert import shopify_categories

    params = AdaptParams()
    flat = [Tag(id=t.id, name=t.name, kind=t.kind) for t in tags]  # GS1 classes without their tree
    values = [Tag(id=f"Color: {t.name}", name=f"Color: {t.name}", kind="attribute_value") for t in tags]
    shopify = shopify_categories(shared_data / "shopify-taxonomy")  # a ragged tree of categories
    assert {t.kind for t in tags} == {"category"} == {t.kind for t in shopify}
    # GS1: a fixed-level tree of categories keeps the hubness correction and the cap.
    assert params.resolved_hubness_weight(tags) == 0.3 and params.resolved_occurrence_cap(tags)
    for unlevelled in (flat, shopify):
        assert params.resolved_hubness_weight(unlevelled) == 0.0
        assert not params.resolved_occurrence_cap(unlevelled)
    assert params.resolved_hubness_weight(values) == 1.0 and params.resolved_occurrence_cap(values)
    # Explicit settings win.
    forced = AdaptParams(hubness_weight=0.5, occurrence_cap=True)
    assert forced.resolved_hubness_weight(flat) == 0.5 and forced.resolved_occurrence_cap(flat)


def test_adapt_on_a_small_coarse_vocabulary_skips_hubness_and_cap(
    vectors: dict, catalog: list[Product]
) -> None:
    # GS1 level 1 as a flat vocabulary (37 classes): no hubness statistics and no cap.
    rows = [i for i, t in enumerate(vectors["index"].tags) if t.parent is None]
    flat = [Tag(id=vectors["index"].tags[i].id, name=vectors["index"].tags[i].name) for i in rows]
    params = AdaptParams(enrich=False, rounds=1, lexical_weight=0.0)

    def run(p: AdaptParams):
        texts = [t.name for t in flat]
        return adapt_vectors(
            flat, texts, vectors["tags"][rows], vectors["catalog"], [c.title for c in catalog], p, None
        )

    result = run(params)
    assert "fewer than 100" in result.report["occurrence_cap"]["skipped"]
    assert "fewer than 100" in result.adjuster.info["hubness_skipped"]
    assert not result.adjuster.bias.any() and (result.adjuster.scale == 1).all()
    assert not result.adjuster.penalty.any()
    forced = run(replace(params, hub_min_tags=0))
    assert forced.adjuster.bias.any() and "skipped" not in forced.report["occurrence_cap"]


# ---- enrichment -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_enrichment_mines_terms_from_the_tags_own_products(vectors: dict, catalog: list[Product]) -> None:
    cat, tag_vecs, texts = vectors["catalog"], vectors["tags"], vectors["texts"]
    scores = cat @ tag_vecs.T
    top = np.argsort(-scores, axis=1)[:, :2]
    labels, margin = pseudo_labels(np.take_along_axis(scores, top, axis=1), top)
    titles = [p.title for p in catalog]
    terms = mine_terms(titles, labels, margin, texts, n_products=30, n_terms=5, min_share=0.2)
    mined = [i for i, t in enumerate(terms) if t]
    assert mined, "some tag should get terms from 160 real offers"
    for i in mined:
        own = [titles[j] for j in np.flatnonzero(labels == i)]
        for term in terms[i]:
            assert sum(term in tokens(t) for t in own) >= 2  # a term is shared by the tag's products
            assert term not in tokens(texts[i])
    same = drift_guard(tag_vecs[:3], tag_vecs[:3], 0.99)
    assert same.all()
    assert not drift_guard(tag_vecs[:3], tag_vecs[3:6], 0.99).any()


# ---- self-training and propagation -------------------------------------------------------------------
def test_confident_keeps_the_top_share_of_each_label() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, -1])
    strength = np.array([0.1, 0.4, 0.3, 0.2, 0.5, 0.1, 0.9])
    mask = confident(labels, strength, 0.5)
    assert mask.tolist() == [False, True, True, False, True, False, False]


@pytest.mark.slow
def test_prototypes_move_tags_toward_their_confident_products(vectors: dict, tags: list[Tag]) -> None:
    cat, tag_vecs = vectors["catalog"], vectors["tags"]
    scores = cat @ tag_vecs.T
    top = np.argsort(-scores, axis=1)[:, :2]
    labels, margin = pseudo_labels(np.take_along_axis(scores, top, axis=1), top)
    mask = confident(labels, margin, 0.5)
    parents = parent_rows(tags)
    new, counts = prototypes(tag_vecs, cat, labels, mask, parents, 0.5, 5.0)
    t = int(np.bincount(labels[mask]).argmax())
    centroid = cat[mask & (labels == t)].mean(axis=0)
    assert new[t] @ centroid > tag_vecs[t] @ centroid
    assert counts[parents[t]] >= counts[t] > 0  # a product counts for its tag's ancestors too
    untouched = counts == 0
    np.testing.assert_array_equal(new[untouched], tag_vecs[untouched])
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_label_propagation_reaches_unlabelled_neighbours(vectors: dict) -> None:
    cat = vectors["catalog"]
    nbrs, weights = mutual_knn(cat, 5)
    assert nbrs.shape == (len(cat), 5) and (weights >= 0).all()
    edges = {(i, j): w for i in range(len(cat)) for j, w in zip(nbrs[i], weights[i], strict=True) if w > 0}
    assert edges and all((j, i) in edges for i, j in edges)  # mutual edges only
    seeds = np.full(len(cat), -1)
    seeds[:20] = np.arange(20) % 4
    labels, share = spread(nbrs, weights, seeds, alpha=0.5, iterations=10)
    assert (labels[20:] >= 0).sum() > 0  # unlabelled products got a label
    assert set(labels[labels >= 0].tolist()) <= {0, 1, 2, 3}
    assert (labels[:20] == seeds[:20]).mean() > 0.8  # seeds mostly keep theirs with alpha 0.5
    assert ((share > 0) == (labels >= 0)).all()


# ---- the pipeline ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_adapt_vectors_is_deterministic_and_reports_rounds(vectors: dict, tags: list[Tag], catalog) -> None:
    params = AdaptParams(rounds=3, propagate=True, enrich=True, seed=3)
    enc = vectors["index"].encoder.encode
    titles = [p.title for p in catalog]
    a = adapt_vectors(tags, vectors["texts"], vectors["tags"], vectors["catalog"], titles, params, enc)
    b = adapt_vectors(tags, vectors["texts"], vectors["tags"], vectors["catalog"], titles, params, enc)
    np.testing.assert_array_equal(a.tag_vectors, b.tag_vectors)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.texts == b.texts
    assert 1 <= len(a.report["rounds"]) <= 3
    assert a.report["enrich"]["kept"] + a.report["enrich"]["rejected_by_drift_guard"] > 0
    leaves = leaves_mask(parent_rows(tags))
    assert leaves[a.labels].all()  # leaves-only decoding labels every product with a leaf


@pytest.mark.slow
def test_adapted_index_round_trip_and_single_products(
    encoder, tags: list[Tag], catalog: list[Product], tmp_path: Path
) -> None:
    leaves = {t.id for t in tags} - {t.parent for t in tags if t.parent}
    params = AdaptParams(
        rounds=2, occurrence_limit=0.1, occurrence_prevalence="tag", occurrence_prevalence_factor=2.0
    )
    index, report = adapt(tags, catalog, params, encoder=encoder)
    assert report["adapt"]["n_catalog"] == len(catalog)
    # The cap holds on the catalog it was fitted on, through the index's own tagging path.
    cap = report["adapt"]["occurrence_cap"]
    assert cap["tags_over_cap_before"] > 0 and cap["tags_over_cap_after"] == 0
    top5 = [[t.tag for t in r.tags if t.tag in leaves] for r in index.tag(catalog, top_k=5)]
    penalty, index.adjuster.penalty = index.adjuster.penalty, np.zeros_like(index.adjuster.penalty)
    won = k_occurrence([[t.tag for t in r.tags if t.tag in leaves] for r in index.tag(catalog, top_k=1)], 1)
    uncapped = k_occurrence([[t.tag for t in r.tags if t.tag in leaves] for r in index.tag(catalog, top_k=5)])
    index.adjuster.penalty = penalty
    shares = k_occurrence(top5)
    assert all(s <= max(0.1, 2.0 * won.get(t, 0.0)) + 1e-9 for t, s in shares.items())
    # Fewer tags above the limit (the largest may grow: it wins enough top-1 answers to be allowed).
    assert sum(s > 0.1 for s in shares.values()) < sum(s > 0.1 for s in uncapped.values())
    queries = catalog[:5]
    before = [r.to_dict() for r in index.tag(queries, top_k=5)]
    assert all(t["tag"] in leaves for r in before for t in r["tags"])
    single = index.tag_one(queries[0], top_k=5).to_dict()
    assert [t["tag"] for t in single["tags"]] == [t["tag"] for t in before[0]["tags"]]

    index.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx", "tagindex")  # files live in the live version
    assert manifest["adapt"]["hubness"] == "zscore"
    assert manifest["adapt"]["hubness_weight"] == 0.3  # the strength for a hierarchical vocabulary
    assert {"adapt/adjuster.safetensors", "adapt/adjuster.json"} <= set(manifest["files"])
    assert manifest["adapt"]["penalised_tags"] == int((index.adjuster.penalty > 0).sum()) > 0
    loaded = TagIndex.load(tmp_path / "idx", encoder=encoder)
    assert isinstance(loaded.adjuster, ScoreAdjuster)
    np.testing.assert_array_equal(loaded.adjuster.penalty, index.adjuster.penalty)
    after = [r.to_dict() for r in loaded.tag(queries, top_k=5)]
    assert after == before
    assert loaded.get(tags[0].id).name == tags[0].name

    (manifest.root / "adapt" / "adjuster.json").write_text("{}")
    with pytest.raises(IndexFormatError, match="checksum"):
        TagIndex.load(tmp_path / "idx", encoder=encoder)

    loaded.add_tags([Tag("new-tag", "Garden Gnomes")])
    assert loaded.adjuster is None  # per-tag statistics no longer fit the tag rows


def test_adjuster_penalties_rank_save_and_load(tmp_path: Path) -> None:
    sims = np.array([[0.9, 0.1, 0.5, 0.4]], dtype=np.float32)
    adj = ScoreAdjuster(np.zeros(4), np.ones(4), np.full(4, -1), penalty=np.array([0.6, 0, 0, 0]))
    assert adj.top(sims, 2)[1].tolist() == [[2, 1 + 2]]  # the penalised tag 0 drops out of the top 2
    assert adj.adjust(sims, penalise=False)[0, 0] == pytest.approx(0.9)
    adj.save(tmp_path)
    loaded = ScoreAdjuster.load(tmp_path, 4)
    np.testing.assert_array_equal(loaded.penalty, adj.penalty)
    assert loaded.describe() == adj.describe() and loaded.describe()["penalised_tags"] == 1
    # An adjuster written before the cap existed (no penalty array) loads with zero penalties.
    from safetensors.numpy import save_file

    save_file(
        {"bias": adj.bias, "scale": adj.scale, "parents": adj.parents},
        str(tmp_path / "adapt" / "adjuster.safetensors"),
    )
    old = ScoreAdjuster.load(tmp_path, 4)
    assert old.penalty.tolist() == [0.0] * 4 and old.top(sims, 1)[1].tolist() == [[0]]
    save_file(
        {"bias": adj.bias, "scale": adj.scale, "parents": adj.parents, "penalty": np.zeros(2)},
        str(tmp_path / "adapt" / "adjuster.safetensors"),
    )
    with pytest.raises(IndexFormatError, match="one entry per tag"):
        ScoreAdjuster.load(tmp_path, 4)


def test_adjuster_load_rejects_a_different_vocabulary(tmp_path: Path) -> None:
    adj = ScoreAdjuster(np.zeros(3), np.ones(3), np.array([-1, 0, 0]), 0.5, True)
    adj.save(tmp_path)
    assert ScoreAdjuster.load(tmp_path, 3).leaves_only
    with pytest.raises(IndexFormatError, match="covers 3 tags"):
        ScoreAdjuster.load(tmp_path, 4)
    scores, rows = adj.top(np.array([[0.9, 0.1, 0.5]], dtype=np.float32), 5)
    assert rows.tolist() == [[2, 1]]  # the root is not a leaf; leaves ranked by path score
    np.testing.assert_allclose(scores, [[0.7, 0.5]], rtol=1e-6)


def test_adapt_refuses_an_empty_catalog(tags: list[Tag]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        adapt(tags, [])


@pytest.mark.slow
def test_cli_adapt_writes_an_index_that_tag_reads(
    mwpd_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tagindex.cli import main

    catalog = tmp_path / "catalog.jsonl"
    with (mwpd_dir / "train.jsonl").open() as f:
        catalog.write_text("".join(next(f) for _ in range(80)))
    out = tmp_path / "idx"
    args = ["-q", "adapt", "--tags", str(mwpd_dir / "tags.jsonl"), "--products", str(catalog)]
    with caplog.at_level(logging.WARNING, logger="tagindex"):
        assert main([*args, "--out", str(out), "--rounds", "1"]) == 0
    # GS1's abstract names: few titles name a tag, so the CLI points at --graft.
    assert any("--graft" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    manifest = read_manifest(out, "tagindex")
    assert manifest["adapt"]["adapt_params"]["rounds"] == 1
    assert manifest["adapt"]["report"]["n_catalog"] == 80
    run = tmp_path / "run.jsonl"
    assert main(["-q", "tag", "--index", str(out), "--products", str(catalog), "--out", str(run)]) == 0
    rows = [json.loads(line) for line in run.read_text().splitlines()]
    assert len(rows) == 80 and all(r["tags"] for r in rows)
    assert main([*args[:-1], str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2
    # GS1 level 1 as a flat list of 37 categories: the manifest says why no hub statistics ran, and
    # the scores stay within the cosine's range (no runaway cap penalties on a small vocabulary).
    level1 = tmp_path / "level1.jsonl"
    roots = [json.loads(line) for line in (mwpd_dir / "tags.jsonl").read_text().splitlines()]
    level1.write_text("".join(json.dumps(t) + "\n" for t in roots if t.get("parent") is None))
    flat = tmp_path / "flat"
    assert main(["-q", "adapt", "--tags", str(level1), "--products", str(catalog), "--out", str(flat)]) == 0
    hubs = read_manifest(flat, "tagindex")["adapt"]["report"]["hub_statistics"]
    assert hubs["unlevelled_categories"] and hubs["hubness_weight"] == 0 and not hubs["occurrence_cap"]
    assert "37 rankable tags" in hubs["skipped"]
    assert main(["-q", "tag", "--index", str(flat), "--products", str(catalog), "--out", str(run)]) == 0
    scores = [t["score"] for line in run.read_text().splitlines() for t in json.loads(line)["tags"]]
    assert len(scores) == 80 * 10 and all(-2 < s < 5 for s in scores)


@pytest.mark.slow
def test_finetune_round_trains_on_pseudo_labels_and_ships_the_encoder(
    tags: list[Tag], catalog: list[Product], tiny_model: Path, tmp_path: Path
) -> None:
    # The tiny model proves the round trip (pseudo-labels -> training -> encoder shipped in the
    # index) in seconds; what fine-tuning is worth is measured with MiniLM by benchmarks/adapt_ablation.py.
    params = AdaptParams(rounds=1, enrich=False, finetune_rounds=1, finetune_max_products=60)
    index, report = adapt(tags, catalog[:80], params, work_dir=tmp_path / "work", model=str(tiny_model))
    (ft,) = report["finetune"]
    assert ft["pseudo_labelled"] > 0
    assert (tmp_path / "work" / "finetuned-1").is_dir()
    index.save(tmp_path / "idx")
    live = read_manifest(tmp_path / "idx", "tagindex", verify=False).root  # the versioned layout
    assert (live / "encoder").is_dir()  # the fine-tuned encoder travels with the index
    loaded = TagIndex.load(tmp_path / "idx")
    assert [t.tag for t in loaded.tag_one(catalog[0], top_k=3).tags] == [
        t.tag for t in index.tag_one(catalog[0], top_k=3).tags
    ]
