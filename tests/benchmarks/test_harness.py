"""The benchmark harness measures what a system returns, and the registry exposes every system."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from benchmarks.harness import Context, System, Task, measure
from benchmarks.run import RESULTS, refreshes_report, table
from benchmarks.systems import SYSTEMS, TfidfSVM, register
from tagindex.metrics import Run, evaluate, gold_from_products
from tagindex.schema import Product, Tag


class Oracle(System):
    """Ranks the gold tags first for even products and nothing useful for odd ones."""

    name = "oracle"

    def fit(self, task: Task, ctx: Context) -> None:
        self.gold = {p.id: p.tags for p in task.test}
        self.calls = 0

    def rank(self, products: Sequence[Product], k: int) -> Run:
        self.calls += 1
        return {
            p.id: [(t, 1.0) for t in self.gold[p.id]] if int(p.id[1:]) % 2 == 0 else [("nope", 0.1)]
            for p in products
        }


def _task() -> Task:
    tags = [
        Tag("a", "shoes"),
        Tag("b", "shirts"),
        Tag("a1", "boots", parent="a"),
        Tag("b1", "tees", parent="b"),
    ]
    test = [Product(f"p{i}", f"item {i}", tags=["a", "a1"] if i % 3 else ["b", "b1"]) for i in range(12)]
    train = [
        Product(f"t{i}", f"boots {i}" if i % 2 else f"tees {i}", tags=["a", "a1"] if i % 2 else ["b", "b1"])
        for i in range(20)
    ]
    return Task("toy", "toy task", "catalog", train, test, tags, level=2)


def test_measure_runs_quality_and_speed(tmp_path: Path) -> None:
    task, system = _task(), Oracle()
    ctx = Context(work=tmp_path, cache_dir=tmp_path / "cache")
    m = measure(system, task, ctx, speed_n=4, latency_n=3)
    assert m.run is not None and set(m.run) == {p.id for p in task.test}
    report = evaluate(m.run, gold_from_products(task.test), tags=task.tags)
    assert report["levels"]["2"]["recall@1"] == pytest.approx(0.5)
    speed = m.speed()
    assert len(m.latency_ms) == 3 and speed["p50_ms"] is not None and speed["products_per_s"] > 0
    assert system.calls == 1 + 1 + 1 + 3  # quality, warm-up, batch, three single products
    assert ctx.use_cache  # restored after the speed runs


def test_unsupported_task_is_skipped_with_reason(tmp_path: Path) -> None:
    task = _task()
    task.kind = "cross"
    m = measure(TfidfSVM(), task, Context(work=tmp_path, cache_dir=tmp_path))
    assert m.run is None and "never saw" in (m.skipped or "")


def test_tfidf_svm_learns_toy_task(tmp_path: Path) -> None:
    task = _task()
    task.test = [Product("q1", "boots 99", tags=["a", "a1"]), Product("q2", "tees 98", tags=["b", "b1"])]
    m = measure(TfidfSVM(), task, Context(work=tmp_path, cache_dir=tmp_path))
    assert m.run is not None
    assert [t for t, _ in m.run["q1"]][:1] in (["a"], ["a1"])
    report = evaluate(m.run, gold_from_products(task.test), tags=task.tags)
    assert report["levels"]["1"]["weighted_f1"] == pytest.approx(1.0)
    assert report["levels"]["2"]["weighted_f1"] == pytest.approx(1.0)


def test_registry_and_table() -> None:
    assert {"tagindex-zeroshot", "st-semantic-search", "minilm-knn", "tfidf-svm", "pecos-xr-linear"} <= set(
        SYSTEMS
    )
    with pytest.raises(ValueError, match="twice"):
        register("tfidf-svm")(TfidfSVM)
    rows = [
        {
            "system": "x",
            "quality": {
                "recall@1": 0.5,
                "recall@5": 0.8,
                "recall@10": 0.9,
                "macro_recall@5": 0.7,
                "tail_macro_recall@5": 0.1,
                "challenge": 0.6,
            },
            "speed": {"products_per_s": 10.0, "p50_ms": 20.0, "p99_ms": 30.0, "build_s": 1.0, "peak_mb": 5.0},
        },
        {
            "system": "y",
            "quality": {
                "recall@1": 0.4,
                "recall@5": 0.4,
                "recall@10": 0.5,
                "macro_recall@5": 0.3,
                "tail_macro_recall@5": 0.0,
                "challenge": 0.3,
            },
            "speed": {"products_per_s": 40.0, "p50_ms": 5.0, "p99_ms": 9.0, "build_s": 2.0, "peak_mb": 6.0},
        },
        {"system": "z", "skipped": "no"},
    ]
    header, lines = table({"task": "mwpd", "n_train": 5, "systems": rows})
    col = {h: i for i, h in enumerate(header)}
    assert lines[0][col["F1/best"]] == 1.0 and lines[1][col["F1/best"]] == 0.5
    assert lines[0][col["prod/s/fastest"]] == 0.25 and lines[1][col["p50 x fastest"]] == 1.0
    assert "skipped" in lines[2][1]


def test_skew_tells_siblings_of_the_gold_from_hubs_outside_their_family() -> None:
    from benchmarks.adapt_ablation import skew

    # 10 products: 8 T-shirts (family "c"), 2 supplements (family "f"). Every T-shirt lists its
    # sibling "sport"; one supplement lists "crumbs" (a food class, its own family) and "sport".
    gold = {f"p{i}": ["c", "tops"] for i in range(8)} | {"p8": ["f", "vitamins"], "p9": ["f", "vitamins"]}
    run = {f"p{i}": [("tops", 1.0), ("sport", 0.5)] for i in range(8)}
    run |= {"p8": [("vitamins", 1.0), ("crumbs", 0.5), ("sport", 0.4)], "p9": [("vitamins", 1.0)]}
    parents = {"tops": "c", "sport": "c", "vitamins": "f", "crumbs": "f"}
    out = skew(run, gold, k=5, limit=0.05, parents=parents)
    assert out["tags_over_5pct_not_gold"] == 2  # "sport" (9 of 10) and "crumbs" (1 of 10)
    # Outside its family: "sport" for the supplement only (1 of 10); "crumbs" is in its family's.
    assert out["tags_over_5pct_outside_family"] == 1 and out["worst_outside_family"] == [("sport", 0.1)]
    assert "tags_over_5pct_outside_family" not in skew(run, gold)


def test_small_vocabulary_tasks_keep_one_level_and_hide_the_category(
    mwpd_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    from benchmarks.tasks import load_task
    from tagindex.convert import convert

    (tmp_path / "mwpd").symlink_to(mwpd_dir)
    level1 = load_task("mwpd-level1", tmp_path)
    assert len(level1.tags) == 37 and all(t.parent is None and t.kind == "category" for t in level1.tags)
    ids = {t.id for t in level1.tags}
    assert all(len(p.tags) == 1 and p.tags[0] in ids for p in level1.test[:200])
    tree = load_task("mwpd-level2-tree", tmp_path)
    leaves = [t for t in tree.tags if t.parent is not None]
    assert len(leaves) == 76 and {t.parent for t in leaves} <= {t.id for t in tree.tags if t.parent is None}
    assert all(p.tags and p.tags[0] in {t.id for t in leaves} for p in tree.test[:200])
    convert("attribute-tags", shared_data / "attribute-tags" / "ae-110k", tmp_path / "ae-110k")
    cats = load_task("ae-categories", tmp_path)
    assert len(cats.tags) == 10 and (len(cats.train), len(cats.test)) == (1568, 524)
    # The category is the gold, so the encoder must not read it as an attribute.
    assert all("category" not in p.attributes and p.tags[0] in {t.id for t in cats.tags} for p in cats.test)


def test_results_written_elsewhere_leave_the_readme_alone(tmp_path: Path) -> None:
    # An A/B run with --out elsewhere once rewrote the README's results block from its scratch files.
    assert refreshes_report(RESULTS, no_report=False)
    assert refreshes_report(RESULTS / ".." / "results", no_report=False)
    assert not refreshes_report(RESULTS, no_report=True)
    assert not refreshes_report(tmp_path / "ab", no_report=False)
