"""Fault injection: writers killed (SIGKILL) at every step of the write path and at random moments.

The campaign itself is ``tests/_crash_harness.py`` (its docstring says what
is checked after every kill); it runs in its own process because it forks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_campaign(db: Path, *, point_trials: int, delay_trials: int, seed: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "tests._crash_harness", str(db), "--point-trials", str(point_trials),
         "--delay-trials", str(delay_trials), "--seed", str(seed)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"the crash harness failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fault-injection harness forks writers (POSIX only)")
def test_kills_across_the_write_path_lose_nothing(tmp_path):
    from ibin.index._faults import POINTS

    out = run_campaign(tmp_path / "db", point_trials=50, delay_trials=30, seed=1)
    print(f"\nkills {out['kills']}, survived {out['kills_survived']}, exhibits acknowledged "
          f"{out['exhibits_acknowledged']}, lost {out['exhibits_lost']}, by point {out['kills_by_point']}")
    assert out["trials_with_problems"] == 0, json.dumps(out["problems"], indent=1)
    assert out["kills"] >= 50 and out["kills_survived"] == out["kills"]
    assert out["exhibits_lost"] == 0 and out["exhibits_acknowledged"] > 30
    assert set(POINTS) <= set(out["kills_by_point"]), "every point of the write path must be hit"
    assert out["kills_by_point"].get("random delay", 0) >= 5
