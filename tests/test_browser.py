"""The review page in a real headless browser (Debian's Chromium, driven by Playwright), started by the test.

Skipped with a reason when Playwright or Chromium is missing (``.ci/run``
installs Chromium from the Debian packages when it can). Playwright is used
only as a driver: it never downloads a browser here.
"""

from __future__ import annotations

import os
import shutil

import pytest

from ibin.engine import open_database
from ibin.report import ReviewServer

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("IBIN_CHROMIUM", "/usr/bin/chromium")
# headless on a machine with no screen, no sandbox (root in a container), and no background traffic
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set IBIN_CHROMIUM to a Chromium binary)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            problems = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            yield page, problems
        finally:
            browser.close()


FIGURE_READY = """() => {
  const i = document.getElementById('lead-figure');
  return i.complete && i.naturalWidth > 0 && i.dataset.loading === '0';
}"""


def test_examiner_reviews_a_lead_list(review_db, tmp_path, browser_page):
    page, problems = browser_page
    db_path = tmp_path / "db"
    shutil.copytree(review_db.path, db_path)
    with ReviewServer(db_path, port=0, top=3) as srv:
        srv.start()
        page.set_default_timeout(120_000)  # the first lead list and pictures are computed on demand
        page.goto(srv.url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#exhibits li").count() == 4

        # open the lead list of one exhibit
        page.click("#exhibits li[data-id='f0-s0']")
        page.wait_for_selector("#leads tbody tr >> nth=2")
        rows = page.locator("#leads tbody tr")
        assert rows.count() == 3
        assert rows.nth(0).get_attribute("data-lead") == "f0-s1"  # the same firearm leads
        assert "not reviewed" in rows.nth(0).inner_text()

        # the first lead's pictures are shown
        page.wait_for_function(FIGURE_READY)
        assert page.locator("#lead-title").inner_text().startswith("Lead 1 of 3: f0-s1")
        size = page.evaluate("() => [document.getElementById('lead-figure').naturalWidth, "
                             "document.getElementById('lead-figure').naturalHeight]")
        assert size[0] >= 1000 and size[1] >= 600

        # flip through the leads: button, keyboard, and back
        page.click("#next")
        page.wait_for_function(FIGURE_READY)
        assert page.locator("#lead-title").inner_text().startswith("Lead 2 of 3")
        page.keyboard.press("ArrowRight")
        page.wait_for_function(FIGURE_READY)
        assert page.locator("#lead-title").inner_text().startswith("Lead 3 of 3")
        assert page.locator("#next").is_disabled()
        page.locator("#leads tbody tr").nth(0).click()
        page.wait_for_function(FIGURE_READY)
        assert page.locator("#lead-title").inner_text().startswith("Lead 1 of 3: f0-s1")

        # record a disposition
        page.fill("#examiner", "Examiner Playwright")
        page.check("input[name='status'][value='hit']")
        page.fill("#comment", "breech-face marks agree over the whole annulus")
        page.click("#save")
        page.wait_for_selector("#save-status.ok")
        assert page.locator("#save-status").inner_text().startswith("Saved: hit (Examiner Playwright")
        assert "hit" in page.locator("#leads tbody tr >> nth=0").inner_text()
        page.wait_for_selector("#history li >> text=breech-face marks agree", state="attached")  # in a closed <details>

        # the hits dialog lists it
        page.click("#show-hits")
        page.wait_for_selector("#hits-body table")
        assert "f0-s1" in page.locator("#hits-body").inner_text()
        page.click("#hits-dialog button")

        # a reload comes back to the same lead with the stored verdict
        page.reload()
        page.wait_for_function(FIGURE_READY)
        assert page.locator("#lead-title").inner_text().startswith("Lead 1 of 3: f0-s1")
        assert page.is_checked("input[name='status'][value='hit']")
        assert page.input_value("#comment") == "breech-face marks agree over the whole annulus"
        page.screenshot(path=str(tmp_path / "review-page.png"), full_page=True)

    # the verdict is in the catalog
    db = open_database(db_path, readonly=True)
    try:
        d = db.reviews.get("f0-s0", "f0-s1")
        assert (d.status, d.by, d.comment) == ("hit", "Examiner Playwright", "breech-face marks agree over the whole annulus")
        assert [h.exhibit_a for h in db.reviews.hits()] == ["f0-s0"]
    finally:
        db.close()
    assert problems == []  # no script errors, no blocked resources (the page's CSP allows only itself)
