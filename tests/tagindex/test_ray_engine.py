"""``tagindex tag --engine ray``: a real embedded Ray, a real saved index, real MWPD offers.

The index uses the packaged static encoder (``tokenlearn-static``): a pure lookup whose vectors do
not depend on how products are batched, so the Ray run must equal the in-process run exactly.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tagindex import cli
from tagindex.engines.shards import (
    FAILURES_FILE,
    SHARD_SCHEMA,
    Batch,
    TagOptions,
    iter_batches,
    list_sources,
    read_shards,
    run_sharded,
    tag_batch,
)
from tagindex.errors import InputError
from tagindex.schema import Product

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tagindex[scale]')")
pytest.importorskip(
    "static_model", reason="tokenlearn-static-model is not installed (tagindex[fast-encoders])"
)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local test cluster; token auth writes to ~/.ray


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One embedded Ray for the module (starting one costs seconds); the engine reuses it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def static_index(mwpd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ray-index") / "index"
    assert cli.main(["-q", "index", "--tags", str(mwpd_dir / "tags.jsonl"), "--out", str(out),
                     "--backend", "tokenlearn-static"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def catalog(mwpd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A directory of three shards (JSONL with bad rows, CSV, Parquet) of real validation offers."""
    rows = [json.loads(line) for line in (mwpd_dir / "validation.jsonl").read_text().splitlines()[:230]]
    for r in rows:
        r.pop("tags", None)
    src = tmp_path_factory.mktemp("catalog")
    jsonl = [json.dumps(r) for r in rows[:100]]
    jsonl.insert(10, "{not json")  # line 11
    jsonl.insert(20, json.dumps({"id": "no-title"}))  # line 21
    jsonl.append(json.dumps(rows[0]))  # line 103: a duplicate id
    (src / "a.jsonl").write_text("\n".join(jsonl) + "\n")
    csv_rows = [
        {"id": r["id"], "title": r["title"], "description": r.get("description") or ""} for r in rows[100:160]
    ]
    with (src / "b.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "title", "description"])
        writer.writeheader()
        writer.writerows(csv_rows)
    parquet_rows = [{"id": r["id"], "title": r["title"]} for r in rows[160:]]
    pq.write_table(pa.Table.from_pylist(parquet_rows), src / "c.parquet")
    good = rows[:100] + csv_rows + parquet_rows
    gold = src.parent / "good.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in good))
    return {"src": src, "good": gold, "n_good": len(good), "bad_lines": {11, 21, 103}}


def same_run(got: Any, expected: Any, tol: float = 1e-5) -> bool:
    """Equal records, but for float rounding: the workers multiply vectors in other batch shapes
    than one process does, and on some CPUs (AVX-512 kernels) that moves a score's 6th decimal.
    Ids, tag order, names and decisions must be identical."""
    if isinstance(expected, float) and isinstance(got, float | int):
        return abs(got - expected) <= tol
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(same_run(got[k], expected[k], tol) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(same_run(g, e, tol) for g, e in zip(got, expected, strict=True))
        )
    return bool(got == expected)


def in_process_run(index: Path, products: Path, out: Path, *extra: str) -> dict[str, dict[str, Any]]:
    assert cli.main(["-q", "tag", "--index", str(index), "--products", str(products), "--out", str(out),
                     *extra]) == 0  # fmt: skip
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}


def test_ray_run_equals_the_in_process_run_and_reports_failed_rows(
    ray_local: None, static_index: Path, catalog: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "shards"
    args = ["-q", "tag", "--engine", "ray", "--index", str(static_index), "--products",
            str(catalog["src"]), "--out", str(out), "--num-workers", "2", "--batch-size", "32",
            "--top-k", "5", "--ancestors"]  # fmt: skip
    # Three bad rows: the default --on-error raise exits 2 after writing everything else.
    assert cli.main(args) == 2
    expected = in_process_run(
        static_index, catalog["good"], tmp_path / "run.jsonl", "--top-k", "5", "--ancestors"
    )
    got = list(read_shards(out))
    assert len(got) == len({r["id"] for r in got}) == catalog["n_good"]
    assert same_run({r["id"]: r for r in got}, expected)  # same tags, scores and optional fields
    assert pq.read_table(out).schema.equals(SHARD_SCHEMA)  # the directory reads as one table
    failures = [json.loads(line) for line in (out / FAILURES_FILE).read_text().splitlines()]
    assert {f["line"] for f in failures} == catalog["bad_lines"]
    assert all(f["source"].endswith("a.jsonl") and f["reason"] for f in failures)
    assert any("duplicate id" in f["reason"] for f in failures)
    assert any("invalid JSON" in f["reason"] for f in failures)
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["products"] == catalog["n_good"] + 3 and summary["failures"] == 3
    # --on-error skip: same output, exit 0; every shard is already finished and skipped.
    assert cli.main([*args, "--on-error", "skip"]) == 0
    assert json.loads((out / "_summary.json").read_text())["shards_skipped"] == summary["shards_written"]


def test_rerun_skips_finished_shards_and_redoes_only_missing_ones(
    ray_local: None, static_index: Path, catalog: dict[str, Any], tmp_path: Path
) -> None:
    from tagindex.engines.ray_engine import tag_with_ray

    out = tmp_path / "shards"
    options = TagOptions.of(top_k=3)
    first = tag_with_ray(static_index, catalog["src"], out, options, num_workers=2, batch_size=40)
    shards = sorted(out.glob("part-*.parquet"))
    assert first.shards_written == len(shards) >= 5 and first.shards_skipped == 0
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    lines_before = sorted(map(json.dumps, read_shards(out)))
    lost = shards[2]
    lost.unlink()
    (out / f".{lost.name}.123.tmp").write_bytes(b"half a shard")  # as a run killed mid-write leaves
    second = tag_with_ray(static_index, catalog["src"], out, options, num_workers=2, batch_size=40)
    assert (second.shards_written, second.shards_skipped) == (1, len(shards) - 1)
    assert second.tagged == pq.read_table(lost).num_rows
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert {k: v for k, v in after.items() if k != lost.name} == {
        k: v for k, v in before.items() if k != lost.name
    }
    assert not list(out.glob(".*.tmp"))
    assert sorted(map(json.dumps, read_shards(out))) == lines_before
    with pytest.raises(InputError, match="options"):
        tag_with_ray(static_index, catalog["src"], out, TagOptions.of(top_k=4), num_workers=1, batch_size=40)


def test_gpu_workers_are_refused_cleanly_without_gpus(
    ray_local: None,
    static_index: Path,
    catalog: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tagindex.engines.ray_engine import tag_with_ray

    if ray.cluster_resources().get("GPU", 0) >= 1:
        pytest.skip("this machine has a GPU: the refusal path does not apply")
    start = time.monotonic()
    with pytest.raises(InputError, match="GPUs; the Ray cluster has 0"):
        tag_with_ray(static_index, catalog["src"], tmp_path / "o", num_workers=1, gpus_per_worker=1)
    assert not (tmp_path / "o").exists()
    # The GPU recipe through the CLI: one line, exit 2, no actor left waiting for a GPU (no hang).
    capsys.readouterr()
    code = cli.main(["-q", "tag", "--engine", "ray", "--index", str(static_index), "--products",
                     str(catalog["src"]), "--out", str(tmp_path / "o2"), "--num-workers", "2",
                     "--gpus-per-worker", "0.5"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--gpus-per-worker 0.5 x 2 workers needs 1 GPUs" in err and "Traceback" not in err
    assert time.monotonic() - start < 60 and not (tmp_path / "o2").exists()


def test_exemplar_vectors_encoded_on_ray_equal_the_index_s_own(
    ray_local: None, static_index: Path, catalog: dict[str, Any]
) -> None:
    import numpy as np

    from tagindex.engines.ray_engine import encode_with_ray
    from tagindex.index import TagIndex
    from tagindex.io import load_products

    products = load_products(catalog["good"])
    chunks = [products[i : i + 37] for i in range(0, len(products), 37)]
    got = list(encode_with_ray(static_index, chunks, num_workers=2))
    assert [len(v) for v in got] == [len(c) for c in chunks]  # one array per chunk, in order
    assert np.array_equal(np.vstack(got), TagIndex.load(static_index).encode_products(products))


def test_ray_only_and_local_only_options_are_refused(
    static_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    products = tmp_path / "p.jsonl"
    products.write_text('{"id": "1", "title": "red shoes"}\n')
    base = [
        "-q",
        "tag",
        "--index",
        str(static_index),
        "--products",
        str(products),
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main([*base, "--engine", "ray", "--cache", str(tmp_path / "c")]) == 2
    assert cli.main([*base, "--engine", "ray", "--format", "csv"]) == 2
    # A reranker that does not exist: refused before any Ray starts, naming it.
    capsys.readouterr()
    assert cli.main([*base, "--engine", "ray", "--reranker", str(tmp_path / "no-rr")]) == 2
    assert "no-rr: no such file or directory (--reranker)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


class _FailingPipeline:
    """Stands in for TaggingPipeline to isolate the row-isolation logic: tagging fails for one product."""

    def tag(self, products: list[Product], **_: Any) -> list[Any]:
        from tagindex.pipeline import Tagged
        from tagindex.schema import TagResult, TagScore

        if any(p.title == "poison" for p in products):
            raise RuntimeError("encoder exploded")
        return [Tagged(TagResult(p.id, [TagScore("t", 0.5)]), None) for p in products]  # type: ignore[arg-type]


def test_a_row_that_cannot_be_tagged_is_reported_and_its_batch_kept() -> None:
    products = [Product("1", "fine"), Product("2", "poison"), Product("3", "fine too")]
    batch = Batch("x-00000", "src.jsonl", products, [1, 2, 3], [{"source": "src.jsonl", "line": 4,
                  "id": None, "reason": "invalid JSON"}])  # fmt: skip
    result = tag_batch(_FailingPipeline(), batch, TagOptions())
    assert [r["id"] for r in result.records] == ["1", "3"]
    assert [(f["line"], f["id"]) for f in result.failures] == [(2, "2"), (4, None)]
    assert "encoder exploded" in result.failures[0]["reason"]


def test_batches_are_fixed_by_input_and_batch_size(catalog: dict[str, Any], tmp_path: Path) -> None:
    root, sources = list_sources(catalog["src"])
    names = [b.name for b in iter_batches(root, sources, 50)]
    assert names == [b.name for b in iter_batches(root, sources, 50)]
    assert names[:3] == ["a.jsonl-00000", "a.jsonl-00001", "a.jsonl-00002"]
    assert sum(b.n_rows for b in iter_batches(root, sources, 50)) == catalog["n_good"] + 3
    (tmp_path / "notes.txt").write_text("not products")
    with pytest.raises(InputError, match="no .jsonl"):
        list_sources(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        list_sources(tmp_path / "missing")


@pytest.mark.slow
def test_a_run_killed_midway_resumes_without_losing_or_duplicating(
    static_index: Path, catalog: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "shards"
    cmd = [sys.executable, "-m", "tagindex.cli", "-q", "tag", "--engine", "ray", "--index", str(static_index),
           "--products", str(catalog["src"]), "--out", str(out), "--num-workers", "1", "--batch-size", "8",
           "--on-error", "skip"]  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert len(finished) >= 3
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["shards_skipped"] == len(finished)
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # finished shards are kept, not rewritten
    ids = [r["id"] for r in read_shards(out)]
    assert len(ids) == len(set(ids)) == catalog["n_good"]


def test_local_executor_writes_the_same_shards(
    static_index: Path, catalog: dict[str, Any], tmp_path: Path
) -> None:
    from tagindex.engines.shards import local_executor

    options = TagOptions.of(top_k=3)
    summary = run_sharded(static_index, catalog["src"], tmp_path / "o", local_executor(static_index, options),
                          options, batch_size=64)  # fmt: skip
    assert summary.tagged == catalog["n_good"] and summary.failures == 3


# ---- every tag option goes through the same pipeline ----------------------------------------------------
@pytest.fixture(scope="module")
def bi_calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calibration of bi-encoder scores fitted on synthetic candidates (cosine above ~0.25 is right),
    so that the static index's decisions are not all empty: what is compared is the two engines."""
    import numpy as np

    from tagindex.calibration import Calibration, CalibrationParams

    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.2, 1.0, 3000)
    labels = (scores + rng.normal(0.0, 0.05, 3000) > 0.25).astype(np.float64)
    cal = Calibration.fit(scores, labels, rng.integers(0, 3, 3000), "bi_encoder", CalibrationParams())
    path = tmp_path_factory.mktemp("cal") / "cal.json"
    cal.save(path)
    return path


def test_decisions_calibration_and_names_equal_the_in_process_run(
    ray_local: None,
    static_index: Path,
    catalog: dict[str, Any],
    bi_calibration: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = ["--top-k", "6", "--threshold", "0.3", "--ancestors", "--calibration", str(bi_calibration),
               "--decide", "--hierarchy", "close", "--language", "en"]  # fmt: skip
    out = tmp_path / "shards"
    args = ["-q", "tag", "--engine", "ray", "--index", str(static_index), "--products", str(catalog["src"]),
            "--out", str(out), "--num-workers", "2", "--batch-size", "32", "--on-error", "skip"]  # fmt: skip
    assert cli.main([*args, *options]) == 0
    expected = in_process_run(static_index, catalog["good"], tmp_path / "run.jsonl", *options)
    assert any(r["assigned"] for r in expected.values())  # the decision is exercised, not empty
    got = list(read_shards(out))
    assert len(got) == len({r["id"] for r in got}) == catalog["n_good"]
    assert same_run({r["id"]: r for r in got}, expected)  # tags, scores, names, ancestors, decisions
    # A per-kind policy (an option the pipeline gained later) reaches the workers unchanged.
    kinds = ["--top-k", "5", "--per-kind", "category=2"]
    assert cli.main([*args[:9], str(tmp_path / "kinds"), *args[10:], *kinds]) == 0
    expected = in_process_run(static_index, catalog["good"], tmp_path / "kinds.jsonl", *kinds)
    assert same_run({r["id"]: r for r in read_shards(tmp_path / "kinds")}, expected)
    assert all(len(r["tags"]) <= 2 for r in expected.values())
    # A pipeline the in-process run refuses is refused the same way, before any shard is written.
    capsys.readouterr()
    assert cli.main([*args[:9], str(tmp_path / "o2"), "--decide"]) == 2
    err = capsys.readouterr().err
    assert "--decide needs --calibration" in err and "Traceback" not in err
    assert not list((tmp_path / "o2").glob("part-*"))


@pytest.mark.slow
def test_a_reranked_and_calibrated_ray_run_equals_the_in_process_run(
    ray_local: None, static_index: Path, mwpd_dir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """A real cross-encoder (the tiny test model, untrained head: each Ray worker loads it, so the
    packaged MiniLM would only cost time) with a calibration of its scores."""
    import numpy as np

    from tagindex.calibration import Calibration
    from tagindex.cross_encoder import Reranker, RerankerParams

    Reranker.create(RerankerParams(model=str(tiny_model))).save(tmp_path / "rr")
    fingerprint = Reranker.load(tmp_path / "rr").fingerprint
    products = tmp_path / "products.jsonl"
    products.write_text("".join((mwpd_dir / "validation.jsonl").read_text().splitlines(keepends=True)[:30]))
    rng = np.random.default_rng(0)  # synthetic dev candidates: the engines are compared, not the fit
    scores = rng.uniform(-1.0, 1.0, 3000)
    labels = (scores + rng.normal(0.0, 0.1, 3000) > 0.0).astype(np.float64)
    cal = tmp_path / "cal.json"
    Calibration.fit(scores, labels, rng.integers(0, 3, 3000), "rerank", reranker=fingerprint).save(cal)
    options = ["--top-k", "5", "--reranker", str(tmp_path / "rr"), "--rerank-depth", "5",
               "--calibration", str(cal), "--decide"]  # fmt: skip
    out = tmp_path / "shards"
    # One batch holding the whole file: the cross-encoder sees the pairs the in-process run sees,
    # so even its last bits match (PyTorch's products vary in the last bit with batch composition).
    assert cli.main(["-q", "tag", "--engine", "ray", "--index", str(static_index), "--products",
                     str(products), "--out", str(out), "--num-workers", "1", "--batch-size", "64",
                     *options]) == 0  # fmt: skip
    expected = in_process_run(static_index, products, tmp_path / "run.jsonl", *options)
    assert len(expected) == 30 and all("assigned" in r for r in expected.values())
    assert same_run({r["id"]: r for r in read_shards(out)}, expected)


# ---- hostile input: read with the loaders' limits, every bad row reported ------------------------------
def test_a_hostile_shard_is_read_within_the_limits_and_every_bad_row_is_reported(
    static_index: Path, tmp_path: Path
) -> None:
    from tagindex.engines.shards import local_executor
    from tagindex.schema import LIMITS

    src = tmp_path / "src"
    src.mkdir()
    good = lambda i: json.dumps({"id": f"g{i}", "title": f"red running shoes {i}"}).encode()  # noqa: E731
    nested = "[" * (LIMITS.json_depth + 4) + "]" * (LIMITS.json_depth + 4)
    (src / "a.jsonl").write_bytes(b"\n".join([
        good(1),
        b'{"id": "bad-bytes", "title": "caf\xe9"}',  # line 2: not UTF-8
        b"[1, 2]",  # line 3: not an object
        b'{"id": "deep", "title": "x", "attributes": {"a": ' + nested.encode() + b"}}",  # line 4
        b'{"id": "huge", "title": "' + b"x" * (LIMITS.line_chars + 10) + b'"}',  # line 5: over the limit
        good(2),
        json.dumps({"id": "long-title", "title": "x" * (LIMITS.title_chars + 1)}).encode(),  # line 7
        json.dumps({"id": "g1", "title": "again"}).encode(),  # line 8: duplicate id
        good(3),
    ]) + b"\n")  # fmt: skip
    (src / "b.csv").write_bytes(
        b"id,title\n"
        b"g4,blue jeans\n"
        b"bad-csv,caf\xe9 au lait\n"  # line 3: not UTF-8
        b"g5,green hat\n" + b'oversize,"' + b"y" * (LIMITS.csv_field_chars + 1) + b'"\n'  # line 5
        b"lost,never read\n"
    )
    (src / "c.parquet").write_bytes(b"PAR1 this is not a parquet file")
    out = tmp_path / "o"
    options = TagOptions.of(top_k=3)
    summary = run_sharded(static_index, src, out, local_executor(static_index, options), options,
                          batch_size=4)  # fmt: skip
    tagged = sorted(r["id"] for r in read_shards(out))
    assert tagged == ["g1", "g2", "g3", "g4", "g5"]
    failures = [json.loads(line) for line in (out / FAILURES_FILE).read_text().splitlines()]
    where = {(Path(f["source"]).name, f["line"]): f["reason"] for f in failures}
    assert sorted(where) == [("a.jsonl", 2), ("a.jsonl", 3), ("a.jsonl", 4), ("a.jsonl", 5), ("a.jsonl", 7),
                             ("a.jsonl", 8), ("b.csv", 3), ("b.csv", 5), ("c.parquet", 1)]  # fmt: skip
    assert "not valid UTF-8" in where["a.jsonl", 2] and "expected a JSON object" in where["a.jsonl", 3]
    assert "nested deeper than" in where["a.jsonl", 4] and "longer than" in where["a.jsonl", 5]
    assert "title" in where["a.jsonl", 7] and "duplicate id 'g1'" in where["a.jsonl", 8]
    assert "not valid UTF-8" in where["b.csv", 3]
    assert "rest of this file cannot be read" in where["b.csv", 5] and "b.csv:5" in where["b.csv", 5]
    assert "rest of this file cannot be read" in where["c.parquet", 1]
    assert summary.failures == len(failures) and summary.tagged == 5


def test_shard_rows_give_back_the_run_lines_including_decisions_and_new_fields() -> None:
    from tagindex.engines.shards import records_table, table_records

    lines: list[dict[str, Any]] = [
        {"id": "1", "tags": [{"tag": "a", "score": 0.5, "name": "A"}, {"tag": "p", "score": 0.5,
         "ancestor_of": "a"}], "assigned": [{"tag": "a", "probability": 0.9, "level": 2}]},
        {"id": "2", "tags": [], "assigned": []},
        {"id": "3", "tags": [{"tag": "b", "score": 0.25}], "by_kind": {"color": ["red"]}},  # a new field
    ]  # fmt: skip
    table = records_table(lines)
    assert table.schema.equals(SHARD_SCHEMA)
    assert list(table_records(table)) == lines


def test_a_rerun_with_option_objects_and_tuples_is_recognised(static_index: Path, tmp_path: Path) -> None:
    """The run identity is compared as it reads back from _run.json, whatever the options' types."""
    from dataclasses import dataclass

    from tagindex.engines.shards import _run_identity, prepare_out_dir

    @dataclass
    class Policy:
        limits: tuple[int, ...] = (3, 1)

    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "1", "title": "red shoes"}\n')
    options = TagOptions(tag={"top_k": 3, "per_kind": Policy(), "pair": (1, 2)})
    identity = _run_identity(static_index, tmp_path, [src], options, 10)
    out = tmp_path / "o"
    assert prepare_out_dir(out, identity) == set()
    assert prepare_out_dir(out, _run_identity(static_index, tmp_path, [src], options, 10)) == set()
    other = TagOptions(tag={"top_k": 3, "per_kind": Policy((2, 1)), "pair": (1, 2)})
    with pytest.raises(InputError, match="options"):
        prepare_out_dir(out, _run_identity(static_index, tmp_path, [src], other, 10))
