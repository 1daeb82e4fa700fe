"""Per-kind limits, thresholds and rules (:mod:`tagindex.kinds`), and the mixed-kind shop sample.

The sample (``data/examples/mixed-shop``) is 34 products and 43 tags (categories in a two-level tree,
keywords) whose expected answers were committed before any model ran on it. Its goal (issue 15):
every category right in the top 1 and no keyword in more than a third of the products unless it
applies there, through the CLI.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tagindex.candidates import Candidate, RankedCandidates
from tagindex.errors import CompatibilityError, InputError
from tagindex.kinds import MIN_NORM_BATCH, KindPolicy, KindRule, attribute_of, rescore
from tagindex.schema import Tag

SHOP = Path(__file__).resolve().parents[2] / "data" / "examples" / "mixed-shop"
GOAL_OPTIONS = [
    "--per-kind",
    "category=1,keyword=5@1.0",
    "--kind-norm",
    "keyword",
    "--category-title-weight",
    "0.5",
]


# ---- parsing ------------------------------------------------------------------------------------
def test_spec_parses_limits_and_thresholds() -> None:
    policy = KindPolicy.parse("category=1, keyword=5@0.45,attribute_value=@0.3")
    assert policy is not None
    assert policy.rules == {
        "category": KindRule(1, None),
        "keyword": KindRule(5, 0.45),
        "attribute_value": KindRule(None, 0.3),
    }
    assert KindPolicy.parse(policy.spec()) == policy
    assert KindPolicy.from_dict(policy.to_dict()) == policy


def test_nothing_asked_is_no_policy() -> None:
    assert KindPolicy.parse(None) is None
    assert KindPolicy.parse("", [], 0.0) is None


@pytest.mark.parametrize(
    "spec",
    ["category", "category=", "=1", "category=one", "category=-1", "keyword=5@x", "keyword=5@nan", "a=1,a=2"],
)
def test_bad_spec_is_an_input_error(spec: str) -> None:
    with pytest.raises(InputError, match="--per-kind"):
        KindPolicy.parse(spec)


def test_bad_title_weight_and_norm_kind() -> None:
    with pytest.raises(InputError, match="title weight"):
        KindPolicy.parse(None, None, 1.5)
    with pytest.raises(InputError, match="kind name"):
        KindPolicy.parse(None, "key word")


# ---- selection ----------------------------------------------------------------------------------
def _vocabulary() -> dict[str, Tag]:
    tags = [
        Tag("bags", "Bags", kind="category"),
        Tag("backpacks", "Backpacks", parent="bags", kind="category"),
        Tag("daypacks", "Daypacks", parent="backpacks", kind="category"),
        Tag("outerwear", "Outerwear", kind="category"),
        Tag("rain-jackets", "Rain Jackets", parent="outerwear", kind="category"),
        Tag("waterproof", "waterproof", kind="keyword"),
        Tag("light", "lightweight", kind="keyword"),
        Tag("eco", "eco-friendly", kind="keyword"),
        Tag("color", "Color", kind="attribute"),
        Tag("red", "Red", parent="color", kind="attribute_value"),
        Tag("blue", "Blue", parent="color", kind="attribute_value"),
        Tag("mat-nylon", "Material: Nylon", kind="attribute_value"),
        Tag("mat-cotton", "Material: Cotton", kind="attribute_value"),
        Tag("size-l", "Size: L", kind="attribute_value"),
    ]
    return {t.id: t for t in tags}


def _ranked(*pairs: tuple[str, float]) -> RankedCandidates:
    return RankedCandidates("p", [Candidate(t, s, None, s) for t, s in pairs])


def _kept(policy: KindPolicy, ranked: RankedCandidates, top_k: int = 10) -> list[str]:
    return [c.tag for c in policy.select([ranked], _vocabulary(), top_k)[0].candidates]


def test_categories_form_one_path() -> None:
    policy = KindPolicy.parse("category=5")
    assert policy is not None
    ranked = _ranked(("backpacks", 0.9), ("rain-jackets", 0.8), ("bags", 0.7), ("daypacks", 0.6))
    # rain jackets is another branch; the ancestor and the descendant of the best lie on its path
    assert _kept(policy, ranked) == ["backpacks", "bags", "daypacks"]


def test_limits_thresholds_and_top_k() -> None:
    policy = KindPolicy.parse("category=1,keyword=2@0.5")
    assert policy is not None
    ranked = _ranked(
        ("waterproof", 0.95), ("backpacks", 0.9), ("light", 0.7), ("bags", 0.6), ("eco", 0.55), ("red", 0.4)
    )
    assert _kept(policy, ranked) == ["waterproof", "backpacks", "light", "red"]
    assert _kept(policy, ranked, top_k=2) == ["waterproof", "backpacks"]
    below = KindPolicy.parse("keyword=@0.8")
    assert below is not None
    assert _kept(below, ranked) == ["waterproof", "backpacks", "bags", "red"]  # rules still apply


def test_one_value_per_attribute() -> None:
    policy = KindPolicy.parse("attribute_value=10")
    assert policy is not None
    ranked = _ranked(("red", 0.9), ("mat-nylon", 0.8), ("blue", 0.7), ("mat-cotton", 0.6), ("size-l", 0.5))
    assert _kept(policy, ranked) == ["red", "mat-nylon", "size-l"]
    by_id = _vocabulary()
    assert attribute_of(by_id["blue"], by_id) == "color"
    assert attribute_of(by_id["mat-cotton"], by_id) == attribute_of(by_id["mat-nylon"], by_id)


def test_unknown_kind_is_refused() -> None:
    policy = KindPolicy.parse("categroy=1")
    assert policy is not None
    with pytest.raises(InputError, match="categroy"):
        policy.check(_vocabulary())


def test_kind_norm_is_a_per_tag_z_score_over_the_batch() -> None:
    tags = [Tag("c", "C", kind="category"), Tag("hub", "hub", kind="keyword"), Tag("k", "k", kind="keyword")]
    rng = np.random.default_rng(0)
    tag_vectors = np.eye(3, dtype=np.float32)
    vectors = rng.random((MIN_NORM_BATCH, 3)).astype(np.float32)
    policy = KindPolicy.parse("keyword=1", "keyword")
    assert policy is not None
    scores = rescore(policy, tags, tag_vectors, vectors)
    assert scores is not None and scores.tags == ["hub", "k"]
    expected = (vectors[:, 1:] - vectors[:, 1:].mean(0)) / vectors[:, 1:].std(0)
    np.testing.assert_allclose(scores.selection, expected, rtol=1e-5)
    np.testing.assert_allclose(scores.raw, vectors[:, 1:], rtol=1e-6)
    with pytest.raises(InputError, match="at least"):
        rescore(policy, tags, tag_vectors, vectors[:2])


def test_rescored_tags_excluded_for_a_product_stay_out() -> None:
    from tagindex.kinds import RescoredKinds

    policy = KindPolicy.parse("keyword=2", "keyword")
    assert policy is not None
    scores = np.array([[2.0, 1.0, 0.5], [2.0, 1.0, 0.5]])
    raw = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]])
    rescored = RescoredKinds(["waterproof", "light", "eco"], scores, raw, excluded=[{"waterproof"}, set()])
    ranked = [RankedCandidates("a", []), RankedCandidates("b", [])]
    kept = policy.select(ranked, _vocabulary(), 10, rescored)
    assert [c.tag for c in kept[0].candidates] == ["light", "eco"]
    assert [c.tag for c in kept[1].candidates] == ["waterproof", "light"]
    assert [c.score for c in kept[1].candidates] == [0.9, 0.8]  # the written score is the cosine


# ---- the mixed-kind shop, through the CLI -------------------------------------------------------
def _expected() -> dict[str, tuple[str, set[str]]]:
    with (SHOP / "expected.csv").open(newline="") as f:
        return {
            r["id"]: (r["category"], set(filter(None, r["keywords"].split("|")))) for r in csv.DictReader(f)
        }


def _kinds() -> dict[str, str]:
    with (SHOP / "tags.csv").open(newline="") as f:
        return {r["id"]: r["kind"] for r in csv.DictReader(f)}


def test_labelled_file_is_products_plus_expected_answers() -> None:
    from tagindex.io import load_products

    products = {p.id: p for p in load_products(SHOP / "products.csv")}
    labelled = load_products(SHOP / "labelled.csv")
    expected = _expected()
    assert [p.id for p in labelled] == list(products) == list(expected)
    for p in labelled:
        category, keywords = expected[p.id]
        assert (p.title, p.description) == (products[p.id].title, products[p.id].description)
        assert p.tags[0] == category and set(p.tags[1:]) == keywords


@pytest.fixture(scope="module")
def shop_index(encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    out = tmp_path_factory.mktemp("mixed-shop") / "index"
    TagIndex.build(load_tags(SHOP / "tags.csv"), encoder=encoder).save(out)
    return out


def _run(path: Path) -> dict[str, list[dict]]:
    return {r["id"]: r["tags"] for r in map(json.loads, path.read_text().splitlines())}


def test_mixed_shop_goal_through_the_cli(shop_index: Path, tmp_path: Path) -> None:
    from tagindex.cli import main

    out = tmp_path / "run.jsonl"
    args = ["-q", "tag", "--index", str(shop_index), "--products", str(SHOP / "products.csv")]
    assert main([*args, "--out", str(out), *GOAL_OPTIONS]) == 0
    run, expected, kind = _run(out), _expected(), _kinds()
    assert set(run) == set(expected)
    wrong = {}
    assigned: dict[str, set[str]] = {}
    for pid, (category, _) in expected.items():
        tags = [t["tag"] for t in run[pid]]
        categories = [t for t in tags if kind[t] == "category"]
        if categories[:1] != [category]:
            wrong[pid] = categories[:1]
        assert len(categories) == 1 and sum(kind[t] == "keyword" for t in tags) <= 5
        for t in tags:
            if kind[t] == "keyword":
                assigned.setdefault(t, set()).add(pid)
    assert not wrong, f"category not top 1: {wrong}"
    third = len(expected) / 3
    for keyword, products in assigned.items():
        applies = {pid for pid, (_, kws) in expected.items() if keyword in kws}
        assert len(products) <= third or products <= applies, (keyword, sorted(products - applies))
    # the keywords found are not an empty answer: most that apply are found
    hits = sum(len(ps & {p for p, (_, k) in expected.items() if kw in k}) for kw, ps in assigned.items())
    truth = sum(len(k) for _, k in expected.values())
    assert hits / truth >= 0.6


def test_the_goal_options_carry_to_the_quick_start_shop(tmp_path: Path) -> None:
    """The options above were chosen while looking at the mixed shop; this checks them on a shop
    they were not chosen on: data/examples (20 products; its categories were written down in
    test_examples.py before any run), with the quick-start tag list given kinds."""
    from test_examples import CATEGORIES, EXAMPLES, EXPECTED

    from tagindex.cli import main

    names = [n.strip() for n in (EXAMPLES / "tags.txt").read_text().splitlines() if n.strip() and n[0] != "#"]
    rows = ["id,name,kind"] + [
        f"{n.lower()},{n},{'category' if n.lower() in CATEGORIES else 'keyword'}" for n in names
    ]
    (tmp_path / "tags.csv").write_text("\n".join(rows) + "\n")
    assert main(["-q", "index", "--tags", str(tmp_path / "tags.csv"), "--out", str(tmp_path / "idx")]) == 0
    out = tmp_path / "run.jsonl"
    args = ["-q", "tag", "--index", str(tmp_path / "idx"), "--products", str(EXAMPLES / "products.csv")]
    assert main([*args, "--out", str(out), *GOAL_OPTIONS]) == 0
    run = _run(out)
    top = {pid: next((t["tag"] for t in tags if t["tag"] in CATEGORIES), None) for pid, tags in run.items()}
    assert {pid: top[pid] for pid in EXPECTED} == EXPECTED
    spread: dict[str, int] = {}
    for tags in run.values():
        for t in tags:
            if t["tag"] not in CATEGORIES:
                spread[t["tag"]] = spread.get(t["tag"], 0) + 1
    assert max(spread.values()) <= len(run) / 3, spread  # "lightweight" was on 9 of 20 top-3 lists


def test_python_api_applies_the_same_policy(shop_index: Path, tmp_path: Path) -> None:
    from tagindex.cli import main
    from tagindex.index import TagIndex
    from tagindex.io import load_products
    from tagindex.kinds import KindPolicy

    out = tmp_path / "run.jsonl"
    options = ["--per-kind", "category=2,keyword=3@0.3", "--ancestors"]
    args = ["-q", "tag", "--index", str(shop_index), "--products", str(SHOP / "products.csv")]
    assert main([*args, "--out", str(out), *options]) == 0
    index = TagIndex.load(shop_index)
    products = load_products(SHOP / "products.csv")
    api = index.tag(products, include_ancestors=True, per_kind="category=2,keyword=3@0.3")
    assert {r.id: r.to_dict()["tags"] for r in api} == _run(out)
    by_id, kinds = index.by_id, _kinds()
    for result in api:  # one category path: every two categories are ancestor and descendant
        cats = [t.tag for t in result.tags if kinds[t.tag] == "category"]
        for a in cats:
            for b in cats:
                from tagindex.text import ancestors

                assert a == b or a in ancestors(b, by_id) or b in ancestors(a, by_id)
    same = index.tag(products, per_kind=KindPolicy.parse("category=2,keyword=3@0.3"))
    assert [r.to_dict() for r in same] == [
        r.to_dict() for r in index.tag(products, per_kind="category=2,keyword=3@0.3")
    ]


def test_bad_per_kind_is_one_line_and_exit_2(
    shop_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tagindex.cli import main

    args = ["-q", "tag", "--index", str(shop_index), "--products", str(SHOP / "products.csv")]
    assert main([*args, "--out", str(tmp_path / "r.jsonl"), "--per-kind", "category=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "category=x" in err[0]
    assert main([*args, "--out", str(tmp_path / "r.jsonl"), "--per-kind", "colour=1"]) == 2
    assert "colour" in capsys.readouterr().err


def test_rescoring_refuses_an_index_with_exemplars(encoder) -> None:
    from tagindex.index import TagIndex
    from tagindex.io import load_products, load_tags
    from tagindex.pipeline import TaggingPipeline
    from tagindex.schema import Product

    index = TagIndex.build(load_tags(SHOP / "tags.csv"), encoder=encoder)
    index.add_exemplars([Product("x", "Leather boots", tags=["boots"])])
    products = load_products(SHOP / "products.csv")
    policy = KindPolicy.parse("keyword=2", "keyword")
    with pytest.raises(CompatibilityError, match="cosines"):
        TaggingPipeline(index).tag(products, per_kind=policy)
