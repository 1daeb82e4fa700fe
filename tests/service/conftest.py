"""Fixtures for the service tests: a small real index (all 394 MWPD GS1 tags) built once per session."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import REPO, make_settings

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"

pytest.importorskip("fastapi")
pytest.importorskip("pydantic_settings", reason="install tagindex[service]")
pytest.importorskip("prometheus_client", reason="install tagindex[service]")

DATA = Path(os.environ.get("TAGINDEX_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def svc_encoder():
    """The packaged MiniLM, loaded once and shared by every app the tests create."""
    from tagindex.encoders import load_encoder

    return load_encoder()


@pytest.fixture(scope="session")
def mwpd_converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MWPD converted by the real converter (tags.jsonl, validation.jsonl, ...)."""
    if not (DATA / "mwpd" / "train.json").exists():
        pytest.skip(f"real data not found at {DATA / 'mwpd'} (set TAGINDEX_DATA or run `make data`)")
    from tagindex.convert import convert

    out = tmp_path_factory.mktemp("svc-mwpd")
    convert("mwpd", DATA / "mwpd", out)
    return out


@pytest.fixture(scope="session")
def built_index(mwpd_converted: Path, svc_encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MWPD tag vocabulary indexed with the packaged MiniLM; tests copy it before changing it."""
    from tagindex.index import TagIndex
    from tagindex.io import load_tags

    out = tmp_path_factory.mktemp("svc-index") / "mwpd-index"
    TagIndex.build(load_tags(mwpd_converted / "tags.jsonl"), encoder=svc_encoder).save(out)
    return out


@pytest.fixture(scope="session")
def sample_products(mwpd_converted: Path) -> list[dict]:
    """The first 20 MWPD validation offers as API product objects."""
    rows = []
    with (mwpd_converted / "validation.jsonl").open() as f:
        for line, _ in zip(f, range(20), strict=False):
            r = json.loads(line)
            rows.append({"id": r["id"], "title": r["title"], "description": r["description"]})
    return rows


@pytest.fixture
def index_dir(built_index: Path, tmp_path: Path) -> Path:
    """A private copy of the index that a test may change."""
    target = tmp_path / "index"
    shutil.copytree(built_index, target)
    return target


@pytest.fixture
def client(index_dir: Path, svc_encoder) -> Iterator:
    from fastapi.testclient import TestClient
    from tagindex.service.app import create_app

    with TestClient(
        create_app(make_settings(index_dir, max_batch=8, max_top_k=400), encoder=svc_encoder)
    ) as c:
        yield c


# ---- rerank stage: a tiny cross-encoder trained on a small real MWPD sample, once per session ----------
@pytest.fixture(scope="session")
def mwpd_train_sample(mwpd_converted: Path) -> list:
    """60 MWPD training offers (seeded sample): 48 train the reranker, the rest fit its calibration."""
    import random

    from tagindex.io import load_products

    return random.Random(7).sample(load_products(mwpd_converted / "train.jsonl"), 60)


@pytest.fixture(scope="session")
def stage_files(
    exemplar_index: Path, built_index: Path, svc_encoder, mwpd_train_sample, tmp_path_factory
) -> dict[str, Path]:
    """Reranker (trained against ``exemplar_index``, whose key its fusion weights record), a
    calibration fitted for it, a second (untrained) reranker it does not belong to, and a bi-encoder
    calibration for ``built_index``: the files ``tagindex train-reranker`` / ``calibrate`` write, built
    with the same library calls (seconds: 48 products, 1 epoch)."""
    from tagindex.calibrate import CalibrationParams, fit_calibration
    from tagindex.index import TagIndex
    from tagindex.rerank import Reranker, RerankerParams, train_reranker

    out = tmp_path_factory.mktemp("svc-stage")
    index = TagIndex.load(exemplar_index, encoder=svc_encoder)
    train, dev = mwpd_train_sample[:48], mwpd_train_sample[48:]
    params = RerankerParams(
        max_products=48, hard_negatives=2, random_negatives=1, dev_fraction=0.2, dev_eval_products=10, depth=8
    )
    reranker = train_reranker(index, train, params)
    reranker.save(out / "reranker")
    reranker = Reranker.load(out / "reranker")
    # Lenient targets: a dozen dev products must still give some assigned tags to test decisions on.
    cal_params = CalibrationParams(target_precision=0.5, min_samples=10, min_positives=1)
    fit_calibration(index, dev, reranker, depth=8, params=cal_params).save(out / "calibration.json")
    plain = TagIndex.load(built_index, encoder=svc_encoder)
    fit_calibration(plain, dev, None, depth=8, params=cal_params).save(out / "calibration-bi.json")
    Reranker.create(RerankerParams(seed=99, depth=8)).save(out / "other-reranker")
    return {
        "reranker": out / "reranker",
        "calibration": out / "calibration.json",
        "calibration_bi": out / "calibration-bi.json",
        "other_reranker": out / "other-reranker",
    }


@pytest.fixture(scope="session")
def exemplar_index(built_index: Path, svc_encoder, mwpd_train_sample, tmp_path_factory) -> Path:
    """The MWPD index with the 48 training offers stored as exemplars (nearest labelled products)."""
    from tagindex.index import TagIndex

    out = tmp_path_factory.mktemp("svc-exemplars") / "index"
    index = TagIndex.load(built_index, encoder=svc_encoder)
    index.add_exemplars(mwpd_train_sample[:48])
    index.save(out)
    return out


@pytest.fixture
def stage_index_dir(exemplar_index: Path, tmp_path: Path) -> Path:
    """A private copy of the exemplar index (the one the stage reranker was trained against)."""
    target = tmp_path / "stage-index"
    shutil.copytree(exemplar_index, target)
    return target
