"""The merchandiser page driven in headless Chromium against a real uvicorn server on loopback.

Needs the Debian ``chromium`` package at /usr/bin/chromium (``make test`` installs it when run as root)
and the Python ``playwright`` package; browser downloads are never attempted. Writes a screenshot to
``artifacts/service/page.png``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from service_support import API_KEY, CHROMIUM, CHROMIUM_ARGS, REPO, make_settings

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "artifacts" / "service"


@pytest.fixture
def live_app(index_dir, svc_encoder) -> Iterator[tuple[str, object]]:
    """The app under a real uvicorn server in a thread (sharing the session's encoder)."""
    # Learning off: this page test checks thresholds and decisions on the product it has just
    # judged, which learning would turn into an exemplar (tests/service/test_service_review.py).
    yield from _serve(make_settings(index_dir, accept_threshold=0.3, learn=False), svc_encoder)


@pytest.fixture
def live_stage_app(exemplar_index, tmp_path, svc_encoder, stage_files) -> Iterator[tuple[str, object]]:
    """The app with a reranker, a calibration and an index holding exemplars."""
    import shutil

    shutil.copytree(exemplar_index, tmp_path / "index")
    settings = make_settings(
        tmp_path / "index", reranker_dir=stage_files["reranker"], calibration_file=stage_files["calibration"]
    )
    yield from _serve(settings, svc_encoder)


def _serve(settings, encoder) -> Iterator[tuple[str, object]]:
    import uvicorn
    from tagindex.service.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings, encoder=encoder)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=30)


def _watch(page, errors: list[str]) -> None:
    """Collects script errors and Content-Security-Policy refusals (the policy must block nothing)."""
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)


def test_page_search_similar_tag_and_feedback(live_app):
    if not CHROMIUM.exists():
        pytest.skip(
            "chromium is not installed at /usr/bin/chromium (apt-get install chromium chromium-driver)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    url, app = live_app
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            _watch(page, errors)
            page.goto(url)
            sync_api.expect(page.locator("#index-info")).to_contain_text("394 tags · ")
            sync_api.expect(page.locator("#index-info")).to_contain_text("0 feedback rows")
            # No reranker: the rerank box stays hidden (the stylesheet must not override `hidden`).
            assert not page.locator("#rerank-label").is_visible()
            assert not page.locator("#rerank").is_visible()

            # Without the key a judgement says, in words, what to do (not a raw "401: ...").
            page.fill("#title", "Sterling silver heart locket necklace")
            page.press("#title", "Enter")
            sync_api.expect(page.locator("#suggestions tbody tr")).to_have_count(8)
            page.locator("#suggestions tbody tr").nth(0).get_by_role("button", name="Accept").first.click()
            verdict = page.locator("#suggestions tbody tr").nth(0).locator(".verdict")
            sync_api.expect(verdict).to_contain_text("This needs the API key: type it in the")
            assert "401" not in verdict.inner_text()

            # The API key, typed and kept with Enter.
            page.fill("#api-key", API_KEY)
            page.press("#api-key", "Enter")
            sync_api.expect(page.locator("#key-status")).to_contain_text("kept")

            # Search the vocabulary: by name and by meaning.
            page.fill("#query", "jewel")
            page.press("#query", "Enter")
            first = page.locator("#search-results li").first
            sync_api.expect(first).to_contain_text("Jewellery")
            sync_api.expect(page.locator("#semantic-results li")).to_have_count(10)
            assert page.locator("#semantic-results li .score").count() == 10

            # Similar tags of the first hit, with scores; focus moves to the panel's heading.
            first.get_by_role("button", name="Tags similar to Jewellery").click()
            sync_api.expect(page.locator("#similar-h")).to_have_text("Similar to Jewellery")
            sync_api.expect(page.locator("#similar-results li")).to_have_count(10)
            assert page.evaluate("document.activeElement.id") == "similar-h"
            assert "64010100_Jewellery" not in page.locator("#similar-results").inner_html()

            # Tag a product with the keyboard only: type, Tab to the description, Ctrl+Enter submits.
            page.fill("#title", "Sterling silver heart locket necklace with 18 inch chain")
            page.focus("#title")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "description"
            page.keyboard.type("Engraved oval locket, holds two photos, gift box included.")
            page.keyboard.press("Control+Enter")
            rows = page.locator("#suggestions tbody tr")
            sync_api.expect(rows).to_have_count(8)
            sync_api.expect(page.locator("#tag-status")).to_contain_text("8 tags in")
            assert page.locator("#suggestions .badge").count() == 8  # decisions at the 0.3 default
            first_tag = rows.nth(0).get_attribute("data-tag")
            second_tag = rows.nth(1).get_attribute("data-tag")

            # Open the first explanation; accept the first tag by click, reject the second by keyboard.
            rows.nth(0).locator("summary").click()
            sync_api.expect(rows.nth(0).locator("details")).to_contain_text("Closest alternative tags")
            rows.nth(0).get_by_role("button", name="Accept").first.click()
            sync_api.expect(rows.nth(0).locator(".verdict")).to_contain_text("accepted · saved #1")
            rows.nth(1).locator("button[data-action=reject]").focus()
            page.keyboard.press("Enter")
            sync_api.expect(rows.nth(1).locator(".verdict")).to_contain_text("rejected · saved #2")
            assert rows.nth(0).locator("button[data-action=accept]").get_attribute("aria-pressed") == "true"
            sync_api.expect(page.locator("#index-info")).to_contain_text("2 feedback rows")  # counts at once

            # A tag the service missed, by NAME: the list offers names by path; picked or typed, it is added.
            page.locator("#missing-tag").press_sequentially("jewel", delay=20)
            jewellery = "Personal Accessories › Jewellery"
            sync_api.expect(page.locator(f'#tag-name-options option[value="{jewellery}"]')).to_have_count(1)
            page.fill("#missing-tag", jewellery)  # what picking the option types
            page.press("#missing-tag", "Enter")
            sync_api.expect(page.locator("#tag-status")).to_contain_text(
                f"added {jewellery} for this product · saved #3"
            )
            page.fill("#missing-tag", "candle/soap craft supplies")  # a bare name, any case
            page.press("#missing-tag", "Enter")
            sync_api.expect(page.locator("#tag-status")).to_contain_text("saved #4")
            page.fill("#missing-tag", "No Such Tag Name")
            page.press("#missing-tag", "Enter")
            sync_api.expect(page.locator("#tag-status")).to_contain_text("No tag is named “No Such Tag Name”")
            sync_api.expect(page.locator("#index-info")).to_contain_text("4 feedback rows")

            # A threshold nothing reaches: every tag says "review", and the page says why.
            page.fill("#accept-threshold", "0.99")
            page.locator("#tag-form button[type=submit]").click()
            sync_api.expect(page.locator("#threshold-hint")).to_contain_text(
                "Every tag is below the accept threshold 0.99"
            )
            assert page.locator("#suggestions .badge.accept").count() == 0
            page.fill("#accept-threshold", "0")  # the best tag is accepted: no hint
            page.locator("#tag-form button[type=submit]").click()
            sync_api.expect(page.locator("#suggestions .badge.accept").first).to_be_visible()
            sync_api.expect(page.locator("#threshold-hint")).to_have_text("")

            # Per-kind limits typed on the page: one category (GS1 tags are all categories), as one
            # path with its parents when "with parent tags" is ticked; a bad spec is a readable error.
            page.fill("#per-kind", "category=1")
            page.locator("#tag-form button[type=submit]").click()
            sync_api.expect(page.locator("#suggestions tbody tr")).to_have_count(1)
            page.fill("#per-kind", "category=one")
            page.locator("#tag-form button[type=submit]").click()
            sync_api.expect(page.locator("#tag-status")).to_contain_text("per_kind")
            page.fill("#per-kind", "")

            # Duplicate tags (merge candidates) with scores; GS1's repeated names down the levels
            # ("Footwear" > "Footwear") are parent and child, left out, so the pairs start lower.
            page.fill("#min-score", "0.9")
            page.press("#min-score", "Enter")
            sync_api.expect(page.locator("#dup-status")).to_contain_text("pairs at similarity")
            assert page.locator("#dup-table tbody tr").count() > 0

            page.locator("#tag-section").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()

    rows = app.state.feedback.records()  # type: ignore[attr-defined]
    assert [(r.tag, r.action) for r in rows] == [
        (first_tag, "accept"),
        (second_tag, "reject"),
        ("64010100_Jewellery", "add"),
        ("70010900_Candle/Soap Craft Supplies", "add"),
    ]
    assert rows[0].title.startswith("Sterling silver heart locket") and rows[0].score is not None
    assert (ARTIFACTS / "page.png").stat().st_size > 10_000


def test_page_shows_reranker_scores_probabilities_and_important_words(live_stage_app):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    url, _ = live_stage_app
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            sync_api.expect(page.locator("#index-info")).to_contain_text("reranker (depth 8)")
            assert page.locator("#rerank").is_checked()
            page.fill("#title", "Mens black long sleeve cotton t-shirt")
            page.press("#title", "Enter")
            rows = page.locator("#suggestions tbody tr")
            sync_api.expect(rows).to_have_count(8)
            sync_api.expect(page.locator("#tag-status")).to_contain_text("reranked top 8")
            sync_api.expect(page.locator("#assigned")).to_contain_text("Assigned (calibrated)")
            sync_api.expect(rows.nth(0).locator(".stage-scores")).to_contain_text("reranker")
            sync_api.expect(rows.nth(0).locator(".stage-scores")).to_contain_text("p ")
            assert (
                page.locator("#suggestions .badge").count() == 8
            )  # calibrated decisions, no threshold typed
            rows.nth(0).locator("summary").click()
            details = rows.nth(0).locator("details")
            sync_api.expect(details).to_contain_text("reranker logit")
            sync_api.expect(details).to_contain_text("calibrated probability")
            sync_api.expect(details).to_contain_text("Important words")
            # nearest labelled products (the index's exemplars) for the tags that have some
            assert page.locator("#suggestions ul.examples li").count() > 0
            page.screenshot(path=str(ARTIFACTS / "page-rerank.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


def test_docs_page_works_offline(live_app):
    """Swagger UI renders every operation with every request that leaves loopback refused."""
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    url, _ = live_app
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []

    def only_loopback(route) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            _watch(page, errors)
            page.route("**/*", only_loopback)
            page.goto(f"{url}/docs")
            sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("tagindex")
            ops = page.locator(".swagger-ui .opblock")
            sync_api.expect(ops.first).to_be_visible()
            assert ops.count() >= 13
            page.screenshot(path=str(ARTIFACTS / "docs.png"))
            assert not errors, errors
        finally:
            browser.close()
    assert not outside, outside
