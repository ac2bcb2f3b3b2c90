"""Canonical orientation of the polar signatures, measured: do two shots of one firearm agree on it?

An index that answers one fixed query vector (FAISS's IVF, HNSW, PQ) could
serve the polar signatures without rotating the query to every angle if
each signature were first turned to a canonical orientation of its own,
computed from the signature alone, as SIFT turns a patch to its dominant
gradient. That only works if two shots of the same firearm agree on the
orientation. For each mate pair of the planted database (the 40 Fadul cartridge
cases, firing-pin anchor, and seeded synthetic firearms of two shots), this
measures how often the canonical angles of the two signatures agree with their
relative rotation (the best rotation of :func:`ibin.features.rotation_max`)
to within 1.5 steps of 128, for two covariant definitions:

- the phase of the first angular harmonic (summed over the rings);
- the best rotations of the signature against a fixed random template (seeded,
  the same for every exhibit), with all harmonics or low-passed (the first
  8, or a Gaussian of 4 harmonics); with the best ``k`` of them kept as
  alternatives (``k`` oriented copies stored and searched per signature).

Chance agreement for ``k`` alternatives on each side is about
``1 - (1 - 3/128) ** (k * k)``, also reported.

Run: ``python -m benchmarks.canonical --work DIR [--db planted-pop-db-100k] [--synthetic 200]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import environment, fadul_key, planted_database, variant, write  # noqa: E402

ANGLES = 128
TOLERANCE_STEPS = 1.5
KS = (1, 3, 8)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--db", default="planted-pop-db-100k", help="planted database under DIR")
    ap.add_argument("--synthetic", type=int, default=200, help="synthetic firearms (two shots each)")
    a = ap.parse_args(argv)
    from ibin import open_database
    from ibin.engine import ANCHOR_PARTS, _polar_by_anchor
    from ibin.features import rotation_max
    from ibin.features._polar import PolarParams, from_vector

    name, option = variant("canonical", "--db", a.db, "planted-pop-db-100k")
    env = environment(f"python -m benchmarks.canonical --work {a.work} --synthetic {a.synthetic}{option}")
    db = open_database(planted_database(a.work, a.db), readonly=True)
    key = fadul_key()
    space = next(s for s in db.spaces() if "-polar/" in s)
    rowids, x, by_anchor = _polar_by_anchor(db, space)
    sel, _, sorted_ids, order = by_anchor[ANCHOR_PARTS["firing_pin"]]

    def row_of(rowid: int) -> int | None:
        j = min(int(np.searchsorted(sorted_ids, rowid)), len(sorted_ids) - 1)
        return int(sel[order[j]]) if sorted_ids[j] == rowid else None

    recs = {r.id: r for r in db.list(kind="cartridge")}
    groups: dict = {}
    for i in key:
        if i in recs:
            groups.setdefault(("fadul", key[i]), []).append(recs[i].rowid)
    shots: dict = {}
    for i, r in recs.items():
        if i.startswith("syn-"):
            shots.setdefault(i.rsplit("-", 1)[0], []).append(r.rowid)
    firearms = sorted(shots)
    rng = np.random.default_rng(0)
    for j in rng.choice(len(firearms), min(a.synthetic, len(firearms)), replace=False):
        groups[("synthetic", firearms[j])] = shots[firearms[j]]
    db.close()

    pp = PolarParams()
    m = np.arange(1, pp.harmonics + 1)
    template = (rng.standard_normal((pp.rings_kept, pp.harmonics))
                + 1j * rng.standard_normal((pp.rings_kept, pp.harmonics))).astype(np.complex64)
    weights = {"template, all harmonics": np.ones(pp.harmonics), "template, first 8 harmonics": (m <= 8) * 1.0,
               "template, Gaussian of 4 harmonics": np.exp(-((m / 4.0) ** 2))}

    def best_angles(C: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
        # correlation with the template at each rotation: rotating C by t shifts this profile by t
        X = np.zeros(ANGLES // 2 + 1, np.complex128)
        X[1 : pp.harmonics + 1] = (C * np.conj(template)).sum(axis=0) * w
        return np.argsort(-np.fft.irfft(X, n=ANGLES))[:k] * (360.0 / ANGLES)

    def agree(ta: np.ndarray, tb: np.ndarray, rot: float) -> bool:
        # b turned by rot lies on a, so a's canonical angle is b's plus rot
        d = (ta[:, None] - (tb[None, :] + rot) + 180.0) % 360.0 - 180.0
        return bool(np.abs(d).min() <= TOLERANCE_STEPS * 360.0 / ANGLES)

    hits = {src: {"first harmonic phase": [], **{f"{n}, best {k}": [] for n in weights for k in KS}}
            for src in ("fadul", "synthetic")}
    for (src, _), rowids_of in groups.items():
        members = [r for r in rowids_of if row_of(r) is not None]  # those with a firing-pin anchor
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                Ca, Cb = (from_vector(x[row_of(r)], pp.rings_kept) for r in (members[i], members[j]))
                _, rot = rotation_max(Ca, Cb[None])
                rot = float(rot[0])
                ha, hb = (float(np.degrees(np.angle(C[:, 0].sum()))) for C in (Ca, Cb))
                hits[src]["first harmonic phase"].append(agree(np.array([ha]), np.array([hb]), rot))
                for n, w in weights.items():
                    for k in KS:
                        hits[src][f"{n}, best {k}"].append(agree(best_angles(Ca, w, k), best_angles(Cb, w, k), rot))
    step = TOLERANCE_STEPS * 2 / ANGLES
    result = {
        "what": __doc__.split("\n\n")[0], "environment": env, "database": a.db, "angles": ANGLES,
        "tolerance_steps": TOLERANCE_STEPS,
        "pairs": {src: len(v["first harmonic phase"]) for src, v in hits.items()},
        "share_agreeing": {src: {meth: float(np.mean(v)) for meth, v in by.items()} for src, by in hits.items()},
        "chance": {f"best {k}": 1 - (1 - step) ** (k * k) for k in KS},
    }
    write(name, result)
    for meth in hits["fadul"]:
        print(f"{meth:45s} Fadul {result['share_agreeing']['fadul'][meth]:.2f}  synthetic "
              f"{result['share_agreeing']['synthetic'][meth]:.2f}")
    print("chance: " + ", ".join(f"{k} {v:.2f}" for k, v in result["chance"].items()))
    return result


if __name__ == "__main__":
    main()
