"""Bullets on Hamby set 44 as if their lands were scanned by other instruments and holders.

The bullet counterpart of ``fadul_variants``: ibin is judged on scans it
was not developed on. This benchmark makes such scans from the 27 raw
Hamby 44 lands (CSAFE, Sensofar S neox, 1.5625 µm/px) with the ground truth
kept, writes them as X3P, and runs the real pipeline on them:

- *pixel*: each land resampled to one of 0.645, 1.0, 2.0 and 3.125 µm/px
  (drawn at random; 0.645 µm is the Sensofar's 50x objective, 3.125 µm is
  near the coarsest spacing that still carries the 8 µm short cut-off),
  by area averaging going coarser and bicubic interpolation going finer;
- *turned*: turned in its plane by up to 2° either way (a bullet not quite
  square to the scan; the lands' own striae lean by up to 2.7°) and, for
  half of the lands, stored with its axes swapped (instruments store lands
  either way);
- *helix*: turned by 5-6.5° either way, as a field aligned with the
  bullet's axis rather than with the land sees the striae (the helix angle
  of these 9 mm Ruger barrels' 1:10" twist is 6.4°), axes swapped for half;

The turned grid is enlarged to hold the turned scan, so rows near its top
and bottom hold only part of the land (an instrument's own rectangular
field would not; partly measured rows also come from a field partly out of
focus).
- *form*: a tilt of 0-2° in a random direction, a dome of -3 to +3 µm over
  the field (on top of the bullet's curvature) and a height offset.

Each change alone and all but *helix* together, over several seeds.
Reported per run:
the land-level ROC AUC and separation (same-land CCF minimum and mean,
different-land maximum) of all 351 land pairs; bullet 1 against bullet 2
at the right phase; every questioned land searched through the engine
against a database of the others (``hamby44``'s fragments); how many
lands' striae came out with no tilt measured (exactly 0°); and the lands
the preparation refused (left out of the scores, missing from their
bullet). The unchanged set is ``hamby44``.

Run: ``python -m benchmarks.hamby44_variants [--seeds 3] [--shared PATH]``
"""

from __future__ import annotations

from ._common import single_thread

single_thread()

import csv  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from ._common import environment, write  # noqa: E402
from .fadul_variants import MAX_DOME_UM, MAX_TILT_DEG, arguments, reacquire, run_conditions  # noqa: E402
from .hamby44 import bullet_scores, fragment_searches, land_scores  # noqa: E402

PIXELS_UM = (0.645, 1.0, 2.0, 3.125)
MAX_TURN_DEG = 2.0
HELIX_DEG = (5.0, 6.5)
CONDITIONS = {"pixel": ("pixel",), "turned": ("turned",), "helix": ("helix",), "form": ("form",),
              "all": ("pixel", "turned", "form")}


def _turn(rng: np.random.Generator, steps: tuple[str, ...]) -> float | None:
    if "helix" in steps:
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(*HELIX_DEG))
    return float(rng.uniform(-MAX_TURN_DEG, MAX_TURN_DEG)) if "turned" in steps else None


def run(d: Path, key: list[dict], steps: tuple[str, ...], seed: int) -> dict:
    """One variant set: made, written as X3P, prepared, compared and searched."""
    from ibin import load_scan, save_x3p
    from ibin.correlate import ProfileParams
    from ibin.errors import ScanError
    from ibin.features import BulletParams, prepare_land

    bp, pp = BulletParams(), ProfileParams()
    rng = np.random.default_rng(seed)
    names = [r["file"] for r in key]
    made, lands, prep, refused = {}, {}, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {n: Path(tmp) / n for n in names}
        for n in names:
            turned = "turned" in steps or "helix" in steps
            scan, done = reacquire(load_scan(d / n), rng,
                                   pixel_um=float(rng.choice(PIXELS_UM)) if "pixel" in steps else None,
                                   turn_deg=_turn(rng, steps), form="form" in steps,
                                   transpose=turned and bool(rng.random() < 0.5))
            save_x3p(scan, files[n])
            t = time.process_time()
            try:
                lands[n] = prepare_land(load_scan(files[n]), bp)
            except ScanError as e:
                refused[n] = e.problem
                made[n] = done | {"refused": refused[n]}
                continue
            prep.append(time.process_time() - t)
            made[n] = done | {"measured_tilt_deg": round(lands[n].tilt_deg, 3),
                              "measured_transposed": lands[n].transposed}
        lv = land_scores([r for r in key if r["file"] in lands], lands, bp, pp)
        bl = bullet_scores(lands, bp, pp)
        fr = fragment_searches(key, {n: None if n in refused else f for n, f in files.items()})
    swapped = [m for m in made.values() if m.get("transposed") and "refused" not in m]
    return {
        "steps": list(steps), "seed": seed,
        "land_auc": lv["ccf_auc"], "same_land_ccf_min": lv["same_land_ccf_min"],
        "same_land_ccf_mean": lv["same_land_ccf_mean"], "different_land_ccf_max": lv["different_land_ccf_max"],
        "descriptor_auc": lv["descriptor_auc"],
        "same_land_pairs": lv["same_land_pairs_detail"],
        "bullet_phase_correct": bl["phase_correct"], "bullet_phase_margin": bl["phase_margin"],
        "bullet_score_sam": bl["score_sam"],
        "k1_ok": fr["k1"]["ok"], "questioned_with_mate_top1": fr["questioned_with_mate_top1"],
        "fragments": fr["runs"],
        "lands_refused": refused,
        "lands_without_tilt": sum(lands[n].tilt_deg == 0.0 for n in lands),
        "swapped_axes_found": f"{sum(bool(m['measured_transposed']) for m in swapped)}/{len(swapped)}",
        "preparation_cpu_s_p50": float(np.median(prep)),
        "scans": made,
    }


def summary(r: dict) -> str:
    return (f"land AUC {r['land_auc']:.3f}, same-land CCF min {r['same_land_ccf_min']:.3f} mean "
            f"{r['same_land_ccf_mean']:.3f}, different max {r['different_land_ccf_max']:.3f}; bullet phase "
            f"{'right' if r['bullet_phase_correct'] else 'WRONG'} (margin {r['bullet_phase_margin'] or 0:.3f}); K-1 "
            f"{'ok' if r['k1_ok'] else 'WRONG'}, questioned top-1 {r['questioned_with_mate_top1']}; "
            f"{r['lands_without_tilt']} lands without a tilt; swapped axes found {r['swapped_axes_found']}; "
            f"{len(r['lands_refused'])} lands refused")


def main(argv=None) -> dict:
    args = arguments(__doc__, "hamby44_variants", CONDITIONS, argv)
    d = args.shared / "bullet" / "hamby44"
    with open(d / "key.csv", newline="") as f:
        key = list(csv.DictReader(f))
    env = environment("python -m benchmarks.hamby44_variants " + " ".join(sys.argv[1:] if argv is None else argv))
    runs = run_conditions(args, CONDITIONS, lambda steps, seed: run(d, key, steps, seed), summary)
    result = {
        "what": "the 27 raw Hamby 44 lands resampled, turned, stored with swapped axes, tilted and domed as by other "
                "instruments and holders (see the module's docstring), written as X3P, prepared, compared, searched",
        "environment": env,
        "parameters": {"pixels_um": PIXELS_UM, "max_turn_deg": MAX_TURN_DEG, "helix_deg": HELIX_DEG,
                       "max_tilt_deg": MAX_TILT_DEG,
                       "max_dome_um": MAX_DOME_UM, "seeds": args.seeds},
        "runs": runs,
        "worst": {
            "land_auc": min(r["land_auc"] for r in runs),
            "same_land_ccf_min": min(r["same_land_ccf_min"] for r in runs),
            "different_land_ccf_max": max(r["different_land_ccf_max"] for r in runs),
            "bullet_phase_correct": f"{sum(r['bullet_phase_correct'] for r in runs)}/{len(runs)}",
            "k1_ok": f"{sum(r['k1_ok'] for r in runs)}/{len(runs)}",
            "lands_without_tilt": sum(r["lands_without_tilt"] for r in runs),
            "lands_refused": sum(len(r["lands_refused"]) for r in runs),
        },
    }
    out = write(args.name, result)
    print(f"worst of {len(runs)} runs: {result['worst']} -> {out}")
    return result


if __name__ == "__main__":
    main()
