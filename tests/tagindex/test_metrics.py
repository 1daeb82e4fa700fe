"""Metric code against hand-computed cases, scikit-learn and ranx; the evaluate CLI via subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tagindex.metrics import (
    bucket_name,
    evaluate,
    format_report,
    gold_from_products,
    level_rankings,
    read_run,
    tag_levels,
    weighted_f1,
)
from tagindex.schema import Product, Tag

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"


def _run(rows: dict[str, list[str]]) -> dict[str, list[tuple[str, float]]]:
    return {pid: [(t, 1.0 - 0.01 * i) for i, t in enumerate(tags)] for pid, tags in rows.items()}


def test_hand_computed_ranking_metrics() -> None:
    run = _run({"p1": ["a", "b", "c"], "p2": ["x", "y", "a"]})
    gold = {"p1": ["b", "z"], "p2": ["a"]}
    r = evaluate(run, gold, ks=(1, 2, 3))["overall"]
    # p1: b at rank 2, z never; p2: a at rank 3.
    assert r["recall@1"] == pytest.approx(0.0)
    assert r["recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert r["recall@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["micro_recall@3"] == pytest.approx(2 / 3)
    # tags b, z, a: recall@3 1, 0, 1.
    assert r["macro_recall@3"] == pytest.approx(2 / 3)
    assert r["precision@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert r["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert r["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    ndcg_p1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    ndcg_p2 = (1 / np.log2(4)) / 1
    assert r["ndcg@3"] == pytest.approx((ndcg_p1 + ndcg_p2) / 2)
    # macro precision@1: tags shown at rank 1 are a (wrong for p1) and x (wrong for p2).
    assert r["macro_precision@1"] == pytest.approx(0.0)


def test_missing_products_count_as_misses_and_repeats_keep_first_rank() -> None:
    run = _run({"p1": ["a", "a", "b"], "extra": ["a"]})
    gold = {"p1": ["b"], "p2": ["a"], "unlabelled": []}
    report = evaluate(run, gold, ks=(2,))
    assert report["n_evaluated"] == 2
    assert report["n_missing_from_run"] == 1
    assert report["n_run_not_in_gold"] == 1
    assert report["overall"]["recall@2"] == pytest.approx(0.5)  # p1 hits b at rank 2 after dedup


def _tree() -> list[Tag]:
    return [
        Tag("A", "A"),
        Tag("B", "B"),
        Tag("A1", "A1", parent="A"),
        Tag("A2", "A2", parent="A"),
        Tag("B1", "B1", parent="B"),
        Tag("A1x", "A1x", parent="A1"),
        Tag("A2x", "A2x", parent="A2"),
        Tag("B1x", "B1x", parent="B1"),
    ]


def test_levels_and_leaf_only_runs_use_ancestors() -> None:
    tags = _tree()
    assert tag_levels(tags) == {"A": 1, "B": 1, "A1": 2, "A2": 2, "B1": 2, "A1x": 3, "A2x": 3, "B1x": 3}
    leaf_run = _run({"p": ["A2x", "B1x", "A1x"]})
    ranked, mode = level_rankings(leaf_run, tags, 1)
    assert mode == "ancestors" and ranked["p"] == ["A", "B"]
    mixed = _run({"p": ["B1x", "A", "A1", "B1"]})
    ranked, mode = level_rankings(mixed, tags, 1)
    assert mode == "filter" and ranked["p"] == ["A"]  # best-ranked level-1 tag, not B1x's ancestor


def test_weighted_f1_hand_case_and_sklearn() -> None:
    y_true = ["a", "a", "b", "c"]
    y_pred = ["a", "b", "b", None]
    # a: P=1, R=.5, F=2/3 (support 2); b: P=.5, R=1, F=2/3 (support 1); c: 0.
    assert weighted_f1(y_true, y_pred) == pytest.approx((2 * 2 / 3 + 2 / 3) / 4)
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels = [f"l{i}" for i in range(12)]
    for _ in range(5):
        t = list(rng.choice(labels, 200))
        p = list(rng.choice(labels + ["zz"], 200))
        expected = f1_score(t, p, average="weighted", zero_division=0)
        assert weighted_f1(t, p) == pytest.approx(expected)


def test_challenge_metric_is_mean_of_level_f1() -> None:
    tags = _tree()
    gold = {
        "p1": ["A", "A1", "A1x"],
        "p2": ["A", "A2", "A2x"],
        "p3": ["B", "B1", "B1x"],
    }
    run = _run({"p1": ["A1x"], "p2": ["A1x"], "p3": ["B1x"]})  # leaf-only run
    report = evaluate(run, gold, tags=tags, ks=(1,))
    # level 1 all right; levels 2 and 3: p2 wrong -> labels A1 (P .5 R 1, F 2/3), A2 (0), B1 (1),
    # each with support 1.
    f_lvl = (2 / 3 + 0 + 1) / 3
    assert report["levels"]["1"]["weighted_f1"] == pytest.approx(1.0)
    assert report["levels"]["2"]["weighted_f1"] == pytest.approx(f_lvl)
    assert report["levels"]["3"]["weighted_f1"] == pytest.approx(f_lvl)
    assert report["challenge"] == pytest.approx((1 + 2 * f_lvl) / 3)


def test_buckets_from_training_counts() -> None:
    assert [bucket_name(c, (5, 38)) for c in (0, 5, 6, 38, 39)] == ["<=5", "<=5", "6-38", "6-38", ">38"]
    train = [Product(f"t{i}", "x", tags=["head"]) for i in range(40)] + [Product("r", "x", tags=["rare"])]
    gold = {"p1": ["head"], "p2": ["rare"], "p3": ["rare"]}
    run = _run({"p1": ["head"], "p2": ["x", "rare"], "p3": ["x"]})
    report = evaluate(run, gold, train=train, ks=(1, 2))
    tail, head = report["buckets"]["<=5"], report["buckets"][">38"]
    assert tail["n_tags"] == 1 and tail["n_pairs"] == 2
    assert tail["macro_recall@1"] == 0.0 and tail["macro_recall@2"] == pytest.approx(0.5)
    assert head["macro_recall@1"] == 1.0
    assert report["buckets"]["6-38"]["n_pairs"] == 0
    auto = evaluate(run, gold, train=train, ks=(1,), bucket_edges="auto")
    assert len(auto["bucket_edges"]) == 2
    assert "buckets" in auto and format_report(auto)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_ranx_on_random_runs(seed: int) -> None:
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(seed)
    vocab = [f"t{i}" for i in range(60)]
    run: dict[str, list[tuple[str, float]]] = {}
    gold: dict[str, list[str]] = {}
    for q in range(80):
        pid = f"q{q}"
        gold[pid] = list(rng.choice(vocab, int(rng.integers(1, 5)), replace=False))
        ranked = rng.choice(vocab, int(rng.integers(1, 30)), replace=False)
        scores = np.sort(rng.random(len(ranked)))[::-1] + 1e-3 * np.arange(len(ranked))[::-1]
        run[pid] = [(str(t), float(s)) for t, s in zip(ranked, scores, strict=True)]
    ours = evaluate(run, gold, ks=(1, 5, 10))["overall"]
    qrels = ranx.Qrels({q: {t: 1 for t in g} for q, g in gold.items()})
    rrun = ranx.Run({q: dict(r) for q, r in run.items()})
    names = [
        "recall@1",
        "recall@5",
        "recall@10",
        "precision@1",
        "precision@5",
        "precision@10",
        "mrr",
        "ndcg@1",
        "ndcg@5",
        "ndcg@10",
    ]
    theirs = ranx.evaluate(qrels, rrun, names)
    for name in names:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9), name


def test_read_run_reports_bad_lines(tmp_path: Path) -> None:
    from tagindex.io import DataError

    path = tmp_path / "run.jsonl"
    path.write_text('{"id": "p1", "tags": [{"tag": "a", "score": 0.5}]}\n{"id": "p2"}\nnot json\n')
    with pytest.raises(
        DataError, match=r"run.jsonl:2: a run row needs .* \(and 1 more malformed run row\(s\), at 3\)$"
    ):
        read_run(path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tagindex.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_evaluate_cli_on_real_mwpd_sample(tmp_path: Path) -> None:
    if not (MWPD / "validation.json").exists():
        pytest.skip("MWPD data not found at ../shared/data/mwpd")
    converted = tmp_path / "mwpd"
    assert _cli("convert", "mwpd", "--src", str(MWPD), "--out", str(converted)).returncode == 0
    from tagindex.io import load_products, write_jsonl

    products = load_products(converted / "validation.jsonl")[:200]
    write_jsonl(tmp_path / "gold.jsonl", (p.to_dict() for p in products))
    # A run that ranks each product's true leaf first for even rows and nothing useful for odd ones.
    rows = []
    for i, p in enumerate(products):
        leaf = p.tags[-1]
        rows.append({"id": p.id, "tags": [{"tag": leaf if i % 2 == 0 else "nope", "score": 1.0}]})
    write_jsonl(tmp_path / "run.jsonl", rows)
    out = tmp_path / "report.json"
    res = _cli(
        "evaluate",
        "--run",
        str(tmp_path / "run.jsonl"),
        "--gold",
        str(tmp_path / "gold.jsonl"),
        "--tags",
        str(converted / "tags.jsonl"),
        "--train",
        str(converted / "train.jsonl"),
        "--json",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["levels"]["3"]["recall@1"] == pytest.approx(0.5)
    assert report["levels"]["1"]["mode"] == "ancestors"
    assert report["levels"]["1"]["recall@1"] == pytest.approx(0.5)
    from sklearn.metrics import f1_score

    expected = np.mean(
        [
            f1_score(
                [p.tags[lvl] for p in products],
                [p.tags[lvl] if i % 2 == 0 else "none" for i, p in enumerate(products)],
                average="weighted",
                zero_division=0,
            )
            for lvl in range(3)
        ]
    )
    assert report["challenge"] == pytest.approx(expected)
    assert "level 3" in res.stdout and "challenge" in res.stdout
    assert gold_from_products(products)[products[0].id] == products[0].tags


def test_evaluate_cli_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "p1", "title": "x", "tags": ["a"]}\n')
    run = tmp_path / "run.jsonl"
    run.write_text('{"id": "p1", "tags": "oops"}\n')
    res = _cli("evaluate", "--run", str(run), "--gold", str(gold))
    assert res.returncode == 2
    assert "tagindex evaluate: error:" in res.stderr and "run.jsonl:1" in res.stderr
    assert "Traceback" not in res.stderr
    res = _cli("evaluate", "--run", str(run), "--gold", str(gold), "--k", "1,x")
    assert res.returncode == 2 and "--k" in res.stderr
