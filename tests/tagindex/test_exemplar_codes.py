"""``tagindex index --exemplar-codes``: exemplar indexes saved as FAISS IVF codes, real MWPD offers.

The indexes use the packaged static encoder (``tokenlearn-static``, 64-d): fast, and its vectors do
not depend on batching, so a Ray build must store the very codes an in-process build does. The
float32 index built from the same products is the exact reference the coded one is checked against.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tagindex import cli
from tagindex.compressed_exemplars import CODES_FILE, LABEL_SUMS_FILE, CodedExemplars, CompressedParams
from tagindex.errors import CompatibilityError
from tagindex.exemplars import EXEMPLAR_VECTORS
from tagindex.index import TagIndex
from tagindex.io import load_products
from tagindex.learn import learn, save_learned, undo
from tagindex.schema import Product
from tagindex.store import IndexFormatError, read_manifest, sha256_file

pytest.importorskip(
    "static_model", reason="tokenlearn-static-model is not installed (tagindex[fast-encoders])"
)

N_EXEMPLARS, N_QUERIES = 3000, 500


def _build(tags: Path, products: Path, out: Path, *extra: str) -> Path:
    assert cli.main(["-q", "index", "--tags", str(tags), "--products", str(products), "--out", str(out),
                     "--backend", "tokenlearn-static", *extra]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def data(mwpd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first 3,000 MWPD train offers as exemplars, 500 validation offers as queries, and a
    float32, an ivf-sq8 and an ivf-pq index built from them through the CLI."""
    root = tmp_path_factory.mktemp("codes")
    train = root / "train.jsonl"
    with (mwpd_dir / "train.jsonl").open() as f:
        train.write_text("".join(next(f) for _ in range(N_EXEMPLARS)))
    queries = root / "queries.jsonl"
    with (mwpd_dir / "validation.jsonl").open() as f:
        queries.write_text("".join(next(f) for _ in range(N_QUERIES)))
    tags = mwpd_dir / "tags.jsonl"
    return {
        "tags": tags,
        "train": train,
        "queries": queries,
        "root": root,
        "float32": _build(tags, train, root / "f32"),
        "ivf-sq8": _build(tags, train, root / "sq8", "--exemplar-codes", "ivf-sq8"),
        "ivf-pq": _build(
            tags,
            train,
            root / "pq",
            "--exemplar-codes",
            "ivf-pq",
            "--exemplar-pq-m",
            "16",
            "--exemplar-nprobe",
            "16",
        ),  # fmt: skip
    }


def _run(index: Path, products: Path, out: Path) -> list[dict[str, Any]]:
    assert cli.main(["-q", "tag", "--index", str(index), "--products", str(products), "--out", str(out),
                     "--top-k", "3"]) == 0  # fmt: skip
    return [json.loads(line) for line in out.read_text().splitlines()]


def _top1_agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    assert [r["id"] for r in a] == [r["id"] for r in b]
    return float(np.mean([x["tags"][0]["tag"] == y["tags"][0]["tag"] for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize(("kind", "min_agreement"), [("ivf-sq8", 0.93), ("ivf-pq", 0.85)])
def test_a_coded_index_saves_codes_not_vectors_and_tags_like_the_float32_one(
    data: dict[str, Path], tmp_path: Path, kind: str, min_agreement: float
) -> None:
    manifest = read_manifest(data[kind], "tagindex")
    root = manifest.root
    assert not (root / EXEMPLAR_VECTORS).exists()  # the float32 matrix is what codes replace
    # Every stored file, the codes included, is listed with its checksum.
    for name in (CODES_FILE, LABEL_SUMS_FILE, "exemplars.parquet"):
        assert manifest["files"][name] == sha256_file(root / name)
    storage = manifest["exemplar_storage"]
    assert storage["kind"] == kind and storage["codes_file_bytes"] == (root / CODES_FILE).stat().st_size
    codes_bytes = 64 if kind == "ivf-sq8" else 16
    assert storage["bytes_per_exemplar"]["codes"] == codes_bytes < 4 * 64
    float32_root = read_manifest(data["float32"], "tagindex").root
    assert "exemplar_storage" not in read_manifest(data["float32"], "tagindex")  # unchanged format
    assert (root / CODES_FILE).stat().st_size < (float32_root / EXEMPLAR_VECTORS).stat().st_size

    index = TagIndex.load(data[kind])
    assert index.exemplar_storage == kind and index.n_exemplars == N_EXEMPLARS
    # The approximate answer checked against the exact one: the same top tag for most offers ...
    exact = _run(data["float32"], data["queries"], tmp_path / "f32.jsonl")
    coded = _run(data[kind], data["queries"], tmp_path / "coded.jsonl")
    agreement = _top1_agreement(exact, coded)
    assert min_agreement <= agreement <= 1.0
    # ... and a real difference (approximate neighbours), not the exact search in disguise.
    assert coded != exact
    # Prototypes (one vector a tag) are kept exactly, from the label sums.
    f32 = TagIndex.load(data["float32"]).scorer()
    scorer = index.scorer()
    assert f32 is not None and scorer is not None
    assert scorer.targets == f32.targets
    assert np.array_equal(scorer.counts, f32.counts)
    assert np.allclose(scorer.prototypes, f32.prototypes, atol=1e-5)
    assert np.array_equal(scorer.label_table, f32.label_table)


def test_a_damaged_codes_file_is_refused_with_its_name(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "sq8"
    shutil.copytree(data["ivf-sq8"], copy, symlinks=True)
    codes = read_manifest(copy, "tagindex").root / CODES_FILE
    raw = bytearray(codes.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    codes.write_bytes(bytes(raw))
    capsys.readouterr()
    args = [
        "-q",
        "tag",
        "--index",
        str(copy),
        "--products",
        str(data["queries"]),
        "--out",
        str(tmp_path / "r"),
    ]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert CODES_FILE in err and "checksum" in err and "Traceback" not in err
    # Unverified loading (no checksums read) still refuses codes that are not a FAISS index.
    codes.write_bytes(b"not a faiss index at all")
    with pytest.raises(IndexFormatError, match=CODES_FILE):
        TagIndex.load(copy, verify=False)


def test_learning_on_a_coded_index_works_saves_and_undoes(data: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(data["ivf-sq8"], tmp_path / "sq8", symlinks=True)
    index = TagIndex.load(tmp_path / "sq8")
    queries = load_products(data["queries"])[:40]
    before = [r.tags for r in index.tag(queries, top_k=3)]
    # Teach each of 5 offers its second-ranked tag: the offer, now a float32 row after the codes,
    # is its own nearest neighbour and votes for that tag.
    scorer = index.scorer()
    assert scorer is not None
    taught = [
        Product(p.id, p.title, p.description, p.attributes, tags=[ranked[1].tag])
        for p, ranked in list(zip(queries, before, strict=True))[:5]
    ]
    vectors = index.encode_products(taught)
    cols = [scorer.targets.index(p.tags[0]) for p in taught]
    old = scorer.score(vectors)[np.arange(5), cols]
    made = learn(index, taught)
    scorer = index.scorer()
    assert scorer is not None and scorer.n_rows == N_EXEMPLARS + 5
    sims, rows = scorer.neighbours(vectors)
    assert rows[:, 0].tolist() == list(range(N_EXEMPLARS, N_EXEMPLARS + 5))
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5)
    assert (scorer.score(vectors)[np.arange(5), cols] > old + 0.05).all()
    # Saved with the learned state beside the codes, reloaded: the same answers.
    save_learned(index, tmp_path / "sq8")
    again = TagIndex.load(tmp_path / "sq8")
    assert again.exemplar_storage == "ivf-sq8"
    assert [r.tags for r in again.tag(queries, top_k=3)] == [r.tags for r in index.tag(queries, top_k=3)]
    # Undo restores exactly the answers from before.
    undo(again, [j.id for j in made])
    assert [r.tags for r in again.tag(queries, top_k=3)] == before


def test_judging_a_base_exemplar_moves_it_between_prototypes_as_the_float32_index_does(
    data: dict[str, Path],
) -> None:
    exemplars = load_products(data["train"])[:3]
    coded, exact = TagIndex.load(data["ivf-sq8"]), TagIndex.load(data["float32"])
    leaves = [t.id for t in exact.tags if t.id in set(exact.scorer().targets)]  # type: ignore[union-attr]
    for index in (coded, exact):
        # Reject each exemplar's deepest label and accept another leaf (same text: same vector).
        triples = []
        for p in exemplars:
            triples += [
                (p.id, p.tags[-1], "reject"),
                (p.id, next(t for t in leaves if t not in p.tags), "add"),
            ]
        learn(index, exemplars, judgements=triples)
    a, b = coded.scorer(), exact.scorer()
    assert a is not None and b is not None and a.targets == b.targets
    assert np.array_equal(a.counts, b.counts)
    assert np.allclose(a.prototypes, b.prototypes, atol=1e-5)
    assert np.array_equal(a.label_table, b.label_table)


def test_adding_exemplars_to_a_coded_index_and_retiring_tags(data: dict[str, Path], tmp_path: Path) -> None:
    index = TagIndex.load(data["ivf-sq8"])
    queries = load_products(data["queries"])
    target = next(t for t in index.scorer().targets if t != index.tag(queries[:1], 1)[0].tags[0].tag)  # type: ignore[union-attr]
    # Five copies of a query labelled with another tag: its nearest neighbours now vote for it.
    copies = [replace(queries[0], id=f"new-{i}", tags=[target]) for i in range(5)]
    assert index.add_exemplars(copies) == 5
    assert index.n_exemplars == N_EXEMPLARS + 5
    assert (
        isinstance(index.base_exemplars, CodedExemplars)
        and index.base_exemplars.codes.ntotal == N_EXEMPLARS + 5
    )
    scorer = index.scorer()
    assert scorer is not None
    _, rows = scorer.neighbours(index.encode_products(queries[:1]))
    assert set(range(N_EXEMPLARS, N_EXEMPLARS + 5)) <= set(rows[0].tolist())
    # Retiring a whole top-level branch: its exemplars lose every label; the codes keep their rows,
    # which never vote again, and the prototypes still equal the float32 index's.
    exact = TagIndex.load(data["float32"])
    top = next(t.id for t in exact.tags if t.parent is None)
    coded = TagIndex.load(data["ivf-sq8"])
    for ix in (coded, exact):
        ix.remove_tags([top], cascade=True)
    a, b = coded.scorer(), exact.scorer()
    assert a is not None and b is not None and a.targets == b.targets
    assert a.n_masked > 0 and a.n_rows == N_EXEMPLARS and b.n_rows == N_EXEMPLARS - a.n_masked
    assert np.allclose(a.prototypes, b.prototypes, atol=1e-5)
    assert a.masked is not None
    _, rows = a.neighbours(coded.encode_products(queries[:50]))
    assert not a.masked[rows[rows >= 0]].any()
    # Saved after both changes (as `tagindex update` does) and reloaded: the same answers.
    index.save(tmp_path / "changed")
    coded.save(tmp_path / "retired")
    for before, where in ((index, "changed"), (coded, "retired")):
        again = TagIndex.load(tmp_path / where)
        assert again.exemplar_storage == "ivf-sq8" and again.n_exemplars == before.n_exemplars
        assert [r.tags for r in again.tag(queries[:30], 3)] == [r.tags for r in before.tag(queries[:30], 3)]


def test_leave_one_out_on_a_coded_index_is_refused_for_exemplars_only(data: dict[str, Path]) -> None:
    index = TagIndex.load(data["ivf-sq8"])
    with pytest.raises(CompatibilityError, match="float32"):
        index.tag(load_products(data["train"])[:5], leave_one_out=True)
    # Products that are not exemplars have nothing to leave out.
    assert len(index.tag(load_products(data["queries"])[:5], leave_one_out=True)) == 5
    # Self-training fits a classifier on the float32 exemplar vectors: refused too, with the reason.
    from tagindex.retrain import pseudo_label

    with pytest.raises(CompatibilityError, match="ivf-sq8 codes"):
        pseudo_label(index, load_products(data["queries"])[:5])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--exemplar-codes", "ivf-pq", "--exemplar-pq-m", "7"], "does not divide"),
        (["--exemplar-nprobe", "8"], "only with --exemplar-codes"),
        (["--exemplar-codes", "ivf-sq8", "--exemplar-nlist", "0"], "at least 1"),
    ],
)
def test_bad_code_options_exit_2_with_the_reason(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    capsys.readouterr()
    args = ["-q", "index", "--tags", str(data["tags"]), "--products", str(data["train"]),
            "--out", str(tmp_path / "x"), "--backend", "tokenlearn-static", *extra]  # fmt: skip
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_pq_on_too_few_exemplars_is_refused(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    few = tmp_path / "few.jsonl"
    few.write_text("".join(data["train"].read_text().splitlines(keepends=True)[:100]))
    capsys.readouterr()
    args = ["-q", "index", "--tags", str(data["tags"]), "--products", str(few), "--out",
            str(tmp_path / "x"), "--backend", "tokenlearn-static", "--exemplar-codes", "ivf-pq"]  # fmt: skip
    assert cli.main(args) == 2
    assert "needs at least 256 exemplars" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_build_stores_the_codes_of_the_in_process_build(data: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'tagindex[scale]')")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    out = _build(data["tags"], data["train"], tmp_path / "ray", "--exemplar-codes", "ivf-sq8",
                 "--engine", "ray", "--num-workers", "2")  # fmt: skip
    got, want = read_manifest(out, "tagindex"), read_manifest(data["ivf-sq8"], "tagindex")
    for name in (CODES_FILE, LABEL_SUMS_FILE, "exemplars.parquet"):
        assert got["files"][name] == want["files"][name]
    assert not list(tmp_path.glob(".index-ray-*"))  # the temporary tags-only index is gone


def test_compress_exemplars_needs_float32_exemplars(data: dict[str, Path]) -> None:
    index = TagIndex.load(data["ivf-sq8"])
    with pytest.raises(ValueError, match="no float32 exemplars"):
        index.compress_exemplars(CompressedParams(kind="ivf-sq8"))


def test_the_service_answers_from_a_coded_index_as_the_library_does(data: dict[str, Path]) -> None:
    pytest.importorskip("fastapi", reason="the service extra is not installed (tagindex[service])")
    from fastapi.testclient import TestClient
    from tagindex.service.app import create_app
    from tagindex.service.settings import Settings

    queries = load_products(data["queries"])[:8]
    expected = TagIndex.load(data["ivf-sq8"]).tag(queries, top_k=3)
    body = {
        "products": [
            {"id": p.id, "title": p.title, "description": p.description, "attributes": p.attributes}
            for p in queries
        ],
        "top_k": 3,
        "explain": True,
    }
    key = "test-key-0123456789"
    with TestClient(create_app(Settings(index_dir=data["ivf-sq8"], api_key=key))) as client:
        r = client.post("/v1/tag", json=body, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    assert [[t["tag"] for t in x["tags"]] for x in got] == [[t.tag for t in e.tags] for e in expected]
