"""`tagindex index` without `--backend` builds with ONNX int8 (issue 15); PyTorch stays an option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagindex.backends import PYTORCH, preferred_index_backend, trainable_model
from tagindex.cli import main
from tagindex.config import DEFAULT_MODEL
from tagindex.encoders import EncoderError
from tagindex.store import read_manifest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _backend(index: Path) -> str:
    return str(read_manifest(index, "tagindex")["encoder"]["params"]["backend"])


def _ranked(run: Path) -> dict[str, list[str]]:
    rows = [json.loads(line) for line in run.read_text().splitlines()]
    return {row["id"]: [t["tag"] for t in row["tags"]] for row in rows}


def _recall_at_5(runs: dict[str, list[str]], gold: dict[str, set[str]]) -> float:
    return sum(len(set(runs[k][:5]) & gold[k]) / len(gold[k]) for k in gold) / len(gold)


def test_preferred_backend_is_int8_for_mean_pooling_models_only(tmp_path: Path) -> None:
    assert preferred_index_backend(DEFAULT_MODEL) == "onnx-int8"
    # A CLS-pooling directory cannot be exported: the PyTorch encoder builds it.
    model = tmp_path / "cls-model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    (model / "tokenizer.json").write_text("{}")
    assert preferred_index_backend(str(model)) == PYTORCH


@pytest.mark.slow
def test_default_index_is_int8_and_agrees_with_pytorch(
    mwpd_dir: Path, mwpd_sample: Path, tmp_path: Path
) -> None:
    tags = str(mwpd_dir / "tags.jsonl")
    assert main(["-q", "index", "--tags", tags, "--out", str(tmp_path / "int8")]) == 0
    assert main(["-q", "index", "--tags", tags, "--out", str(tmp_path / "pt"), "--backend", PYTORCH]) == 0
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"encoder": {"backend": PYTORCH}}))
    assert main(["-q", "index", "--tags", tags, "--out", str(tmp_path / "cfg"), "--config", str(config)]) == 0
    assert _backend(tmp_path / "int8") == "onnx-int8"
    assert _backend(tmp_path / "pt") == PYTORCH
    assert _backend(tmp_path / "cfg") == PYTORCH  # a config that names the backend is obeyed

    runs = {}
    for name in ("int8", "pt"):
        out = tmp_path / f"{name}.jsonl"
        argv = [
            "-q",
            "tag",
            "--index",
            str(tmp_path / name),
            "--products",
            str(mwpd_sample),
            "--out",
            str(out),
        ]
        assert main(argv) == 0
        runs[name] = _ranked(out)
    assert runs["int8"].keys() == runs["pt"].keys() and len(runs["pt"]) == 60
    # int8 weights move scores by ~0.01: among 394 GS1 tags that swaps near-ties (top-1 agreement
    # was 0.80 on this sample) but keeps PyTorch's choice near the top and the quality the same.
    near = sum(runs["pt"][k][0] in runs["int8"][k][:5] for k in runs["pt"]) / len(runs["pt"])
    gold = {
        row["id"]: {t if isinstance(t, str) else t["tag"] for t in row["tags"]}
        for row in map(json.loads, mwpd_sample.read_text().splitlines())
    }
    recall = {name: _recall_at_5(run, gold) for name, run in runs.items()}
    assert near >= 0.95, near
    assert recall["int8"] >= recall["pt"] - 0.03, recall


def test_training_starts_from_the_model_an_export_was_made_from(tmp_path: Path) -> None:
    tags = tmp_path / "tags.txt"
    tags.write_text("Backpacks\nBoots\nLightweight\n")
    assert main(["-q", "index", "--tags", str(tags), "--out", str(tmp_path / "index")]) == 0
    encoder_dir = read_manifest(tmp_path / "index", "tagindex").root / "encoder"
    assert trainable_model(str(encoder_dir)) == DEFAULT_MODEL
    assert trainable_model(DEFAULT_MODEL) == DEFAULT_MODEL


def test_an_export_names_its_own_source_not_an_earlier_copy_of_the_same_weights(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from tagindex.backends.onnx import cached_export

    monkeypatch.setenv("TAGINDEX_CACHE_DIR", str(tmp_path / "cache"))
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(tiny_model, first)
    shutil.copytree(tiny_model, second)  # the same bytes in another place
    export_first = cached_export(str(first), "int8")
    export_second = cached_export(str(second), "int8")
    assert export_first != export_second
    shutil.rmtree(first)  # a temporary model directory, gone
    assert trainable_model(str(export_second)) == str(second)
    with pytest.raises(EncoderError, match="gone or has changed"):
        trainable_model(str(export_first))
