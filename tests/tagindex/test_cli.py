from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagindex.store import read_manifest

pytestmark = pytest.mark.slow


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tagindex.cli", "-q", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def mwpd_index(mwpd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "index"
    result = run_cli("index", "--tags", mwpd_dir / "tags.jsonl", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def test_help_runs_as_a_module() -> None:
    # Per-command help is covered in-process by test_cli_parser.py; one subprocess proves the entry point.
    result = run_cli("--help")
    assert result.returncode == 0 and "usage: tagindex" in result.stdout and "evaluate" in result.stdout


def test_convert_index_tag_show_on_real_sample(mwpd_index: Path, mwpd_sample: Path, tmp_path: Path) -> None:
    manifest = read_manifest(mwpd_index, "tagindex", verify=False)
    assert manifest["n_tags"] == 394
    run = tmp_path / "run.jsonl"
    result = run_cli("tag", "--index", mwpd_index, "--products", mwpd_sample, "--out", run, "--top-k", "5")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in run.read_text().splitlines()]
    assert len(lines) == 60
    assert set(lines[0]) == {"id", "tags"}
    for line in lines:
        scores = [t["score"] for t in line["tags"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert {"tag", "score"} <= set(line["tags"][0])
    shown = run_cli("show", "--run", run, "--products", mwpd_sample, "--index", mwpd_index, "-n", "2")
    assert shown.returncode == 0 and "gold:" in shown.stdout and " > " in shown.stdout
    # With --index the gold is its deepest tags as paths, not raw ids (MWPD: level 3 under 1 and 2).
    gold = [line for line in shown.stdout.splitlines() if line.strip().startswith("gold:")]
    assert gold and all(" > " in line and "_" not in line for line in gold)


def test_similar_by_tag_id_and_text(mwpd_index: Path) -> None:
    by_id = run_cli("similar", "--index", mwpd_index, "--top-k", "3", "64010100_Jewellery")
    assert by_id.returncode == 0, by_id.stderr
    hits = [json.loads(line) for line in by_id.stdout.splitlines()]
    assert len(hits) == 3 and all(h["tag"] != "64010100_Jewellery" for h in hits)
    by_text = run_cli("similar", "--index", mwpd_index, "--top-k", "1", "running shoes")
    assert json.loads(by_text.stdout.splitlines()[0])["tag"].startswith("6")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"title": "no id"}\n', "missing required column 'id'"),
        ('{"id": "1", "title": ""}\n', "column 'title' is empty"),
        (b'{"id": "1", "title": "caf\xe9"}\n', "not valid UTF-8"),
    ],
)
def test_bad_products_give_a_clear_error(
    mwpd_index: Path, tmp_path: Path, content: str | bytes, message: str
) -> None:
    products = tmp_path / "bad.jsonl"
    products.write_bytes(content if isinstance(content, bytes) else content.encode())
    run = tmp_path / "run.jsonl"
    result = run_cli("tag", "--index", mwpd_index, "--products", products, "--out", run)
    assert result.returncode == 2
    assert message in result.stderr and "bad.jsonl:1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not run.exists()


def test_bad_tags_and_index_give_a_clear_error(tmp_path: Path) -> None:
    tags = tmp_path / "tags.jsonl"
    tags.write_text('{"id": "a", "name": "A", "parent": "ghost"}\n')
    result = run_cli("index", "--tags", tags, "--out", tmp_path / "idx")
    assert result.returncode == 2 and "unknown parent" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "idx").exists()
    result = run_cli("tag", "--index", tmp_path, "--products", tags, "--out", tmp_path / "r.jsonl")
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr


def test_config_template_is_valid_json() -> None:
    result = run_cli("config")
    assert json.loads(result.stdout)["index"]["kind"] == "exact"


def test_adapt_config_template_round_trips(tmp_path: Path) -> None:
    from tagindex.adapt import AdaptParams

    result = run_cli("config", "--adapt")
    assert result.returncode == 0, result.stderr
    template = json.loads(result.stdout)
    assert template["lexical_unnamed_kind"] == 0.5 and template["hierarchy"] is None
    # The printed template is what `adapt --adapt-config` reads back: the defaults, exactly.
    assert AdaptParams.from_dict(template) == AdaptParams()


def test_update_adds_and_retires_tags_in_place(mwpd_index: Path, tmp_path: Path) -> None:
    import shutil

    index = tmp_path / "index"
    shutil.copytree(mwpd_index, index)
    new = tmp_path / "new.jsonl"
    new.write_text('{"id": "wetsuits", "name": "Wetsuits", "parent": "67000000_Clothing"}\n')
    result = run_cli("update", "--index", index, "--add", new, "--remove", "64010100_Jewellery")
    assert result.returncode == 0, result.stderr
    assert read_manifest(index, "tagindex", verify=False)["n_tags"] == 394
    hits = run_cli("similar", "--index", index, "--top-k", "1", "neoprene wetsuit for surfing")
    assert json.loads(hits.stdout.splitlines()[0])["tag"] == "wetsuits"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "name": "X", "parent": "nowhere"}\n')
    result = run_cli("update", "--index", index, "--add", bad)
    assert result.returncode == 2 and "unknown parent" in result.stderr
    result = run_cli("update", "--index", index, "--remove", "67000000_Clothing")
    assert result.returncode == 2 and "cascade" in result.stderr
