"""Exemplar scoring: the scoring rule on hand-made vectors, and exemplars in a saved index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tagindex.config import ExemplarParams
from tagindex.exemplars import ExemplarScorer, ExemplarSet, most_specific
from tagindex.schema import Product, Tag
from tagindex.store import read_manifest

TAGS = [
    Tag("food", "Food"),
    Tag("fruit", "Fruit", parent="food"),
    Tag("veg", "Vegetables", parent="food"),
    Tag("tools", "Tools"),
    Tag("hammer", "Hammer", parent="tools"),
]


def unit(*rows: list[float]) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# Tag text vectors: one axis per leaf-ish tag, parents in between.
TAG_VECTORS = unit(
    [1, 1, 0, 0],  # food
    [1, 0, 0, 0],  # fruit
    [0, 1, 0, 0],  # veg
    [0, 0, 1, 1],  # tools
    [0, 0, 1, 0],  # hammer
)


def test_most_specific_drops_ancestors_and_unknown_ids() -> None:
    by_id = {t.id: t for t in TAGS}
    assert most_specific(["food", "fruit", "nope"], by_id) == ["fruit"]
    assert most_specific(["fruit", "hammer", "tools"], by_id) == ["fruit", "hammer"]
    assert most_specific(["food"], by_id) == ["food"]
    # A level-1 label from another branch than the deeper label is noise, not a second answer.
    assert most_specific(["tools", "fruit"], by_id) == ["fruit"]
    assert most_specific(["hammer", "fruit"], by_id) == ["hammer", "fruit"]


def test_without_exemplars_the_score_is_the_text_cosine_over_leaves() -> None:
    scorer = ExemplarScorer(TAGS, TAG_VECTORS, ExemplarSet([], [], np.zeros((0, 4), np.float32)))
    assert scorer.targets == ["fruit", "veg", "hammer"]  # leaves only; parents come from the hierarchy
    q = unit([0.9, 0.1, 0.3, 0.0])
    expected = q @ TAG_VECTORS[[1, 2, 4]].T
    np.testing.assert_allclose(scorer.score(q), expected, rtol=1e-6)


def test_votes_and_prototypes_pull_seen_tags_and_leave_unseen_tags_on_text() -> None:
    # Exemplars labelled "veg" sit on the 4th axis, far from the veg text: a product there is veg.
    exemplars = ExemplarSet(
        ["a", "b", "c"],
        [["food", "veg"], ["food", "veg"], ["tools", "hammer"]],
        unit([0, 0.1, 0, 1], [0, 0.2, 0, 1], [0, 0, 1, 0.1]),
    )
    params = ExemplarParams(k=2, temperature=0.05, vote_weight=1.0, shrinkage=1.0)
    scorer = ExemplarScorer(TAGS, TAG_VECTORS, exemplars, params)
    q = unit([0.3, 0.0, 0.0, 1.0])
    scores = dict(zip(scorer.targets, scorer.score(q)[0].tolist(), strict=True))
    assert max(scores, key=scores.__getitem__) == "veg"
    # fruit has no exemplar: its score is exactly its text cosine (no vote, no prototype).
    assert scores["fruit"] == pytest.approx(float(q[0] @ TAG_VECTORS[1]), rel=1e-6)
    # The two nearest exemplars are both veg: the vote is the whole weight.
    votes = scorer.votes(q)[0]
    assert votes[scorer.targets.index("veg")] == pytest.approx(1.0)
    assert votes.sum() == pytest.approx(1.0)
    # Shrinkage: two veg exemplars and shrinkage 1 -> lam = 2/3 on the prototype.
    assert scorer.lam[scorer.targets.index("veg")] == pytest.approx(2 / 3)
    assert scorer.lam[scorer.targets.index("fruit")] == 0.0


def test_multi_label_exemplar_votes_fully_for_each_label_and_ties_are_stable() -> None:
    exemplars = ExemplarSet(["x"], [["fruit", "hammer"]], unit([1, 0, 1, 0]))
    scorer = ExemplarScorer(TAGS, TAG_VECTORS, exemplars, ExemplarParams(k=5, shrinkage=0.0))
    votes = scorer.votes(unit([1, 0, 1, 0]))[0]
    # Both labels get the exemplar's whole weight (not half each); that weight is just under 1 here
    # because the index holds fewer than k exemplars (see the next test).
    fruit, hammer = votes[scorer.targets.index("fruit")], votes[scorer.targets.index("hammer")]
    assert fruit == pytest.approx(hammer) and fruit > 0.95
    scores, ids = scorer.top(unit([1, 0, 1, 0]), 3)
    assert ids[0][:2] == ["fruit", "hammer"]  # equal scores keep vocabulary order
    assert scores[0][0] == pytest.approx(scores[0][1])


def test_a_lone_exemplar_wins_only_products_closer_to_it_than_to_any_tag_text() -> None:
    # One judged product labelled "fruit" by a merchandiser (no tag text within 0.7 of it): with k=20
    # and a single exemplar, a plain softmax would give it the whole vote of every product.
    exemplars = ExemplarSet(["x"], [["fruit"]], unit([1, 1, 1, -1]))
    scorer = ExemplarScorer(TAGS, TAG_VECTORS, exemplars, ExemplarParams(k=20, shrinkage=0.0))
    fruit = scorer.targets.index("fruit")
    twin, far = scorer.votes(unit([1, 1, 1, -1], [0, 0, 1, 0.2]))[:, fruit]
    assert twin > 0.9  # the judged product itself (and its near-identical twins) follow the judgement
    assert far < 0.05  # a product nearer the "hammer" text than the exemplar barely feels it
    # With k exemplars or more nothing is padded: the softmax is the plain one.
    full = ExemplarSet([str(i) for i in range(3)], [["fruit"]] * 3, unit(*[[1, 1, 1, -1]] * 3))
    plain = ExemplarScorer(TAGS, TAG_VECTORS, full, ExemplarParams(k=3, shrinkage=0.0))
    assert plain.votes(unit([0, 0, 1, 0.2]))[0, plain.targets.index("fruit")] == pytest.approx(1.0)


def test_a_parent_used_as_deepest_label_becomes_a_target() -> None:
    exemplars = ExemplarSet(["p"], [["tools"]], unit([0, 0, 0, 1]))
    scorer = ExemplarScorer(TAGS, TAG_VECTORS, exemplars)
    assert "tools" in scorer.targets and "food" not in scorer.targets


@pytest.mark.slow
def test_index_with_exemplars_round_trips_and_ranks_through_them(tmp_path: Path, encoder) -> None:
    from tagindex.cli import main
    from tagindex.index import TagIndex
    from tagindex.io import write_jsonl

    tags = [
        Tag("kitchen", "Kitchen"),
        Tag("kettle", "Kettles", parent="kitchen"),
        Tag("toaster", "Toasters", parent="kitchen"),
        Tag("garden", "Garden"),
        Tag("hose", "Garden hoses", parent="garden"),
    ]
    train = [
        Product("1", "Russell Hobbs 1.7L cordless jug", tags=["kitchen", "kettle"]),
        Product("2", "Bosch electric water boiler 1.5 litre", tags=["kitchen", "kettle"]),
        Product("3", "Philips 2-slice bread browning machine", tags=["kitchen", "toaster"]),
        Product("4", "Hozelock 25m reel with spray gun", tags=["garden", "hose"]),
    ]
    index = TagIndex.build(tags, encoder=encoder)
    assert index.add_exemplars(train) == 4
    query = [Product("q", "Tefal cordless jug 1.7 litre stainless")]
    before = index.tag(query, top_k=3, include_ancestors=True)[0]
    assert before.tags[0].tag == "kettle" and before.tags[1].tag == "kitchen"
    index.save(tmp_path / "idx")
    manifest = read_manifest(tmp_path / "idx", "tagindex", verify=False)
    assert manifest["n_exemplars"] == 4
    assert {"exemplars.parquet", "exemplar_vectors.safetensors"} <= set(manifest["files"])
    loaded = TagIndex.load(tmp_path / "idx", encoder=encoder)
    assert loaded.n_exemplars == 4
    after = loaded.tag(query, top_k=3, include_ancestors=True)[0]
    assert [t.tag for t in after.tags] == [t.tag for t in before.tags]
    np.testing.assert_allclose([t.score for t in after.tags], [t.score for t in before.tags], rtol=1e-5)

    with pytest.raises(ValueError, match="not in the index"):
        index.add_exemplars([Product("5", "x", tags=["nope"])])
    with pytest.raises(ValueError, match="no tags"):
        index.add_exemplars([Product("6", "x")])

    # The CLI stores exemplars with --products; `tag` keeps the run format.
    write_jsonl(tmp_path / "tags.jsonl", (t.to_dict() for t in tags))
    write_jsonl(tmp_path / "train.jsonl", (p.to_dict() for p in train))
    write_jsonl(tmp_path / "q.jsonl", (p.to_dict() for p in query))
    args = [
        "-q",
        "index",
        "--tags",
        str(tmp_path / "tags.jsonl"),
        "--products",
        str(tmp_path / "train.jsonl"),
    ]
    assert main([*args, "--out", str(tmp_path / "cli-idx")]) == 0
    run = tmp_path / "run.jsonl"
    assert (
        main(
            [
                "-q",
                "tag",
                "--index",
                str(tmp_path / "cli-idx"),
                "--products",
                str(tmp_path / "q.jsonl"),
                "--out",
                str(run),
                "--top-k",
                "2",
            ]
        )
        == 0
    )
    line = json.loads(run.read_text().splitlines()[0])
    assert line["id"] == "q" and [t["tag"] for t in line["tags"]][0] == "kettle"
    assert set(line["tags"][0]) <= {"tag", "score", "name", "ancestor_of"}


def test_leave_one_out_scores_an_exemplar_as_if_it_were_not_stored() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(12, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [["food", "fruit"], ["food", "veg"], ["tools", "hammer"]] * 4
    labels[5] = ["fruit", "hammer"]  # a multi-label exemplar
    exemplars = ExemplarSet([f"e{i}" for i in range(12)], labels, vectors)
    params = ExemplarParams(k=4, shrinkage=2.0, unseen_offset=0.1, parent_vote_weight=0.2)
    scorer = ExemplarScorer(TAGS, TAG_VECTORS, exemplars, params)
    for r in (0, 5, 11):
        keep = [i for i in range(12) if i != r]
        without = ExemplarScorer(
            TAGS,
            TAG_VECTORS,
            ExemplarSet([f"e{i}" for i in keep], [labels[i] for i in keep], vectors[keep]),
            params,
        )
        loo = scorer.score(vectors[r : r + 1], exclude=scorer.exemplar_rows([f"e{r}"]))
        np.testing.assert_allclose(loo, without.score(vectors[r : r + 1]), rtol=1e-5, atol=1e-6)
    # Without leaving it out, the exemplar's own vector pulls its tags up.
    assert not np.allclose(scorer.score(vectors[:1]), scorer.score(vectors[:1], exclude=np.array([0])))
    assert scorer.exemplar_rows(["e3", "nope"]).tolist() == [3, -1]


def test_few_exemplars_score_with_the_few_shot_settings() -> None:
    params = ExemplarParams(k=20, vote_weight=0.5, few_shot_below=3, few_shot_k=2, few_shot_vote_weight=0.1)
    few = params.for_exemplars(2)
    assert (few.k, few.vote_weight) == (2, 0.1) and few.temperature == params.temperature
    assert params.for_exemplars(3) is params  # at the threshold the regular settings score
    assert ExemplarParams(few_shot_below=0).for_exemplars(1).k == ExemplarParams().k  # 0 turns it off


def test_the_index_scorer_follows_the_exemplar_count(encoder) -> None:
    from tagindex.config import TagIndexParams
    from tagindex.index import TagIndex

    tags = [Tag("kettle", "Kettles"), Tag("toaster", "Toasters")]
    train = [
        Product("1", "cordless jug 1.7L", tags=["kettle"]),
        Product("2", "2-slice bread toaster", tags=["toaster"]),
        Product("3", "water boiler", tags=["kettle"]),
    ]
    params = TagIndexParams()
    params.exemplars = ExemplarParams(k=20, vote_weight=0.5, few_shot_below=4, few_shot_k=2, fit_gate=False)
    index = TagIndex.build(tags, params, encoder=encoder)
    index.add_exemplars(train)
    scorer = index.scorer()
    assert scorer is not None and (scorer.params.k, scorer.params.vote_weight) == (2, 0.15)
    index.add_exemplars([Product("4", "toaster oven", tags=["toaster"])])
    scorer = index.scorer()
    assert scorer is not None and (scorer.params.k, scorer.params.vote_weight) == (20, 0.5)
    assert index.params.exemplars.k == 20  # the stored settings are unchanged
