"""Multilingual distillation: parallel text from the taxonomy and CC-CEDICT, and a tiny real run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tagindex.distill import (
    DISTILL_MANIFEST,
    DistillParams,
    ParallelPair,
    _length_batches,
    cedict_pairs,
    distill,
    gather_pairs,
    taxonomy_pairs,
)
from tagindex.errors import InputError


def _localizations(root: Path) -> Path:
    loc = root / "data" / "localizations"
    files = {
        "attributes/en.yml": "en:\n  attributes:\n    color:\n      name: Color\n"
        "      description: Main color\n",
        "attributes/zh-CN.yml": "zh-CN:\n  attributes:\n    color:\n      name: 颜色\n"
        "      description: 主要颜色\n",
        "values/en.yml": (
            "en:\n  values:\n    color__black:\n      name: Black\n      context: Color\n"
            "    color__red:\n      name: Red\n      context: Color\n"
        ),
        "values/zh-CN.yml": "zh-CN:\n  values:\n    color__black:\n      name: 黑色\n      context: Color\n",
        # Category names are the evaluation queries: the distiller must never read them.
        "categories/en.yml": "en:\n  categories:\n    aa:\n      name: Apparel\n",
        "categories/zh-CN.yml": "zh-CN:\n  categories:\n    aa:\n      name: 服饰\n",
    }
    for name, text in files.items():
        (loc / name).parent.mkdir(parents=True, exist_ok=True)
        (loc / name).write_text(text, encoding="utf-8")
    return root


def test_taxonomy_pairs_join_on_handles_and_never_read_categories(tmp_path: Path) -> None:
    root = _localizations(tmp_path)
    pairs = {(p.english, p.other, p.source) for p in taxonomy_pairs(root, "zh-CN")}
    assert pairs == {
        ("Color", "颜色", "attribute"),
        ("Main color", "主要颜色", "attribute-description"),
        ("Black", "黑色", "value"),
        ("Color: Black", "颜色: 黑色", "attribute-value"),
    }  # Red has no translation; the category pair is absent
    assert not any("服饰" in p.other for p in taxonomy_pairs(root, "zh-CN"))


def test_cedict_keeps_translations_and_drops_names_and_cross_references(tmp_path: Path) -> None:
    path = tmp_path / "cedict.txt"
    path.write_text(
        "# CC-CEDICT\n"
        "鞋子 鞋子 [xie2 zi5] /shoe/\n"
        "運動鞋 运动鞋 [yun4 dong4 xie2] /sports shoes/sneakers/CL:雙|双[shuang1]/\n"
        "北京 北京 [Bei3 jing1] /Beijing/\n"
        "鉄 鉄 [zhi4] /old variant of 紩[zhi4]/\n"
        "garbage line\n",
        encoding="utf-8",
    )
    pairs = [(p.english, p.other) for p in cedict_pairs(path)]
    assert pairs == [("shoe", "鞋子"), ("sports shoes; sneakers", "运动鞋")]
    with pytest.raises(InputError, match="CC-CEDICT file not found"):
        cedict_pairs(tmp_path / "missing.txt")


def test_gather_pairs_normalises_and_reports_bad_input(tmp_path: Path) -> None:
    root = _localizations(tmp_path)
    cedict = tmp_path / "cedict.txt"
    cedict.write_text("皮靴 皮靴 [pi2 xue1] /leather boots/\n", encoding="utf-8")
    pairs = gather_pairs(root, ["zh-CN"], DistillParams(dictionary=str(cedict)))
    assert ("leather boots", "皮靴") in {(p.english, p.other) for p in pairs}
    assert len(gather_pairs(root, ["zh-CN"], DistillParams(dictionary="none"))) == 4
    with pytest.raises(InputError, match="no data/localizations"):
        gather_pairs(tmp_path / "nowhere", ["zh-CN"], DistillParams())
    with pytest.raises(InputError, match=r"attributes/fr\.yml: localisation file not found"):
        gather_pairs(root, ["fr"], DistillParams())
    with pytest.raises(InputError, match="no target language"):
        gather_pairs(root, [], DistillParams())


def test_distill_one_step_writes_a_model_that_tagindex_loads(tmp_path: Path) -> None:
    from tagindex.config import TagIndexParams
    from tagindex.index import TagIndex
    from tagindex.schema import Tag

    pairs = [
        ParallelPair(en, zh, "value")
        for en, zh in [
            ("Black", "黑色"),
            ("Red", "红色"),
            ("Boots", "靴子"),
            ("Shoes", "鞋子"),
            ("Hat", "帽子"),
        ]
    ] * 4
    params = DistillParams(batch_size=16, max_seq_length=16, dev_pairs=2, dictionary="none")
    report = distill(pairs, tmp_path / "student", params=params, languages=["zh-CN"])
    assert (report.n_train, report.n_dev) == (12, 2)  # every copy of a held-out English text leaves training
    manifest = json.loads((tmp_path / "student" / DISTILL_MANIFEST).read_text())
    assert manifest["languages"] == ["zh-CN"] and len(manifest["dev_metrics"]) == 2
    params_ix = TagIndexParams()
    params_ix.encoder.model = str(tmp_path / "student")
    index = TagIndex.build([Tag("b", "Boots"), Tag("h", "Hat")], params_ix)
    vector = index.tag_vector("b")
    assert vector.shape == (384,) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-3)
    # The student moved: its vector of a Chinese word differs from the teacher's.
    teacher = TagIndex.build([Tag("b", "靴子")])
    student = TagIndex.build([Tag("b", "靴子")], params_ix)
    assert not np.allclose(teacher.tag_vector("b"), student.tag_vector("b"), atol=1e-4)


def test_distill_refuses_an_empty_pair_list(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no parallel pairs"):
        distill([], tmp_path / "student", params=DistillParams(dictionary="none"))
    assert not (tmp_path / "student").exists()


def test_length_batches_cover_every_pair_once_with_similar_lengths() -> None:
    lengths = [(i * 7919) % 27 + 3 for i in range(1000)]
    batches = _length_batches(lengths, 10, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 10 for b in batches)
    # Sorting inside blocks leaves little padding: a batch spans few lengths, unlike a random one.
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 2
    assert batches != _length_batches(lengths, 10, random.Random(1))  # the order is shuffled by seed


def test_distill_time_budget_stops_and_still_writes_a_model(tmp_path: Path) -> None:
    pairs = [ParallelPair(f"item {i}", f"物品{i}", "value") for i in range(40)]
    params = DistillParams(batch_size=8, max_seq_length=16, dev_pairs=4, epochs=3, time_budget_s=1e-6)
    report = distill(pairs, tmp_path / "student", params=params, languages=["zh-CN"])
    assert report.steps == 0 and len(report.epochs) == 1  # only the initial student's dev metrics
    assert (tmp_path / "student" / "config.json").exists()
    params = DistillParams(batch_size=8, max_seq_length=16, dev_pairs=4, epochs=2, english_share=0.0)
    report = distill(pairs, tmp_path / "student2", params=params, languages=["zh-CN"])
    assert report.steps == 2 * 5 and [e["epoch"] for e in report.epochs] == [0, 1, 2]
    manifest = json.loads((tmp_path / "student2" / DISTILL_MANIFEST).read_text())
    assert manifest["steps"] == 10 and manifest["params"]["english_share"] == 0.0
