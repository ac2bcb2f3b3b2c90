"""Shared fixtures: synthetic scans with known truth, and the real data beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("IBIN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the test with a reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is missing (set IBIN_SHARED_DATA or place ../shared/data)")
    return p


@pytest.fixture(scope="session")
def synth_cases():
    """Prepared synthetic cartridge cases: 3 firearms x 2 shots, processed, 12.5 µm/px."""
    from ibin.features import prepare_cartridge
    from ibin.synth import cartridge_case

    out = {}
    for f in range(3):
        for s in range(2):
            scan, truth = cartridge_case(100 + f, s, pixel_um=12.5)
            out[(f, s)] = (prepare_cartridge(scan), truth, scan)
    return out


@pytest.fixture(scope="session")
def review_db(tmp_path_factory):
    """Four synthetic exhibits (two firearms, two shots each) with case numbers, ingested once; copy before writing."""
    from .report_fixtures import build_db

    return build_db(tmp_path_factory.mktemp("review-db"))
