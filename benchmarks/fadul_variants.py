"""Accuracy on the Fadul set as if its scans came from other instruments and holders.

ibin is judged on scans it was not developed on: other microscopes (other
pixel sizes), cases seated at a tilt in their holder, primers domed, scans
turned by any angle. This benchmark makes such a set from the 40 real Fadul
breech faces and runs the real pipeline on it (X3P files written, ingested,
``search --all``), so the ground truth stays known:

- *pixel*: each scan is resampled to one of 1.5625, 3.125, 6.25 and 10 µm/px
  (drawn at random), by area averaging going coarser and bicubic interpolation going
  finer (the finer copies hold no new detail; they test that every length is
  carried in µm);
- *turned*: by a uniform random angle (bilinear), the grid enlarged to hold it;
- *form*: a tilt of 0-2° in a random direction, a dome (a paraboloid) of
  -3 to +3 µm over the field, and a height offset;
- *raw*: the breech face put back into a raw scan of the whole case head
  (primer at its own height, firing-pin crater and the primer that flowed
  back around it, gap ring, case head, holder's tilt and curvature, spikes,
  dropouts, no mask; :func:`ibin.synth.raw_case_head`), so that ibin has to find the
  breech face itself; *raw_all* then resamples and turns it as above;
  *raw_no_flowback* is *raw* without the flowed-back ring, all else the same;
  *raw_crater_unmeasured* is *raw* with the crater left unmeasured (NaN);
  *raw_masked_flowback* is that scan cut round at the breech face's outer
  edge, as a processed file whose mask kept the flowed-back primer around
  the aperture would be; *raw_off_centre* is *raw* with the crater off the
  aperture's centre by half the clearance between them (an off-centre
  strike: the flowed-back primer a crescent); *raw_far_off_centre* by 0.8 of
  it (the crescent's near side a fifth of the clearance wide).

Conditions: each alone and all together (pixel, turned, form), the raw
ones, over several seeds. For the raw ones, how far the breech-face region
ibin finds lies from the one the scene was made with (``roi_worst``). Reports
top-1 / top-10 hit rates, ROC AUC and the CMC separation (same-firearm
minimum, different-firearm maximum, different pairs reaching the
identification criterion of 6 cells) per run; the unchanged set is
``fadul_accuracy``.

Run: ``python -m benchmarks.fadul_variants [--seeds 3] [--shared PATH] [--conditions pixel,turned,form,all]``
(the raw ones: ``--conditions raw,raw_no_flowback,raw_crater_unmeasured,raw_masked_flowback,
raw_off_centre,raw_far_off_centre,raw_all --name fadul_variants_raw``)
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._common import SHARED, environment, fadul_key, write
from .fadul_accuracy import accuracy, summary

PIXELS_UM = (1.5625, 3.125, 6.25, 10.0)
MAX_TILT_DEG = 2.0
MAX_DOME_UM = 3.0
OFFSETS = {"off_centre": 0.5, "far_off_centre": 0.8}  # the crater off the aperture's centre, share of the clearance
CONDITIONS = {"pixel": ("pixel",), "turned": ("turned",), "form": ("form",), "all": ("pixel", "turned", "form"),
              "raw": ("raw",), "raw_all": ("raw", "pixel", "turned"), "raw_no_flowback": ("raw", "no_flowback"),
              "raw_crater_unmeasured": ("raw", "crater_unmeasured"),
              "raw_masked_flowback": ("raw", "crater_unmeasured", "masked"),
              "raw_off_centre": ("raw", "off_centre"), "raw_far_off_centre": ("raw", "far_off_centre")}


def reacquire(scan, rng: np.random.Generator, *, pixel_um: float | None, turn_deg: float | None, form: bool,
              transpose: bool = False):
    """The scan as another instrument and holder might give it, and what was done.

    Parameters
    ----------
    scan : ibin.scan.Scan
        A height scan with square pixels.
    rng : numpy.random.Generator
    pixel_um : float or None
        New pixel size (None keeps it).
    turn_deg : float or None
        Turn counter-clockwise by this angle (None: not turned).
    form : bool
        Add a random tilt, dome and offset.
    transpose : bool
        Store the grid with its axes swapped (after the turn), as instruments
        that scan along the other axis do.
    """
    import cv2
    from scipy import ndimage

    from ibin.scan import Scan

    z = np.asarray(scan.values, dtype=np.float64)
    m = np.isfinite(z).astype(np.float64)
    zf = np.where(m > 0, z, 0.0)
    done: dict[str, float] = {}
    if turn_deg is not None:
        zf = ndimage.rotate(zf, turn_deg, order=1, reshape=True, cval=0.0)
        m = ndimage.rotate(m, turn_deg, order=1, reshape=True, cval=0.0)
        done["turned_deg"] = turn_deg
    if transpose:
        zf, m = np.ascontiguousarray(zf.T), np.ascontiguousarray(m.T)
        done["transposed"] = True
    px = scan.pixel_x_um
    if pixel_um is not None and pixel_um != px:
        f = px / pixel_um
        size = (max(8, round(zf.shape[1] * f)), max(8, round(zf.shape[0] * f)))
        how = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
        zf, m = cv2.resize(zf * m, size, interpolation=how), cv2.resize(m, size, interpolation=how)
        px = pixel_um
    # a point is measured where (almost) all that went into it was measured
    ok = m > 0.99
    out = np.full(zf.shape, np.nan)
    out[ok] = zf[ok] / m[ok]
    done["pixel_um"] = px
    if form:
        yy, xx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]] * px
        xx, yy = xx - xx.mean(), yy - yy.mean()
        tilt, azimuth = float(rng.uniform(0.0, MAX_TILT_DEG)), float(rng.uniform(0.0, 2 * math.pi))
        dome = float(rng.uniform(-MAX_DOME_UM, MAX_DOME_UM))
        r2 = xx**2 + yy**2
        out = out + math.tan(math.radians(tilt)) * (math.cos(azimuth) * xx + math.sin(azimuth) * yy)
        out = out + dome * r2 / r2.max() + float(rng.uniform(-50.0, 50.0))
        done.update(tilt_deg=tilt, dome_um=dome)
    return Scan(out, px, px), done


def run(d: Path, key: dict[str, str], steps: tuple[str, ...], seed: int) -> dict:
    """One variant set: made, ingested, searched all against all; its accuracy."""
    from ibin import SearchParams, ingest, load_scan, open_database, save_x3p, search_exhibits
    from ibin.synth import raw_case_head

    rng = np.random.default_rng(seed)
    names = sorted(key)
    made = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = []
        for n in names:
            scan, made_raw = load_scan(d / f"{n}.x3p"), {}
            if "raw" in steps:
                scan, made_raw = raw_case_head(scan, rng, flowback="no_flowback" not in steps,
                                               crater_measured="crater_unmeasured" not in steps,
                                               case_head="masked" not in steps,
                                               crater_offset=next((o for k, o in OFFSETS.items() if k in steps), 0.0))
            scan, done = reacquire(scan, rng,
                                   pixel_um=float(rng.choice(PIXELS_UM)) if "pixel" in steps else None,
                                   turn_deg=float(rng.uniform(0.0, 360.0)) if "turned" in steps else None,
                                   form="form" in steps)
            save_x3p(scan, tmp / f"{n}.x3p")
            files.append(tmp / f"{n}.x3p")
            if made_raw:  # on the scan as ingested; a turn moves the centres, not the radii
                made_raw["found"] = roi_found(scan, made_raw, centres="turned" not in steps)
            made[n] = {**made_raw, **done}
        db = open_database(tmp / "db", create=True)
        rep = ingest(db, files)
        assert rep.added == len(key), [r.message for r in rep.results if r.status == "failed"]
        t0 = time.perf_counter()
        lists = list(search_exhibits(db, params=SearchParams(top=len(key) - 1, candidates=len(key))))
        seconds = time.perf_counter() - t0
        db.close()
    out = {"steps": list(steps), "seed": seed, "seconds_search_all": seconds, **accuracy(lists, key)}
    if "raw" in steps:
        found = [m["found"] for m in made.values()]
        out["roi_worst"] = {k: None if any(f[k] is None for f in found) else max(f[k] for f in found)
                            for k in found[0]}
    return {**out, "scans": made}


def roi_found(scan, truth: dict, *, centres: bool) -> dict:
    """How far the breech-face region ibin finds on a raw scan is from the one it was made with (µm).

    Radii always; centres only where the scan was not turned (``centres``). None: not found.
    """
    from ibin.features._roi import find_breech_face

    roi = find_breech_face(np.asarray(scan.values), scan.pixel_x_um)
    p, f = roi.primer, roi.firing_pin
    out = {
        # cut round (no case head), the primer's outline is the cut
        "primer_radius_error_um": None if p is None else abs(
            p.radius_um - truth.get("cut_radius_um", truth["primer_radius_um"])),
        # the crater ibin removes lies inside the aperture the breech face left
        "firing_pin_beyond_aperture_um": None if f is None else max(0.0, f.radius_um - truth["aperture_radius_um"]),
    }
    if centres:
        out["primer_centre_error_um"] = None if p is None else math.dist((p.x_um, p.y_um), truth["primer_centre_um"])
        out["firing_pin_centre_error_um"] = (None if f is None else math.dist(
            (f.x_um, f.y_um), truth.get("crater_centre_um", truth["aperture_centre_um"])))
    return out


def arguments(doc: str, name: str, conditions: dict, argv,
              default: tuple[str, ...] | None = None) -> argparse.Namespace:
    """The command line of a variants benchmark (``--shared``, ``--seeds``, ``--conditions``, ``--name``).

    ``default`` names the conditions run when none are given (all of them when None).
    """
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    ap.add_argument("--seeds", type=int, default=3, help="variant sets per condition")
    ap.add_argument("--conditions", default=",".join(default or conditions),
                    help="comma-separated, of " + ", ".join(conditions))
    ap.add_argument("--name", default=name, help="results file name")
    return ap.parse_args(argv)


def run_conditions(args: argparse.Namespace, conditions: dict, one, describe) -> list[dict]:
    """``one(steps, seed)`` for each chosen condition and seed, each run printed by ``describe`` as it ends."""
    runs = []
    for cond in args.conditions.split(","):
        for seed in range(1, args.seeds + 1):
            r = one(conditions[cond], seed)
            r["condition"] = cond
            runs.append(r)
            print(f"{cond:6s} seed {seed}: {describe(r)}", flush=True)
    return runs


def main(argv=None) -> dict:
    args = arguments(__doc__, "fadul_variants", CONDITIONS, argv, default=("pixel", "turned", "form", "all"))
    d = args.shared / "cartridge" / "fadul"
    key = fadul_key(d)
    env = environment("python -m benchmarks.fadul_variants " + " ".join(sys.argv[1:] if argv is None else argv))
    runs = run_conditions(args, CONDITIONS, lambda steps, seed: run(d, key, steps, seed), summary)
    result = {
        "what": "the 40 Fadul breech faces resampled, turned, tilted and domed as by other instruments and "
                "holders, or put back into raw scans of the case head (see the module's docstring), written as "
                "X3P, ingested + search --all",
        "environment": env,
        "parameters": {"pixels_um": PIXELS_UM, "max_tilt_deg": MAX_TILT_DEG, "max_dome_um": MAX_DOME_UM,
                       "seeds": args.seeds},
        "runs": runs,
        "worst": {
            "top1_hits": min(r["top1_hits"] for r in runs),
            "top10_all_mates": min(r["top10_all_mates"] for r in runs),
            "auc_cmc": min(r["auc"]["cmc"] for r in runs),
            "cmc_same_min": min(r["cmc_same"]["min"] for r in runs),
            "cmc_different_max": max(r["cmc_different"]["max"] for r in runs),
            "different_pairs_cmc_6_or_more": sum(r["different_pairs_cmc_6_or_more"] for r in runs),
        },
    }
    out = write(args.name, result)
    print(f"worst of {len(runs)} runs: {result['worst']} -> {out}")
    return result


if __name__ == "__main__":
    main()
