"""``per_kind`` on ``POST /v1/tag``: the library's policy (tagindex.kinds), and a 422 with the reason
for a bad value. The index is the mixed-kind shop sample (categories and keywords)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import REPO, make_settings
from tagindex.service.app import create_app

from tagindex.index import TagIndex
from tagindex.io import load_products, load_tags

pytestmark = pytest.mark.slow  # loads the real encoder

SHOP = REPO / "data" / "examples" / "mixed-shop"


@pytest.fixture(scope="module")
def shop_index(svc_encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("svc-shop") / "index"
    TagIndex.build(load_tags(SHOP / "tags.csv"), encoder=svc_encoder).save(out)
    return out


@pytest.fixture(scope="module")
def shop_client(shop_index: Path, svc_encoder) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(shop_index, max_batch=64), encoder=svc_encoder)) as c:
        yield c


def _products() -> list[dict[str, str]]:
    with (SHOP / "products.csv").open(newline="") as f:
        return [
            {"id": r["id"], "title": r["title"], "description": r["description"]} for r in csv.DictReader(f)
        ]


def test_per_kind_matches_the_library(shop_client: TestClient, shop_index: Path, svc_encoder) -> None:
    body = {
        "products": _products(),
        "per_kind": "category=1,keyword=5@1.0",
        "kind_norm": ["keyword"],
        "category_title_weight": 0.5,
        "include_ancestors": True,
    }
    r = shop_client.post("/v1/tag", json=body)
    assert r.status_code == 200, r.text
    served = {p["id"]: [(t["tag"], round(t["score"], 5)) for t in p["tags"]] for p in r.json()["results"]}
    index = TagIndex.load(shop_index, encoder=svc_encoder)
    policy = "category=1,keyword=5@1.0"
    from tagindex.kinds import KindPolicy

    direct = index.tag(
        load_products(SHOP / "products.csv"),
        include_ancestors=True,
        per_kind=KindPolicy.parse(policy, ["keyword"], 0.5),
    )
    assert served == {d.id: [(t.tag, round(t.score, 5)) for t in d.tags] for d in direct}
    kinds = {t.id: t.kind for t in index.tags}
    for tags in served.values():  # one category (plus its ancestors) and at most five keywords
        ranked = [t for t, _ in tags]
        assert sum(kinds[t] == "keyword" for t in ranked) <= 5
        assert sum(kinds[t] == "category" for t in ranked) in (1, 2)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"per_kind": "category=lots"}, "category=lots"),
        ({"per_kind": "colour=1"}, "colour"),
        ({"per_kind": "keyword=2", "kind_norm": ["keyword"]}, "at least"),
    ],
)
def test_bad_per_kind_is_a_422_with_the_reason(shop_client: TestClient, extra: dict, reason: str) -> None:
    r = shop_client.post("/v1/tag", json={"product": _products()[0], **extra})
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"]


def test_title_weight_out_of_range_is_refused(shop_client: TestClient) -> None:
    r = shop_client.post("/v1/tag", json={"product": _products()[0], "category_title_weight": 2})
    assert r.status_code == 422
