"""A fast, quiet, standard CLI: light parsing, --version, -q, one-line errors, run formats, umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagindex.cli import REGISTRY, main
from tagindex.io import write_jsonl
from tagindex.runio import read_run_records, run_format, write_run
from tagindex.store import atomic_directory

HEAVY = ("torch", "torch_geometric", "sentence_transformers", "transformers", "faiss", "pandas")


def _cli(*args: str | Path, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tagindex.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


@pytest.mark.parametrize("argv", [["--help"], ["tag", "--help"], ["graph", "--help"], ["index", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from tagindex.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-500:]


def test_every_registered_command_parses_its_help_without_heavy_imports() -> None:
    code = (
        "import sys\n"
        "from tagindex.cli import REGISTRY, build_parser\n"
        "parser = build_parser()\n"
        "for name in REGISTRY:\n"
        "    try:\n        parser.parse_args([name, '--help'])\n    except SystemExit:\n        pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert len(REGISTRY) >= 16


def test_version_comes_from_the_one_version_source() -> None:
    from importlib.metadata import version

    import tagindex

    done = _cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"tagindex {tagindex.__version__}"
    assert version("tagindex") == tagindex.__version__


# ---- one-line errors --------------------------------------------------------------------------------
def _error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_bad_inputs_give_one_error_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    products = tmp_path / "products.txt"
    products.write_text("not a products file\n")
    line = _error_of(
        ["tag", "--index", str(tmp_path), "--products", str(products), "--out", "r.jsonl"], capsys
    )
    assert line.startswith("tagindex tag: error: ") and "products.txt" in line

    line = _error_of(["similar", "--index", str(tmp_path / "nope"), "shoes"], capsys)
    assert line.startswith("tagindex similar: error: ") and "nope" in line

    run = tmp_path / "run.jsonl"
    run.write_text('{"id": "a"}\n{"tags": []}\nnot json\n')  # three bad rows, reported on one line
    gold = tmp_path / "gold.jsonl"
    write_jsonl(gold, [{"id": "a", "title": "x", "tags": ["t"]}])
    line = _error_of(["evaluate", "--run", str(run), "--gold", str(gold)], capsys)
    assert line.startswith("tagindex evaluate: error: ") and "run.jsonl:1" in line

    line = _error_of(["update", "--index", str(tmp_path)], capsys)
    assert line == "tagindex update: error: nothing to do: give --add FILE and/or --remove ID ..."


def test_a_csv_run_cannot_take_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["tag", "--index", str(tmp_path), "--products", "p.jsonl", "--out", str(tmp_path / "r.csv")]
    line = _error_of([*argv, "--decide", "--calibration", "c.json"], capsys)
    assert "cannot hold" in line and "use .jsonl" in line


# ---- run formats ------------------------------------------------------------------------------------
RECORDS = [
    {
        "id": "p1",
        "tags": [
            {"tag": "running", "score": 0.708638, "name": "Running shoes"},
            {"tag": "shoes", "score": 0.618199, "name": "Shoes", "ancestor_of": "running"},
        ],
    },
    {"id": "p2", "tags": [{"tag": "jackets", "score": 0.5}, {"tag": "bags, big", "score": -0.25}]},
]


@pytest.mark.parametrize("name", ["run.csv", "run.parquet", "run.jsonl"])
def test_run_formats_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_run(path, RECORDS) == 2
    back = [record for _, record in read_run_records(path)]
    assert back == RECORDS


def test_csv_run_has_one_row_per_product_tag_with_names(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    write_run(path, RECORDS, names={"jackets": "Jackets"})
    lines = path.read_text().splitlines()
    assert lines[0] == "id,tag,score,rank,name,ancestor_of"
    assert lines[1:] == [
        "p1,running,0.708638,1,Running shoes,",
        "p1,shoes,0.618199,2,Shoes,running",
        "p2,jackets,0.5,1,Jackets,",
        'p2,"bags, big",-0.25,2,,',
    ]


def test_csv_rows_in_any_order_are_ranked_back(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("tag,id,rank,score\nb,p1,2,0.1\na,p1,1,0.9\nc,p2,1,0.3\n")
    assert [r for _, r in read_run_records(path)] == [
        {"id": "p1", "tags": [{"tag": "a", "score": 0.9}, {"tag": "b", "score": 0.1}]},
        {"id": "p2", "tags": [{"tag": "c", "score": 0.3}]},
    ]
    path.write_text("id,tag,score\np1,a,high\n")
    assert list(read_run_records(path)) == [(2, "score and rank must be numbers, got 'high', None")]


def test_parquet_run_schema_and_extra_columns(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "run.parquet"
    records = [{**RECORDS[0], "assigned": [{"tag": "running", "probability": 0.9}]}]
    write_run(path, records)
    schema = pq.read_schema(path)
    assert str(schema.field("id").type) == "string"
    assert str(schema.field("tags").type).startswith("list<element: struct<tag: string, score: double")
    assert [r for _, r in read_run_records(path)] == records


def test_jsonl_is_the_default_and_unchanged(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", RECORDS)
    write_run(tmp_path / "b.txt", RECORDS)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert (
        run_format("x.CSV") == "csv" and run_format("x.pq") == "parquet" and run_format("x.json") == "jsonl"
    )
    assert run_format("x.jsonl", "parquet") == "parquet"
    with pytest.raises(ValueError, match="unknown run format"):
        run_format("x.jsonl", "xml")
    with pytest.raises(ValueError, match="cannot keep"):
        write_run(tmp_path / "r.csv", [{**RECORDS[0], "assigned": []}])
    assert not (tmp_path / "r.csv").exists()


# ---- umask ------------------------------------------------------------------------------------------
@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_027")
def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "r.jsonl", RECORDS)
    write_run(tmp_path / "r.csv", RECORDS)
    write_run(tmp_path / "r.parquet", RECORDS)
    for name in ("r.jsonl", "r.csv", "r.parquet"):
        assert _mode(tmp_path / name) == 0o640, name
    with atomic_directory(tmp_path / "idx") as work:
        (work / "sub").mkdir()
        (work / "sub" / "f.bin").write_bytes(b"x")
        os.chmod(work / "sub" / "f.bin", 0o600)  # as safetensors writes its files
    assert _mode(tmp_path / "idx") == 0o750 and _mode(tmp_path / "idx" / "sub") == 0o750
    assert _mode(tmp_path / "idx" / "sub" / "f.bin") == 0o640


# ---- a tiny real run: -q is silent, every format evaluates the same, umask respected -----------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_jsonl(
        root / "tags.jsonl",
        [
            {"id": "shoes", "name": "Shoes"},
            {"id": "running", "name": "Running shoes", "parent": "shoes"},
            {"id": "jackets", "name": "Jackets"},
            {"id": "wallets", "name": "Wallets"},
        ],
    )
    write_jsonl(
        root / "products.jsonl",
        [
            {"id": "p1", "title": "Trail running shoe", "tags": ["running"]},
            {"id": "p2", "title": "Down jacket", "description": "warm", "tags": ["jackets"]},
            {"id": "p3", "title": "Leather wallet", "tags": ["wallets"]},
        ],
    )
    done = _cli("-q", "index", "--tags", root / "tags.jsonl", "--out", root / "idx", umask=0o027)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
    return root


@pytest.mark.slow
def test_quiet_run_prints_nothing_and_formats_agree(tiny: Path) -> None:
    reports = []
    for name in ("run.jsonl", "run.csv", "run.parquet"):
        out = tiny / name
        args = ["tag", "--index", tiny / "idx", "--products", tiny / "products.jsonl", "--out", out]
        done = _cli("-q", *args, "--top-k", "3", umask=0o027)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "" and done.stdout == ""  # no bars, no "Loading weights", no summary
        assert _mode(out) == 0o640
        report = _cli("evaluate", "--run", out, "--gold", tiny / "products.jsonl", "--k", "1,3")
        assert report.returncode == 0, report.stderr
        reports.append(report.stdout)
    assert reports[0] == reports[1] == reports[2]
    for path in [tiny / "idx", *(tiny / "idx").rglob("*")]:  # safetensors writes 0600 files itself
        assert _mode(path) == (0o750 if path.is_dir() else 0o640), path
    jsonl = [json.loads(line) for line in (tiny / "run.jsonl").read_text().splitlines()]
    assert [r for _, r in read_run_records(tiny / "run.parquet")] == jsonl


@pytest.mark.slow
def test_default_output_is_a_one_line_summary(tiny: Path) -> None:
    out = tiny / "summary.jsonl"
    done = _cli("tag", "--index", tiny / "idx", "--products", tiny / "products.jsonl", "--out", out)
    assert done.returncode == 0, done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("tagged 3 products in ") and summary.endswith(f"/s) -> {out}")
    assert "encoding" in done.stderr and "3/3" in done.stderr  # the bar counts products, not batches
