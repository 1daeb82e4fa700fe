"""``tagindex optimize`` (tagindex.optimize): settings chosen on labelled products, measured on others,
saved with the index and used by ``tagindex tag --index`` unless flags say otherwise.

The index is the mixed-kind shop sample (categories and keywords); its expected answers are the
labels. Products p01-p22 choose, p23-p34 report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tagindex.candidates import Candidate, RankedCandidates
from tagindex.kinds import KindPolicy, KindRule
from tagindex.optimize import Measured, Prepared, Settings, measure
from tagindex.schema import Tag

SHOP = Path(__file__).resolve().parents[2] / "data" / "examples" / "mixed-shop"


# ---- units --------------------------------------------------------------------------------------
def test_settings_save_as_tag_options() -> None:
    s = Settings(5, 0.3, (("category", KindRule(1, None)), ("keyword", KindRule(3, 0.25))), 0.5)
    saved = s.to_dict()
    assert saved == {
        "top_k": 5,
        "threshold": 0.3,
        "per_kind": "category=1,keyword=3@0.25",
        "category_title_weight": 0.5,
    }
    policy = KindPolicy.parse(saved["per_kind"], None, saved["category_title_weight"])
    assert policy == s.policy()
    assert Settings().to_dict() == {"top_k": 10}


def test_measure_counts_ancestors_of_gold_as_right() -> None:
    by_id = {
        "a": Tag("a", "A", kind="category"),
        "a1": Tag("a1", "A1", parent="a", kind="category"),
        "b": Tag("b", "B", kind="category"),
        "k": Tag("k", "k", kind="keyword"),
    }
    ranked = [
        RankedCandidates(
            "p", [Candidate(t, s, None, s) for t, s in [("a1", 0.9), ("b", 0.8), ("a", 0.7), ("k", 0.2)]]
        )
    ]
    prepared = Prepared([{"a1", "a", "k"}], ranked)
    assert measure(Settings(top_k=2), prepared, by_id) == Measured(0.5, 1 / 3, 1, 2)
    # the category path rule drops b; the keyword threshold drops k
    with_rules = Settings(3, None, (("category", KindRule(2, None)), ("keyword", KindRule(None, 0.5))))
    assert measure(with_rules, prepared, by_id) == Measured(1.0, 2 / 3, 1, 2)
    assert measure(Settings(top_k=4, threshold=0.75), prepared, by_id) == Measured(0.5, 1 / 3, 1, 2)
    # --ancestors: a1's ancestor a follows it (and is not counted twice when ranked too)
    assert measure(Settings(top_k=1, ancestors=True), prepared, by_id) == Measured(1.0, 2 / 3, 1, 2)
    assert Settings(ancestors=True).to_dict() == {"top_k": 10, "ancestors": True}


# ---- through the CLI ----------------------------------------------------------------------------
def _labelled(path: Path, ids: set[str]) -> Path:
    """The rows of ``labelled.csv`` (the products with their expected tags) whose id is in ``ids``."""
    from tagindex.io import load_products

    with path.open("w") as out:
        for p in load_products(SHOP / "labelled.csv"):
            if p.id in ids:
                out.write(json.dumps(p.to_dict()) + "\n")
    return path


@pytest.fixture(scope="module")
def shop_index(encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    out = tmp_path_factory.mktemp("opt-shop") / "index"
    TagIndex.build(load_tags(SHOP / "tags.csv"), encoder=encoder).save(out)
    return out


def _precision_recall(run: Path, labelled: Path, index: Path) -> tuple[float, float]:
    from tagindex.candidates import positives_of
    from tagindex.index import read_saved_tags
    from tagindex.io import load_products

    by_id = {t.id: t for t in read_saved_tags(index)}
    rows = {r["id"]: [t["tag"] for t in r["tags"]] for r in map(json.loads, run.read_text().splitlines())}
    right = assigned = gold = 0
    for p in load_products(labelled):
        positives = positives_of(p, by_id)
        right += sum(t in positives for t in rows[p.id])
        assigned += len(rows[p.id])
        gold += len(positives)
    return right / assigned, right / gold


def test_optimize_saves_settings_that_tag_uses(shop_index: Path, tmp_path: Path, capsys) -> None:
    from tagindex.cli import main
    from tagindex.index import TagIndex

    index = tmp_path / "index"
    shutil.copytree(shop_index, index)
    ids = [f"p{i:02d}" for i in range(1, 35)]
    choose = _labelled(tmp_path / "choose.jsonl", set(ids[:22]))
    report = _labelled(tmp_path / "report.jsonl", set(ids[22:]))
    result = tmp_path / "optimize.json"
    args = ["-q", "optimize", "--index", str(index), "--products", str(choose)]
    args += ["--report-products", str(report), "--target-precision", "0.7", "--json", str(result)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "chosen on" in printed and "held out" in printed
    record = json.loads(result.read_text())
    saved = TagIndex.load(index).tagging
    assert saved is not None and {k: v for k, v in saved.items() if k != "optimized"} == record["settings"]
    assert record["reached_on_choose"] and record["choose"]["precision"] >= 0.7

    # tag --index with no flags uses the saved settings, and measures as optimize reported
    run = tmp_path / "run.jsonl"
    assert main(["-q", "tag", "--index", str(index), "--products", str(report), "--out", str(run)]) == 0
    precision, recall = _precision_recall(run, report, index)
    assert precision == pytest.approx(record["report"]["precision"], abs=1e-4)
    assert recall == pytest.approx(record["report"]["recall"], abs=1e-4)
    # the same as giving the saved settings as flags
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in record["settings"].items() if k != "ancestors"]
    flags += ["--ancestors"] if record["settings"].get("ancestors") else []
    explicit = tmp_path / "explicit.jsonl"
    assert (
        main(
            [
                "-q",
                "tag",
                "--index",
                str(shop_index),
                "--products",
                str(report),
                "--out",
                str(explicit),
                *flags,
            ]
        )
        == 0
    )
    assert explicit.read_text() == run.read_text()
    # explicit flags win
    one = tmp_path / "one.jsonl"
    assert (
        main(
            ["-q", "tag", "--index", str(index), "--products", str(report), "--out", str(one), "--top-k", "1"]
        )
        == 0
    )
    assert all(len(json.loads(line)["tags"]) <= 1 for line in one.read_text().splitlines())


def test_saved_ancestors_can_be_switched_off(shop_index: Path, tmp_path: Path) -> None:
    from tagindex.cli import main
    from tagindex.index import TagIndex

    index_dir = tmp_path / "index"
    shutil.copytree(shop_index, index_dir)
    index = TagIndex.load(index_dir)
    index.tagging = {"top_k": 1, "ancestors": True}
    index.save(index_dir)
    products = SHOP / "products.csv"
    runs = {}
    for name, extra in (("saved", []), ("off", ["--no-ancestors"])):
        out = tmp_path / f"{name}.jsonl"
        assert (
            main(
                [
                    "-q",
                    "tag",
                    "--index",
                    str(index_dir),
                    "--products",
                    str(products),
                    "--out",
                    str(out),
                    *extra,
                ]
            )
            == 0
        )
        runs[name] = [json.loads(line)["tags"] for line in out.read_text().splitlines()]
    assert all(len(tags) == 1 for tags in runs["off"])
    assert any(any("ancestor_of" in t for t in tags) for tags in runs["saved"])


def test_optimize_holds_out_a_share_without_report_products(shop_index: Path, tmp_path: Path, capsys) -> None:
    from tagindex.cli import main

    labelled = _labelled(tmp_path / "all.jsonl", {f"p{i:02d}" for i in range(1, 35)})
    args = ["-q", "optimize", "--index", str(shop_index), "--products", str(labelled), "--dry-run"]
    assert main([*args, "--holdout", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "chosen on                24 products" in out and "held out                 10 products" in out
    from tagindex.index import TagIndex

    assert TagIndex.load(shop_index).tagging is None  # --dry-run saves nothing


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--target-precision", "1.5"], "--target-precision"), (["--holdout", "1"], "--holdout")],
)
def test_bad_options_are_one_line(
    shop_index: Path, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    from tagindex.cli import main

    labelled = _labelled(tmp_path / "all.jsonl", {"p01", "p02"})
    assert main(["-q", "optimize", "--index", str(shop_index), "--products", str(labelled), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_products_without_known_gold_tags_are_refused(shop_index: Path, tmp_path: Path, capsys) -> None:
    from tagindex.cli import main

    path = tmp_path / "unknown.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"x{i}", "title": "a thing", "tags": ["nope"]}) + "\n" for i in range(10))
    )
    assert main(["-q", "optimize", "--index", str(shop_index), "--products", str(path), "--dry-run"]) == 2
    assert "no choose product has a gold tag" in capsys.readouterr().err
