"""``?lang=``: tag names and paths in the requested language, over the routes that return tags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import make_settings

from tagindex.schema import Tag

pytestmark = pytest.mark.slow  # the real encoder

TAGS = [
    Tag("apparel", "Apparel", names={"zh-CN": "服装"}),
    Tag("shoes", "Shoes", parent="apparel", names={"zh-CN": "鞋类"}),
    Tag("boots", "Boots", parent="shoes", names={"zh-CN": "靴子"}),
    Tag("hats", "Hats", parent="apparel"),  # no Chinese name: the default one is shown
]


@pytest.fixture
def client(tmp_path: Path, svc_encoder) -> Iterator:
    from fastapi.testclient import TestClient
    from tagindex.service.app import create_app

    from tagindex.index import TagIndex

    TagIndex.build(TAGS, encoder=svc_encoder).save(tmp_path / "index")
    with TestClient(create_app(make_settings(tmp_path / "index"), encoder=svc_encoder)) as c:
        yield c


def test_tagging_and_lookups_answer_in_the_requested_language(client) -> None:
    body = {"product": {"id": "1", "title": "leather ankle boots"}, "top_k": 4, "include_ancestors": True}
    plain = client.post("/v1/tag", json=body).json()["results"][0]["tags"]
    zh = client.post("/v1/tag?lang=zh-CN", json=body).json()["results"][0]["tags"]
    assert [t["tag"] for t in zh] == [t["tag"] for t in plain]  # same answer, other names
    names = {t["tag"]: (t["name"], t["path"]) for t in zh}
    assert names["boots"] == ("靴子", ["服装", "鞋类", "靴子"])
    assert {t["tag"]: t["name"] for t in plain}["boots"] == "Boots"

    assert client.get("/v1/tags/boots", params={"lang": "zh"}).json()["path"] == ["服装", "鞋类", "靴子"]
    hats = client.get("/v1/tags/hats", params={"lang": "zh-CN"}).json()
    assert hats["name"] == "Hats" and hats["path"] == ["服装", "Hats"]
    similar = client.get("/v1/tags/shoes/similar", params={"lang": "zh-CN", "top_k": 3}).json()["tags"]
    assert {t["tag"]: t["name"] for t in similar}["boots"] == "靴子"
    found = client.post("/v1/tags/similar?lang=zh-CN", json={"text": "boots", "top_k": 1}).json()
    assert found["tags"][0]["name"] == "靴子"
    assert [t["name"] for t in client.get("/v1/tags", params={"q": "boots", "lang": "zh-CN"}).json()] == [
        "靴子"
    ]


@pytest.mark.parametrize("bad", ["", "x", "zh_CN", "zh-CN;drop", "a" * 40])
def test_a_malformed_language_is_a_422_with_the_reason(client, bad: str) -> None:
    r = client.get("/v1/tags/boots", params={"lang": bad})
    assert r.status_code == 422 and "lang" in r.text
