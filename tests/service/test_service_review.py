"""Learning in the service: feedback changes the next /v1/tag, deletes undo it, the review queue and the
page's review mode (headless Chromium), reload/rollback of index versions, and kill -9 during learning."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_support import API_KEY, CHROMIUM, CHROMIUM_ARGS, KEY, free_port, make_settings, serve_in_thread

JEWEL = "64010100_Jewellery"


@pytest.fixture
def pool_file(mwpd_converted: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pool.jsonl"
    with (mwpd_converted / "validation.jsonl").open() as f:
        out.write_text("".join(line for line, _ in zip(f, range(60), strict=False)))
    return out


@pytest.fixture
def served(index_dir: Path, pool_file: Path, svc_encoder) -> Iterator[tuple[str, object]]:
    from tagindex.service.app import create_app

    app = create_app(make_settings(index_dir, review_pool=pool_file), encoder=svc_encoder)
    for url in serve_in_thread(app):
        yield url, app


def tag(client: httpx.Client, title: str) -> list[str]:
    r = client.post("/v1/tag", json={"product": {"id": "q", "title": title}, "top_k": 5})
    assert r.status_code == 200, r.text
    return [t["tag"] for t in r.json()["results"][0]["tags"]]


def test_a_judgement_changes_the_next_answer_within_a_second_and_delete_undoes_it(served) -> None:
    url, _ = served
    title = "Hand-carved wooden chess set with folding board"
    with httpx.Client(base_url=url, timeout=30) as c:
        before = tag(c, title)
        r = c.post(
            "/v1/feedback",
            headers=KEY,
            json={"product": {"id": "p1", "title": title}, "judgements": [{"tag": JEWEL, "action": "add"}]},
        )
        assert r.status_code == 201, r.text
        after = tag(c, title)  # the very next request already sees the judgement
        assert after[0] == JEWEL != before[0]
        info = c.get("/v1/info").json()["index"]
        assert info["index_version"] >= 1
        row = r.json()["stored"][0]["id"]
        assert c.delete(f"/v1/feedback/{row}").status_code == 401  # needs the key
        d = c.delete(f"/v1/feedback/{row}", headers=KEY)
        assert d.status_code == 200 and d.json()["deleted"] == [row]
        assert tag(c, title) == before
        assert c.delete(f"/v1/feedback/{row}", headers=KEY).status_code == 404


def test_review_next_returns_reasons_and_skips_judged_products(served) -> None:
    url, _ = served
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/v1/review/next?n=5").status_code == 401
        r = c.get("/v1/review/next?n=5", headers=KEY)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) == 5 and body["pool"] == 60
        first = body["items"][0]
        assert first["reason"] and first["tags"] and first["product"]["title"]
        assert c.get("/v1/review/next?n=5", headers=KEY).json() == body  # deterministic
        c.post(
            "/v1/feedback",
            headers=KEY,
            json={
                "product": first["product"],
                "judgements": [{"tag": first["tags"][0]["tag"], "action": "accept"}],
            },
        )
        again = c.get("/v1/review/next?n=5", headers=KEY).json()
        assert first["product"]["id"] not in {i["product"]["id"] for i in again["items"]}
        assert c.get("/v1/review/next?n=0", headers=KEY).status_code == 422


def test_reload_switches_versions_without_downtime_and_rolls_back(
    served, index_dir: Path, svc_encoder
) -> None:
    from tagindex.index import TagIndex
    from tagindex.learn import learn, save_learned
    from tagindex.schema import Product

    url, _ = served
    title = "Hand-carved wooden chess set with folding board"
    v2 = index_dir.parent / "index-v2"
    shutil.copytree(index_dir, v2)
    other = TagIndex.load(v2, encoder=svc_encoder)
    learn(other, [Product("x", title, tags=[JEWEL])])
    save_learned(other, v2)
    with httpx.Client(base_url=url, timeout=120) as c:
        before = tag(c, title)
        assert c.post("/v1/admin/reload", json={"index_dir": str(v2)}).status_code == 401
        outside = c.post("/v1/admin/reload", headers=KEY, json={"index_dir": "/tmp"})
        assert outside.status_code == 422
        r = c.post("/v1/admin/reload", headers=KEY, json={"index_dir": str(v2)})
        assert r.status_code == 200, r.text
        assert r.json()["previous"] == str(index_dir) and tag(c, title)[0] == JEWEL
        assert c.get("/healthz").status_code == 200
        back = c.post("/v1/admin/rollback", headers=KEY)
        assert back.status_code == 200 and back.json()["index_dir"] == str(index_dir)
        assert tag(c, title) == before


@pytest.mark.slow
def test_page_review_mode_with_the_keyboard(served) -> None:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    url, app = served
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.fill("#api-key", API_KEY)
        page.click("#key-form button")
        page.fill("#review-n", "4")
        page.click("#review-form button")
        page.wait_for_selector("#review-tags li")
        assert "product 1 of 4" in page.text_content("#review-progress")
        reason = page.text_content(".reason")
        assert reason and "Why this product" in reason
        first_tag = page.get_attribute("#review-tags li.selected", "data-tag")
        page.locator("#review-section").focus()
        page.keyboard.press("a")  # accept the selected (first) suggestion
        playwright.expect(page.locator("#review-progress")).to_contain_text("1 judged")
        assert "accepted" in page.text_content(f"[data-verdict='{first_tag}']")
        second_tag = page.get_attribute("#review-tags li.selected", "data-tag")
        assert second_tag != first_tag  # the selection moved on
        page.keyboard.press("r")  # reject the second suggestion
        playwright.expect(page.locator("#review-progress")).to_contain_text("2 judgements")
        page.keyboard.press("t")  # add a missing tag
        assert page.evaluate("document.activeElement.id") == "review-add"
        page.keyboard.type(JEWEL)
        page.keyboard.press("Enter")
        playwright.expect(page.locator("#review-progress")).to_contain_text("3 judgements")
        page.keyboard.press("n")
        assert "product 2 of 4" in page.text_content("#review-progress")
        (Path("artifacts") / "service").mkdir(parents=True, exist_ok=True)
        page.screenshot(path="artifacts/service/review.png", full_page=True)
        browser.close()
    assert not errors, errors
    rows = app.state.feedback.records(limit=10)  # type: ignore[attr-defined]
    assert [(r.tag, r.action) for r in rows] == [
        (first_tag, "accept"),
        (second_tag, "reject"),
        (JEWEL, "add"),
    ]
    assert app.state.engine.index.learned.applied_through["feedback"] == rows[-1].id  # type: ignore[attr-defined]


@pytest.mark.slow
def test_kill_9_while_learning_loses_no_acknowledged_judgement(index_dir: Path, svc_encoder) -> None:
    """A served process is killed mid-stream of feedback (so mid-learn or mid-save with high odds); the
    restarted service loads a consistent index that holds every judgement the client saw acknowledged."""
    from tagindex.service.engine import Engine
    from tagindex.service.feedback import FeedbackStore
    from tagindex.service.learning import LiveLearner

    from tagindex.index import TagIndex
    from tagindex.store import read_manifest

    port = free_port()
    env = {**os.environ, "TAGINDEX_API_KEY": API_KEY, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagindex.cli", "-q", "serve", "--index", str(index_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    acked: list[int] = []
    try:
        deadline = time.monotonic() + 180
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            while True:
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "service did not start"
                time.sleep(0.3)
            for i in range(400):
                r = c.post(
                    "/v1/feedback",
                    headers=KEY,
                    json={
                        "product": {"id": f"k{i}", "title": f"silver pendant number {i}"},
                        "judgements": [{"tag": JEWEL, "action": "add"}],
                    },
                )
                assert r.status_code == 201
                acked.append(r.json()["stored"][0]["id"])
                if len(acked) >= 6 and i % 7 == 3:
                    break
            # Kill while the next one is in flight (learning or saving).
            with (
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c2,
                contextlib.suppress(httpx.TransportError),
            ):
                c2.post(
                    "/v1/feedback",
                    headers=KEY,
                    json={
                        "product": {"id": "last", "title": "gold pendant"},
                        "judgements": [{"tag": JEWEL, "action": "add"}],
                    },
                    timeout=0.05,
                )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    index = TagIndex.load(index_dir, encoder=svc_encoder)  # checksums verified: a whole index
    store = FeedbackStore(f"{index_dir}.feedback.sqlite3")
    engine = Engine(index_dir, index)
    LiveLearner(engine, store).sync()  # what the restarted service does at start-up
    learned = {j.id for j in index.learned.judgements}  # type: ignore[union-attr]
    assert set(acked) <= learned
    manifest = read_manifest(index_dir, "tagindex")  # the live version, every checksum verified
    assert manifest["learned"]["judgements"] >= len(acked)
    engine.close()
    store.close()
