"""A small database of synthetic cartridge cases with case numbers, for the report, review and server tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: exhibit -> (firearm seed, shot seed, case number)
EXHIBITS = {
    "f0-s0": (400, 0, "case-A"),
    "f0-s1": (400, 1, "case-B"),
    "f1-s0": (401, 0, "case-A"),
    "f1-s1": (401, 1, "case-B"),
}


@dataclass(frozen=True)
class ReviewDB:
    path: Path
    scans: dict


def build_db(base: Path) -> ReviewDB:
    """Write the scans as X3P files and ingest them, one exhibit each, with ``case`` metadata."""
    from ibin.engine import ingest, open_database
    from ibin.scan import save_x3p
    from ibin.synth import cartridge_case

    (base / "scans").mkdir(parents=True, exist_ok=True)
    scans = {}
    db = open_database(base / "db", create=True)
    try:
        for name, (firearm, shot, case) in EXHIBITS.items():
            scan, _ = cartridge_case(firearm, shot, pixel_um=12.5)
            p = base / "scans" / f"{name}.x3p"
            save_x3p(scan, p)
            scans[name] = p
            rep = ingest(db, [p], metadata={"case": case, "firearm": f"firearm-{firearm}"}, user="setup")
            assert rep.added == 1, rep.results
    finally:
        db.close()
    return ReviewDB(base / "db", scans)
