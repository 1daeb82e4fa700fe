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

    from service.app import create_app

    with TestClient(
        create_app(make_settings(index_dir, max_batch=8, max_top_k=400), encoder=svc_encoder)
    ) as c:
        yield c
