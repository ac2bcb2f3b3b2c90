"""Bullets on Hamby set 44: 27 real land scans, land-level and bullet-level ground truth.

Runs the real pipeline on the raw scans (``../shared/data/bullet/hamby44``,
CSAFE Sensofar scans at 1.5625 µm/px, grooves included, no manual
parameters):

* **land level**: every land prepared (axis, stable crosscut band, grooves,
  curvature, signature); the CCF of all 351 land pairs; ROC AUC and equal
  error rate of same-land (same ``land_id``) against different-land pairs;
  the same for the index descriptor (the FAISS candidate stage); and the
  coarse-to-fine lag search checked against an exhaustive one;
* **bullet level**: bullet 1 against bullet 2 of barrel 1 (the right phase
  pairs bullet 1 land k with bullet 2 land k - 2 mod 6);
* **fragment**: a database of bullet 1, bullet 2 and the other 14
  questioned lands (as single-land bullets), searched with questioned land
  K-1, whose lead should be a barrel-1 bullet matched through its land AE;
  and every questioned land searched the same way (E and X share land GD);
* **speed**: land comparisons per second per core after preparation
  (``ccf_matrix`` over all 27 x 27 pairs, CPU time of this process, which is
  single-threaded), against the exhaustive search in the same process, and
  preparation time per land.

Run: ``python -m benchmarks.hamby44 [--shared PATH]``; writes
``benchmarks/results/hamby44.json``.
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import argparse  # noqa: E402
import csv  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import SHARED, auc, environment, eer, quantiles, write  # noqa: E402


def _pairs(key, m):
    same, diff = [], []
    for i in range(len(key)):
        for j in range(i + 1, len(key)):
            (same if key[i]["land_id"] == key[j]["land_id"] else diff).append(float(m[i, j]))
    return np.array(same), np.array(diff)


def _rate(fn, min_seconds: float = 2.0) -> tuple[float, float, int]:
    """Median CPU and wall seconds of ``fn()`` over repeats lasting at least ``min_seconds`` of CPU."""
    fn()
    cpu, wall = [], []
    start = time.process_time()
    while time.process_time() - start < min_seconds or len(cpu) < 5:
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)), float(np.median(wall)), len(cpu)


BULLET_1 = [f"Barrel_1-Bullet_1-Land_{k}.x3p" for k in range(1, 7)]
BULLET_2 = [f"Barrel_1-Bullet_2-Land_{k}.x3p" for k in range(1, 7)]


def land_scores(key: list[dict], lands: dict, bp, pp) -> dict:
    """Same-land against different-land pairs of prepared lands (``lands`` by file name, in ``key``'s order)."""
    from ibin.correlate import ProfileSet, ccf_matrix

    names = [r["file"] for r in key]
    S = ProfileSet([lands[n].signature for n in names], bp.pixel_um, coarse_factor=pp.coarse_factor)
    ccf, lag, _ = ccf_matrix(S, S, pp)
    same, diff = _pairs(key, ccf)
    desc = np.stack([lands[n].descriptor for n in names]).astype(np.float64)
    dsame, ddiff = _pairs(key, desc @ desc.T)
    iu = np.triu_indices(len(names), 1)
    same_pairs = [
        {"a": names[i][:-4], "b": names[j][:-4], "land_id": key[i]["land_id"], "ccf": round(float(ccf[i, j]), 4),
         "lag_um": float(lag[i, j])}
        for i, j in zip(*iu) if key[i]["land_id"] == key[j]["land_id"]
    ]
    return {
        "pairs": int(len(same) + len(diff)), "same_land_pairs": int(len(same)), "different_land_pairs": int(len(diff)),
        "ccf_auc": auc(same, diff), "ccf_eer": eer(same, diff),
        "same_land_ccf_min": float(same.min()), "same_land_ccf_mean": float(same.mean()),
        "different_land_ccf_max": float(diff.max()),
        "different_land_ccf": quantiles(diff, (50, 95, 99)),
        "same_land_pairs_detail": same_pairs,
        "descriptor_auc": auc(dsame, ddiff), "descriptor_eer": eer(dsame, ddiff),
    }


def bullet_scores(lands: dict, bp, pp) -> dict:
    """Bullet 1 against bullet 2 of barrel 1: the right phase pairs bullet 1 land k with bullet 2 land k - 2 mod 6."""
    from ibin.correlate import ProfileSet, compare_bullets

    pair = {"query": "Barrel_1-Bullet_1", "lead": "Barrel_1-Bullet_2", "expected_phase": (-2) % 6}
    if any(n not in lands for n in BULLET_1 + BULLET_2):
        return pair | {"phase": None, "phase_correct": False, "score_sam": None, "phase_margin": None,
                       "not_compared": "a land was refused"}
    r = compare_bullets(ProfileSet([lands[n].signature for n in BULLET_1], bp.pixel_um),
                        ProfileSet([lands[n].signature for n in BULLET_2], bp.pixel_um), pp)
    return pair | {
        "phase": r.phase, "phase_correct": r.phase == pair["expected_phase"],
        "score_sam": r.score, "phase_scores": [round(float(v), 4) for v in r.phase_scores],
        "phase_margin": r.phase_margin,
        "lands": [l.to_dict() for l in r.lands],
        "ccf_matrix": [[round(float(v), 4) for v in row] for row in r.ccf],
    }


def fragment_searches(key: list[dict], files: dict) -> dict:
    """Bullets 1 and 2 and the questioned lands ingested from ``files`` (by key name); each questioned land searched.

    The query is deleted while it is searched and ingested again after. The
    lead of questioned land K-1 should be a barrel-1 bullet through land AE.
    A file given as None is a land that could not be prepared: missing from
    its bullet, not searched as a questioned land.
    """
    from ibin import SearchParams, ingest, open_database, search

    names = [r["file"] for r in key]
    unknown = [n for n in names if n.startswith("Unknown") and files[n] is not None]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "db", create=True)
        t0 = time.perf_counter()
        ingest(db, [[files[n] for n in BULLET_1], [files[n] for n in BULLET_2]], kind="bullet",
               ids=["Barrel_1-Bullet_1", "Barrel_1-Bullet_2"])
        ingest(db, [[files[n]] for n in unknown], kind="bullet", ids=[n[:-4] for n in unknown])
        t_ingest = time.perf_counter() - t0
        land_of = {"Barrel_1-Bullet_1": BULLET_1, "Barrel_1-Bullet_2": BULLET_2} | {n[:-4]: [n] for n in unknown}
        lid = {r["file"]: r["land_id"] for r in key}
        search_ms = []
        for q in unknown:
            own = q[:-4]
            db.delete(own)  # the query is not on file while it is searched
            t = time.perf_counter()
            ll = search(db, files[q], kind="bullet", params=SearchParams(top=3))
            search_ms.append((time.perf_counter() - t) * 1e3)
            ingest(db, [[files[q]]], kind="bullet", ids=[own])
            mates = [n for n in names if n != q and lid[n] == lid[q] and files[n] is not None]
            run = {"query": own, "land_id": lid[q], "has_mate_on_file": bool(mates), "top_lead": None,
                   "top_lead_land": None, "top_lead_land_id": None, "top_ccf": None, "second_score": None,
                   "correct": False if mates else None}
            if ll.leads:
                top = ll.leads[0]
                pair = top.extra["lands"][0]
                top_land = land_of[top.id][pair["lead_land"] - 1]
                run.update(top_lead=top.id, top_lead_land=pair["lead_land"], top_lead_land_id=lid[top_land],
                           top_ccf=round(top.score, 4),
                           second_score=round(ll.leads[1].score, 4) if len(ll) > 1 else None,
                           correct=(lid[top_land] == lid[q]) if mates else None)
            runs.append(run)
        db.close()
    k_run = next((x for x in runs if x["query"] == "Unknown-Bullet_K-Land_1"), {"top_lead": None})
    return {
        "database": "Barrel_1-Bullet_1, Barrel_1-Bullet_2 (6 lands each) and the 14 other questioned lands",
        "ingest_s": t_ingest,
        "k1": {**k_run, "expected_land_id": "AE", "ok": k_run.get("top_lead_land_id") == "AE"
               and (k_run["top_lead"] or "").startswith("Barrel_1")},
        "questioned_with_mate_top1": f"{sum(bool(x['correct']) for x in runs if x['has_mate_on_file'])}/"
                                     f"{sum(x['has_mate_on_file'] for x in runs)}",
        "runs": runs,
        "search_ms": quantiles(search_ms),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    args = ap.parse_args(argv)

    from ibin.correlate import ProfileParams, ProfileSet, ccf_matrix
    from ibin.features import BulletParams, prepare_land
    from ibin.scan import load_scan

    d = args.shared / "bullet" / "hamby44"
    with open(d / "key.csv", newline="") as f:
        key = list(csv.DictReader(f))
    env = environment("python -m benchmarks.hamby44")
    bp, pp = BulletParams(), ProfileParams()

    # ---------------------------------------------------------------- preparation
    lands, prep_cpu, prep_wall = {}, [], []
    prepare_land(load_scan(d / key[0]["file"]))  # warm-up: Numba kernels
    for row in key:
        scan = load_scan(d / row["file"])
        c, w = time.process_time(), time.perf_counter()
        lands[row["file"]] = prepare_land(scan)
        prep_cpu.append(time.process_time() - c)
        prep_wall.append(time.perf_counter() - w)
    names = [r["file"] for r in key]
    per_land = {n: {k: v for k, v in lands[n].info().items() if k not in ("source", "sha256")} for n in names}

    # ---------------------------------------------------------------- land level
    S = ProfileSet([lands[n].signature for n in names], bp.pixel_um, coarse_factor=pp.coarse_factor)
    land_level = land_scores(key, lands, bp, pp)
    S1 = ProfileSet([lands[n].signature for n in names], bp.pixel_um, coarse_factor=1)
    ccf, _, _ = ccf_matrix(S, S, pp)
    ccf1, _, _ = ccf_matrix(S1, S1, ProfileParams(coarse_factor=1))
    iu = np.triu_indices(len(names), 1)
    dev = np.abs(ccf[iu] - ccf1[iu])
    land_level["coarse_to_fine_vs_exhaustive"] = {"max_abs_ccf_difference": float(dev.max()),
                                                  "pairs_differing_by_more_than_0.001": int((dev > 1e-3).sum())}

    # ---------------------------------------------------------------- bullet level
    bullet_level = bullet_scores(lands, bp, pp)

    # ---------------------------------------------------------------- fragments through the engine
    fragments = fragment_searches(key, {n: d / n for n in names})
    k_run = fragments["k1"]

    # ---------------------------------------------------------------- speed
    n_pairs = len(names) ** 2
    cpu, wall, reps = _rate(lambda: ccf_matrix(S, S, pp))
    cpu_x, wall_x, reps_x = _rate(lambda: ccf_matrix(S1, S1, ProfileParams(coarse_factor=1)), 3.0)
    mean_len_um = float(np.mean([lands[n].length_um for n in names]))
    speed = {
        "land_comparisons_per_cpu_second": n_pairs / cpu,
        "land_comparisons_per_wall_second": n_pairs / wall,
        "comparisons_per_call": n_pairs, "repeats": reps,
        "mean_signature_length_um": mean_len_um,
        "exhaustive_search_comparisons_per_cpu_second": n_pairs / cpu_x, "exhaustive_repeats": reps_x,
        "speedup_vs_exhaustive_same_process": cpu_x / cpu,
        "threads": 1,
        "preparation_per_land_s": {"cpu": quantiles(prep_cpu), "wall": quantiles(prep_wall)},
    }
    result = {
        "what": "bullets on Hamby set 44 (27 raw land scans, 1.5625 µm/px), real pipeline, default parameters",
        "environment": env,
        "parameters": {"features": bp.to_dict(), "comparison": {
            "min_overlap": pp.min_overlap, "min_overlap_um": pp.min_overlap_um, "coarse_factor": pp.coarse_factor,
            "coarse_peaks": pp.coarse_peaks, "striae_smooth_um": pp.striae_smooth_um}},
        "land_level": land_level,
        "bullet_level": bullet_level,
        "fragments": fragments,
        "speed": speed,
        "lands": per_land,
    }
    out = write("hamby44", result)
    print(f"land AUC {land_level['ccf_auc']:.4f} (same-land CCF >= {land_level['same_land_ccf_min']:.3f}, "
          f"different <= {land_level['different_land_ccf_max']:.3f}); descriptor AUC {land_level['descriptor_auc']:.3f}")
    print(f"bullet 1 vs 2: phase {bullet_level['phase']} (expected {bullet_level['expected_phase']}), "
          f"SAM {bullet_level['score_sam']:.3f}, margin {bullet_level['phase_margin']:.3f}")
    print(f"K-1: top lead {k_run['top_lead']} land {k_run['top_lead_land']} = {k_run['top_lead_land_id']} "
          f"(expected AE); questioned lands with a mate, top-1: {fragments['questioned_with_mate_top1']}")
    print(f"{speed['land_comparisons_per_cpu_second']:.0f} land comparisons per CPU second "
          f"({speed['land_comparisons_per_wall_second']:.0f} per wall second; {speed['speedup_vs_exhaustive_same_process']:.1f}x "
          f"the exhaustive search); preparation {np.median(prep_wall):.2f} s per land -> {out}")
    return result


if __name__ == "__main__":
    main()
