"""End-to-end demonstration on the real scans shipped in data/.

Builds a database from eight known exhibits (Fadul slides 1-4, two cartridge
cases each), then searches it with two questioned cartridge cases and
prints their lead lists: the cases fired by the same slide should stand at
the top.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HELP = "build a demo database from the shipped scans and search it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="demo-db", help="database directory to build (default: ./demo-db)")
    p.add_argument("--fresh", action="store_true", help="delete the demo database first")


def run(args: argparse.Namespace) -> int:
    import time

    from ..data import SAMPLES, sample_path
    from ..engine import SearchParams, ingest, open_database, search

    db_path = Path(args.db)
    if args.fresh and db_path.exists():
        if not (db_path / "ibin-db.json").exists():
            raise ValueError(f"{db_path} is not an ibin database; not deleting it")
        shutil.rmtree(db_path)
    known = [n for n, (_, role, _) in SAMPLES.items() if role == "known"]
    questioned = [n for n, (_, role, _) in SAMPLES.items() if role == "questioned"]
    print(f"ibin demo: building {db_path} from {len(known)} Fadul breech-face scans (data/fadul)")
    db = open_database(db_path, create=True)
    try:
        t = time.perf_counter()
        for name in known:
            firearm = SAMPLES[name][0]
            rep = ingest(db, [sample_path(name)], metadata={"firearm": firearm, "caliber": "9mm Luger",
                                                            "make": "Ruger", "model": "P95"})
            r = rep.results[0]
            print(f"  {r.status:9s} {r.id} ({firearm})" + (f": {r.message}" if r.status == "failed" else ""))
        print(f"  {db.count()} exhibits on file ({time.perf_counter() - t:.1f} s)\n")
        for name in questioned:
            truth = SAMPLES[name][0]
            ll = search(db, sample_path(name), params=SearchParams(top=5))
            print(ll.to_table())
            top = ll.leads[0] if ll.leads else None
            ok = top is not None and top.metadata.get("firearm") == truth
            print(f"  -> questioned {Path(name).stem} was fired by {truth}; top lead {top.id if top else '-'} "
                  f"({'same firearm' if ok else 'NOT the same firearm'})\n")
    finally:
        db.close()
    print(f"Try: ibin search {db_path} data/fadul/Fadul_F.x3p --format json   |   ibin info {db_path}")
    return 0
