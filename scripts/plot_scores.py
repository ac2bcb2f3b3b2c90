"""ROC curve and score histogram of pairwise scores with known ground truth, from a JSON file.

    .venv/bin/python scripts/plot_scores.py pairs.json [--out DIR] [--threshold 6] [--format png|pdf|svg]

The JSON holds the scores of same-firearm and different-firearm pairs, as
either ``{"same": [scores...], "diff": [scores...]}`` or a list of pairs
``[{"score": 23.8, "same": true}, ...]`` (also under a ``"pairs"`` key, and
``"same_firearm"`` is accepted for ``"same"``). Writes ``roc.<fmt>`` and
``scores.<fmt>`` with :func:`ibin.report.roc_figure` and
:func:`ibin.report.score_histogram_figure`, and prints the AUC.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_scores(path: Path) -> tuple[list[float], list[float]]:
    """Same-firearm and different-firearm scores from one of the accepted layouts."""
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "same" in data and "diff" in data:
        return [float(v) for v in data["same"]], [float(v) for v in data["diff"]]
    pairs = data.get("pairs") if isinstance(data, dict) else data
    if not isinstance(pairs, list):
        raise ValueError(f"{path}: expected {{'same': [...], 'diff': [...]}} or a list of pairs")
    same, diff = [], []
    for i, p in enumerate(pairs):
        truth = p.get("same", p.get("same_firearm"))
        if not isinstance(truth, bool) or "score" not in p:
            raise ValueError(f"{path}: pair {i} needs a 'score' and a true/false 'same'")
        (same if truth else diff).append(float(p["score"]) if p["score"] is not None else float("nan"))
    return same, diff


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", type=Path, help="JSON file of pair scores")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the figures (default: here)")
    ap.add_argument("--threshold", type=float, help="decision threshold to draw on the histogram")
    ap.add_argument("--format", choices=["png", "pdf", "svg"], default="png")
    ap.add_argument("--log", action="store_true", help="logarithmic count axis on the histogram")
    args = ap.parse_args(argv)
    from ibin.report import roc_curve, roc_figure, score_histogram_figure

    try:
        same, diff = read_scores(args.scores)
        args.out.mkdir(parents=True, exist_ok=True)
        roc_figure(same, diff, args.out / f"roc.{args.format}")
        score_histogram_figure(same, diff, args.out / f"scores.{args.format}", threshold=args.threshold,
                               log_counts=args.log)
    except (OSError, ValueError) as e:
        print(f"plot_scores: error: {e}", file=sys.stderr)
        return 2
    auc = roc_curve(same, diff)[3]
    print(f"{len(same)} same-firearm and {len(diff)} different-firearm pairs, AUC {auc:.4f}; "
          f"wrote {args.out / ('roc.' + args.format)} and {args.out / ('scores.' + args.format)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
