"""CLI: train-reranker -> calibrate -> tag --reranker --decide -> explain, on a tiny real MWPD sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rerank_helpers import ROOT, mwpd_sample

from tagindex.io import write_jsonl


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tagindex.cli", "-q", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_tag_decide_without_calibration_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tags.jsonl").write_text('{"id": "a", "name": "Apples"}\n')
    (tmp_path / "p.jsonl").write_text('{"id": "1", "title": "Green apples"}\n')
    assert (
        _cli("index", "--tags", str(tmp_path / "tags.jsonl"), "--out", str(tmp_path / "idx")).returncode == 0
    )
    res = _cli(
        "tag", "--index", str(tmp_path / "idx"), "--products", str(tmp_path / "p.jsonl"),
        "--out", str(tmp_path / "run.jsonl"), "--decide",
    )  # fmt: skip
    assert (
        res.returncode == 2 and "--decide needs --calibration" in res.stderr and "Traceback" not in res.stderr
    )
    (tmp_path / "cal.json").write_text("{broken")
    res = _cli(
        "tag", "--index", str(tmp_path / "idx"), "--products", str(tmp_path / "p.jsonl"),
        "--out", str(tmp_path / "run.jsonl"), "--calibration", str(tmp_path / "cal.json"), "--decide",
    )  # fmt: skip
    assert res.returncode == 2 and "cal.json" in res.stderr and "Traceback" not in res.stderr
    res = _cli("calibrate", "--index", str(tmp_path / "idx"), "--products", str(tmp_path / "p.jsonl"),
               "--out", str(tmp_path / "c.json"), "--reranker", str(tmp_path / "nowhere"))  # fmt: skip
    # One line naming the missing directory (the versioned store's message).
    assert res.returncode == 2 and "nowhere: not found" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.slow
def test_cli_rerank_pipeline(tmp_path: Path, tiny_model: Path) -> None:
    # The cross-encoder starts from the tiny model (MiniLM's bi-encoder finds the candidates, so the
    # calibration sees right and wrong ones): the commands, files and their checks are what is tested
    # here; reranker quality is measured by benchmarks/rerank_mwpd.py.
    sample = mwpd_sample(tmp_path, n_train=60, n_val=5)
    if sample is None:
        pytest.skip("../shared/data/mwpd is absent")
    _, train, val = sample
    write_jsonl(tmp_path / "train.jsonl", (p.to_dict() for p in train))
    write_jsonl(tmp_path / "val.jsonl", (p.to_dict() for p in val))
    tags = str(tmp_path / "mwpd" / "tags.jsonl")
    idx, rr, cal = str(tmp_path / "idx"), str(tmp_path / "rr"), str(tmp_path / "cal.json")
    assert _cli("index", "--tags", tags, "--out", idx).returncode == 0
    res = _cli(
        "train-reranker", "--products", str(tmp_path / "train.jsonl"), "--tags", tags, "--index", idx,
        "--out", rr, "--fast", "--max-products", "25", "--hard-negatives", "2", "--depth", "10",
        "--model", str(tiny_model),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["train_products"] == 25
    res = _cli(
        "calibrate", "--index", idx, "--reranker", rr, "--products", str(tmp_path / "train.jsonl"),
        "--out", cal, "--depth", "10", "--target-precision", "0.5",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run.jsonl"
    res = _cli(
        "tag", "--index", idx, "--products", str(tmp_path / "val.jsonl"), "--out", str(run),
        "--top-k", "5", "--reranker", rr, "--calibration", cal, "--decide",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in run.read_text().splitlines()]
    assert [line["id"] for line in lines] == [p.id for p in val]
    for line in lines:
        assert set(line) == {"id", "tags", "assigned"} and len(line["tags"]) == 5
        scores = [t["score"] for t in line["tags"]]
        assert scores == sorted(scores, reverse=True)
        assigned = {a["tag"] for a in line["assigned"]}
        parents = {t["id"]: t.get("parent") for t in map(json.loads, Path(tags).read_text().splitlines())}
        assert all(parents[t] is None or parents[t] in assigned for t in assigned)
    args = [
        "explain",
        "--index",
        idx,
        "--products",
        str(tmp_path / "val.jsonl"),
        "--reranker",
        rr,
        "--calibration",
        cal,
        "--train",
        str(tmp_path / "train.jsonl"),
        "--id",
        val[0].id,
        "--top-k",
        "10",
    ]
    first, second = _cli(*args), _cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    record = json.loads(first.stdout)
    assert record["id"] == val[0].id and record["scorer"] == "rerank"
    res = _cli(*args[:-4], "--id", "no-such-id")
    assert res.returncode == 2 and "no-such-id" in res.stderr
