"""Takes the Shopify screenshots in this folder from a running service (headless Chromium).

    tagindex convert shopify --include categories --src ../shared/data/shopify-taxonomy --out work/shopify-cat
    tagindex index --tags work/shopify-cat/tags.jsonl --out work/shopify-cat-index --backend onnx-int8
    TAGINDEX_API_KEY=k TAGINDEX_LEARN=false tagindex serve --index work/shopify-cat-index --port 8766 &
    python docs/screenshots/shopify_tour.py --url http://127.0.0.1:8766 --key k --out docs/screenshots

The test screenshots (``workplace-*.png``) come from ``tests/service/test_service_page_workplace.py``
on the MWPD test index; these show the same page on the 10,595 Shopify categories, where a name such
as "Hoodies" belongs to four tags and a duplicate scan takes seconds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PRODUCTS = (
    "Handle,Title,Body (HTML),Vendor\n"
    "grey-hoodie,Grey zip hoodie,<p>Warm <b>cotton</b> hooded sweatshirt with a full zip.</p>,Acme\n"
    "trail-shoe,Trail running shoes,Lightweight waterproof trail runners with grippy soles.,Acme\n"
    ",A row without a handle,lost,Acme\n"
)


def shrink(path: Path) -> None:
    """A 64-colour palette: the page's flat colours survive, the file is a third of the size."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    shots: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        products = Path(tmp) / "shop.csv"
        products.write_text(PRODUCTS)
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(args.url)
        expect(page.locator("#index-info")).to_contain_text("tags · ")
        page.fill("#api-key", args.key)
        page.press("#api-key", "Enter")
        page.set_input_files("#upload-file", str(products))
        page.locator("#upload-form button[type=submit]").click()
        expect(page.locator("#work-tags li").first).to_be_visible(timeout=30_000)
        page.keyboard.press("a")
        expect(page.locator("#work-status")).to_contain_text("accepted")
        page.keyboard.press("t")
        page.keyboard.type("Hoodies")
        page.keyboard.press("Enter")
        expect(page.locator("#work-status button.choice")).to_have_count(4)
        shots.append(args.out / "shopify-hoodies-by-name.png")
        page.locator("#work-section").screenshot(path=str(shots[-1]))
        page.locator("#work-status button.choice").filter(has_text="Clothing Tops").click()
        expect(page.locator("#work-status")).to_contain_text("added Hoodies")
        root = page.locator('#tree > li[data-id="aa"]')
        root.locator(":scope > button.twisty").click()
        clothing = root.locator('li[data-id="aa-1"]')
        clothing.locator(":scope > button.twisty").click()
        expect(clothing.locator("ul li").first).to_be_visible()
        shots.append(args.out / "shopify-tree.png")
        page.locator("#tree-section").screenshot(path=str(shots[-1]))
        page.fill("#min-score", "0.95")
        page.locator("#dup-form button[type=submit]").click()
        expect(page.locator("#dup-progress")).to_be_visible()
        page.wait_for_timeout(1_500)
        shots.append(args.out / "shopify-duplicates-scanning.png")
        page.locator("#dup-section").screenshot(path=str(shots[-1]))
        expect(page.locator("#dup-status")).to_contain_text("pairs at similarity", timeout=120_000)
        shots.append(args.out / "shopify-duplicates.png")
        page.locator("#dup-section").screenshot(path=str(shots[-1]))
        browser.close()
    for shot in shots:
        shrink(shot)
        print(shot, shot.stat().st_size)


if __name__ == "__main__":
    main()
