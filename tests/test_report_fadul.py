"""The report on real scans: the shipped Fadul exhibits and the questioned Fadul_F (slide 1)."""

from __future__ import annotations

import numpy as np
import pytest

from ibin.data import SAMPLES, sample_path


@pytest.mark.slow
def test_fadul_report(tmp_path):
    from ibin.engine import SearchParams, ingest, open_database
    from ibin.report import build_report, write_report

    db = open_database(tmp_path / "db", create=True)
    try:
        for name, (firearm, role, _) in SAMPLES.items():
            if role == "known":
                ingest(db, [sample_path(name)], metadata={"firearm": firearm})
        rep = build_report(db, scan=sample_path("Fadul_F.x3p"), params=SearchParams(top=8), pictures=3)
    finally:
        db.close()
    out = write_report(rep, tmp_path / "F.html", pdf_path=tmp_path / "F.pdf")
    assert out["html_bytes"] < 5e6 and out["pdf_bytes"] < 5e6
    assert [l.metadata["firearm"] for l in rep.leads.leads[:2]] == ["slide-1", "slide-1"]
    for pic in rep.pictures:
        ev, lead = pic.evidence, pic.lead
        assert pic.png is not None and pic.note == ""
        assert ev.cmc_drawn == ev.comparison.cmc_ab.cmc
        assert abs(ev.ccf_at_alignment - lead.ccf) < 0.05
        if lead.metadata["firearm"] == "slide-1":  # a true match: sharp, centred peaks and many congruent cells
            assert lead.cmc >= 6
            assert max(abs(v) for v in ev.peak_offset_um) <= 25.0
            k = int(np.nanargmax(ev.rotation_ccf))
            assert abs((ev.rotation_deg[k] - lead.rotation_deg + 180) % 360 - 180) <= 3.0
