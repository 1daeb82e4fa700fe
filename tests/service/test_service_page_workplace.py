"""The page as a workplace, driven in headless Chromium against a real uvicorn server on loopback:
upload a products CSV, review it with the keyboard, add missed tags by name, export the decisions,
read the taxonomy tree's counts and find duplicate tags. Screenshots go to ``artifacts/service/``
(copies a reviewer can look at: ``docs/screenshots/``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import API_KEY, CHROMIUM, CHROMIUM_ARGS, REPO, make_settings, serve_in_thread

pytestmark = pytest.mark.slow

SHOTS = REPO / "artifacts" / "service"
PRODUCTS = (
    "Handle,Title,Body (HTML),Vendor\n"
    'locket,Sterling silver heart locket necklace,"<p>Engraved oval locket, <b>18 inch</b> chain</p>",Acme\n'
    ",A row without a handle,lost,Acme\n"
    "boots,Leather hiking boots,Waterproof boots with a padded collar,Acme\n"
    'candles,Soy wax candle making kit,"Wax flakes, wicks and fragrance oils",Acme\n'
)


@pytest.fixture
def live_url(index_dir, svc_encoder) -> Iterator[tuple[str, object]]:
    from tagindex.service.app import create_app

    # Learning off: the test checks the suggestions of products it has just judged.
    app = create_app(make_settings(index_dir, learn=False), encoder=svc_encoder)
    for url in serve_in_thread(app):
        yield url, app


def test_upload_review_by_keyboard_export_tree_and_duplicates(live_url, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium (make browser)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    expect = sync_api.expect
    url, app = live_url
    SHOTS.mkdir(parents=True, exist_ok=True)
    (tmp_path / "shop.csv").write_text(PRODUCTS)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None
            )
            page.goto(url)
            expect(page.locator("#index-info")).to_contain_text("394 tags · ")
            page.fill("#api-key", API_KEY)
            page.press("#api-key", "Enter")

            # Upload: a Shopify-style export; its columns are mapped without typing; the bad row is listed.
            page.fill("#accept-threshold", "0.99")  # nothing reaches it: the queue says so
            page.set_input_files("#upload-file", str(tmp_path / "shop.csv"))
            expect(page.locator("#col-id")).to_have_value("Handle")
            expect(page.locator("#col-description")).to_have_value("Body (HTML)")
            page.locator("#upload-form button[type=submit]").click()
            expect(page.locator("#upload-status")).to_contain_text("3 products from shop.csv; 1 row left out")
            expect(page.locator("#upload-errors li")).to_have_text(
                ["shop.csv:3: column 'id' must be a non-empty string or integer, got missing"]
            )
            work = page.locator("#work-tags li")
            expect(work).to_have_count(8)
            expect(page.locator("#work-title")).to_contain_text("Sterling silver heart locket")
            expect(page.locator("#work-card .hint")).to_contain_text(
                "Every tag is below the accept threshold 0.99"
            )
            assert page.locator("#work-tags .badge.review").count() == 8
            page.locator("#work-section").screenshot(path=str(SHOTS / "workplace-upload.png"))

            # Review with the keyboard: accept the first tag, reject the next.
            first, second = work.nth(0).get_attribute("data-tag"), work.nth(1).get_attribute("data-tag")
            page.keyboard.press("a")
            expect(page.locator("#work-status")).to_contain_text("accepted")
            page.keyboard.press("r")  # the selection moved on to the second tag
            expect(page.locator("#work-status")).to_contain_text("rejected")
            expect(page.locator("#index-info")).to_contain_text("2 feedback rows")
            page.locator("#work-section").screenshot(path=str(SHOTS / "workplace-review-keyboard.png"))

            # Next product: a missed tag by name; a name two tags share is offered by path and id.
            page.keyboard.press("n")
            expect(page.locator("#work-title")).to_contain_text("Leather hiking boots")
            page.keyboard.press("t")
            assert page.evaluate("document.activeElement.id") == "work-add"
            page.keyboard.type("Footwear")
            page.keyboard.press("Enter")
            choices = page.locator("#work-status button.choice")
            expect(choices).to_have_count(2)
            page.locator("#work-section").screenshot(path=str(SHOTS / "workplace-add-by-name-choices.png"))
            choices.filter(has_text="63010000_Footwear").click()  # the same path: told apart by id
            expect(page.locator("#work-status")).to_contain_text("added Footwear")

            # Next: autocomplete by name (shown as paths), then a bare name in any case is enough.
            page.keyboard.press("n")
            expect(page.locator("#work-title")).to_contain_text("Soy wax candle making kit")
            page.keyboard.press("t")
            page.locator("#work-add").press_sequentially("candle/so", delay=20)
            expect(
                page.locator('#tag-name-options option[value$="Candle/Soap Craft Supplies"]')
            ).to_have_count(1)
            page.locator("#work-section").screenshot(path=str(SHOTS / "workplace-add-by-name.png"))
            page.fill("#work-add", "candle/soap craft supplies")
            page.press("#work-add", "Enter")
            expect(page.locator("#work-status")).to_contain_text("added Candle/Soap Craft Supplies")
            assert page.evaluate("document.activeElement.id") == "work-section"  # the keys work again
            expect(page.locator("#index-info")).to_contain_text("4 feedback rows")

            # Back to the first product with p: its decisions are shown.
            page.keyboard.press("p")
            page.keyboard.press("ArrowLeft")
            expect(page.locator("#work-title")).to_contain_text("Sterling silver heart locket")
            expect(page.locator(f'#work-tags li[data-tag="{first}"]')).to_contain_text("accepted #1")
            expect(page.locator(f'#work-tags li[data-tag="{second}"]')).to_contain_text("rejected #2")

            # Export this session's decisions as CSV and JSONL.
            with page.expect_download() as download:
                page.click("#export-csv")
            rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
            assert [(r["tag"], r["action"]) for r in rows] == [
                (first, "accept"),
                (second, "reject"),
                ("63010000_Footwear", "add"),
                ("70010900_Candle/Soap Craft Supplies", "add"),
            ]
            assert rows[2]["product_id"] == "boots" and rows[2]["tag_path"] == "Footwear"
            with page.expect_download() as download:
                page.click("#export-jsonl")
            lines = Path(download.value.path()).read_text().splitlines()
            assert [json.loads(x)["action"] for x in lines] == ["accept", "reject", "add", "add"]
            expect(page.locator("#export-status")).to_contain_text("exported 4 decisions")
            page.locator("#export-form").scroll_into_view_if_needed()
            page.locator("#work-section").screenshot(path=str(SHOTS / "workplace-export.png"))

            # The tree: tags per node, and this session's products assigned at or below it.
            root = page.locator('#tree > li[data-id="63000000_Footwear"]')
            expect(root.locator(":scope > .label .count")).to_have_text("1 product")
            root.locator(":scope > button.twisty").click()
            expect(root.locator(":scope > button.twisty")).to_have_attribute("aria-expanded", "true")
            child = root.locator('li[data-id="63010000_Footwear"]')
            expect(child.locator(":scope > .label .count")).to_have_text("1 product")
            expect(child.locator(":scope > .label")).to_contain_text(" tags")
            page.locator("#tree-section").screenshot(path=str(SHOTS / "workplace-tree.png"))

            # Duplicates: scanned in the background, family left out, evidence shown; then cached.
            page.fill("#min-score", "0.9")
            page.locator("#dup-form button[type=submit]").click()
            status = page.locator("#dup-status")
            expect(status).to_contain_text("pairs at similarity ≥ 0.9 (parent/child and siblings left out)")
            expect(status).to_contain_text("scanned in")
            assert page.locator("#dup-table tbody tr").count() > 0
            assert page.locator('#dup-table tbody tr[data-relation="sibling"]').count() == 0
            page.locator("#dup-form button[type=submit]").click()
            expect(status).to_contain_text("from the cache of index version 0")
            page.locator("#dup-section").screenshot(path=str(SHOTS / "workplace-duplicates.png"))
            assert not errors, errors
        finally:
            browser.close()
    stored = app.state.feedback.records()  # type: ignore[attr-defined]
    assert [(r.product_id, r.action) for r in stored] == [
        ("locket", "accept"),
        ("locket", "reject"),
        ("boots", "add"),
        ("candles", "add"),
    ]
    assert stored[0].description == "Engraved oval locket, 18 inch chain"  # HTML stripped on upload
