"""Make the README's pictures from the shipped Fadul scans: a report figure and a screenshot of the review page.

    .venv/bin/python scripts/make_readme_images.py [--out docs/images]

1. builds a database from the eight known Fadul exhibits in ``data/fadul``
   (in a temporary folder), as ``ibin demo`` does;
2. ``docs/images/report-lead.png``: the pictures of the top lead of the
   questioned cartridge case Fadul_F, exactly as ``ibin report`` draws them
   (with the title and colour key, which the HTML report shows as text);
3. ``docs/images/review-page.png``: the review page (``ibin serve``) in
   headless Chromium driven by Playwright, on the lead list of Fadul_1-1
   after an examiner has recorded a hit.

Needs Playwright and Chromium for step 3 (``/usr/bin/chromium``, or
``IBIN_CHROMIUM``); both images are written as 256-colour PNGs to keep the
repository small.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("IBIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _palette_png(png: bytes) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, "PNG", optimize=True)
    return out.getvalue()


def build_database(path: Path):
    from ibin.data import SAMPLES, sample_path
    from ibin.engine import ingest, open_database

    db = open_database(path, create=True)
    cases = {"slide-1": "2011-0417", "slide-2": "2011-0533", "slide-3": "2012-0102", "slide-4": "2012-0388"}
    for name, (firearm, role, _) in SAMPLES.items():
        if role != "known":
            continue
        shot = Path(name).stem.split("-")[-1]
        rep = ingest(db, [sample_path(name)], user="lab",
                     metadata={"firearm": firearm, "case": f"{cases[firearm]}-{shot}", "caliber": "9mm Luger"})
        if rep.failed:
            raise SystemExit(f"cannot ingest {name}: {rep.results[0].message}")
    return db


def report_figure(db, out: Path) -> None:
    from ibin.data import sample_path
    from ibin.engine import SearchParams
    from ibin.report import build_report, cartridge_lead_figure, figure_png

    rep = build_report(db, scan=sample_path("Fadul_F.x3p"), params=SearchParams(top=5), pictures=1)
    pic = rep.pictures[0]
    png = figure_png(cartridge_lead_figure(pic.evidence, rank=pic.lead.rank, header=True, dpi=90))
    out.write_bytes(png)
    print(f"{out}: lead 1 of Fadul_F ({pic.lead.id}, CMC {pic.lead.cmc}), {len(png) / 1e3:.0f} kB")


def review_screenshot(db_path: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    from ibin.engine import open_database, record_disposition
    from ibin.report import ReviewServer

    db = open_database(db_path)
    record_disposition(db, "Fadul_1-1", "Fadul_1-2", "hit", user="A. Examiner",
                       comment="breech-face marks agree; confirmed at the comparison microscope")
    record_disposition(db, "Fadul_1-1", "Fadul_2-1", "no hit", user="A. Examiner", comment="")
    db.close()
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set IBIN_CHROMIUM)")
    with ReviewServer(db_path, port=0, top=6, user="A. Examiner") as srv, sync_playwright() as pw:
        srv.start()
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 1020})
            page.set_default_timeout(180_000)
            page.goto(srv.url + "#q=Fadul_1-1&l=1")
            page.wait_for_function("() => { const i = document.getElementById('lead-figure');"
                                   " return i.complete && i.naturalWidth > 0 && i.dataset.loading === '0'; }")
            page.wait_for_selector("#save-status:has-text('recorded by')")
            png = page.screenshot(full_page=False)
        finally:
            browser.close()
    png = _palette_png(png)
    out.write_bytes(png)
    print(f"{out}: the review page on Fadul_1-1, {len(png) / 1e3:.0f} kB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the images")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ibin-readme-") as tmp:
        db_path = Path(tmp) / "db"
        db = build_database(db_path)
        try:
            report_figure(db, args.out / "report-lead.png")
        finally:
            db.close()
        review_screenshot(db_path, args.out / "review-page.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
