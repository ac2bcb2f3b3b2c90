"""Fault injection: kill writers of an ibin database at random points, then verify what survived.

Run as ``python -m tests._crash_harness DB --point-trials N --delay-trials M
--seed S`` from the project root, with ``OMP_NUM_THREADS=1`` (the harness
forks; single-threaded libraries are fork-safe). Prints one JSON summary.

The process started is a *zygote*: it imports ibin once, then for every
trial forks a *writer* that opens the database and adds, deletes and edits
exhibits, catches up and saves the index file, telling the zygote through a
pipe each time an operation has *returned* (acknowledged). The writer dies
by ``SIGKILL`` either

* at a named point of the write path (:mod:`ibin.index._faults`: half a
  record written, record fsynced, transaction begun, rows inserted, about to
  commit, committed, index file renamed in, ...), on its n-th passage; or
* after a random delay chosen by the zygote, wherever it happens to be
  (inside SQLite, between system calls, ...).

After every kill the zygote opens the database read-only and checks that

* ``Database.check()`` finds no damage (catalog, feature records, index,
  audit chain and its replay agree);
* every acknowledged exhibit is on file, its feature record holds exactly
  the arrays that were written, and a vector search with its descriptor
  returns it first; every acknowledged deletion and metadata edit holds;
* nothing is on file that was never attempted, and the one operation in
  flight at the kill either happened completely or not at all.

Exhibits are synthetic: arrays of a prepared cartridge case's size (a
256 x 320 int8 surface, so each record is written in two 64 KiB chunks
and can be torn between them) with a random unit descriptor.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np

SPACE = "cartridge/height"
DIM = 64


@functools.lru_cache(maxsize=None)
def exhibit(k: int):
    """The k-th synthetic exhibit (deterministic)."""
    from ibin.index import NewExhibit

    rng = np.random.default_rng(1000 + k)
    v = rng.normal(size=DIM).astype(np.float32)
    v /= np.linalg.norm(v)
    arrays = {"surface_q": rng.integers(-127, 128, size=(256, 320), dtype=np.int8), "descriptor": v}
    return NewExhibit(
        id=f"ex{k:04d}", kind="cartridge", modality="height", source_name=f"ex{k:04d}.x3p",
        source_sha256=hashlib.sha256(f"exhibit-{k}".encode()).hexdigest(), arrays=arrays,
        attrs={"k": k}, vectors={SPACE: v[None]}, metadata={"case": f"C-{k % 5}"}, user="crash-test",
    )


# ---------------------------------------------------------------------------- the writer (child)


def _writer(db_path: Path, plan: dict, ack_fd: int) -> None:
    """Body of a forked writer; never returns (exits or is killed)."""
    from ibin.index import Database
    from ibin.index import _faults

    def ack(line: str) -> None:
        os.write(ack_fd, (line + "\n").encode())

    target, nth = plan.get("point"), plan.get("nth", 1)
    seen = {"n": 0}

    def hook(name: str) -> None:
        if name == target:
            seen["n"] += 1
            if seen["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    if target:
        _faults.set_hook(hook)
    db = Database.open(db_path, create=True)
    ack("O")
    for op in plan["ops"]:
        kind = op[0]
        if kind == "add":
            db.add(exhibit(op[1]))
            ack(f"A {op[1]}")
        elif kind == "delete":
            db.delete(f"ex{op[1]:04d}", user="crash-test", reason="fault injection")
            ack(f"D {op[1]}")
        elif kind == "meta":
            db.set_metadata(f"ex{op[1]:04d}", {"note": op[2]}, user="crash-test")
            ack(f"M {op[1]} {op[2]}")
        elif kind == "index":
            db.index(SPACE)
            ack("I")
    db.close()
    os._exit(0)


# ---------------------------------------------------------------------------- the zygote


class Model:
    """What must (and may) be on file, from the acknowledgements."""

    def __init__(self):
        self.present: set[int] = set()     # on file for certain
        self.meta: dict[int, str | None] = {}  # note value for certain (None = unset)
        self.attempted: set[int] = set()
        self.acked_adds = 0
        self.lost = 0

    def apply(self, plan: dict, acks: list[str]) -> tuple[list, set, set]:
        """Apply acknowledged ops; return (the op in flight or None, uncertain adds, uncertain deletes)."""
        done = 0
        for line in acks:
            parts = line.split()
            if parts[0] == "A":
                self.acked_adds += 1
                self.present.add(int(parts[1]))
                self.meta.setdefault(int(parts[1]), None)
            elif parts[0] == "D":
                self.present.discard(int(parts[1]))
                self.meta.pop(int(parts[1]), None)
            elif parts[0] == "M":
                self.meta[int(parts[1])] = parts[2]
            if parts[0] in ("A", "D", "M", "I"):
                done += 1
        ops = plan["ops"]
        return (ops[done] if done < len(ops) else None)


def _verify(db_path: Path, model: Model, inflight) -> list[str]:
    """Problems found after a trial (empty when all is well); resolves the in-flight op into the model."""
    from ibin.index import Database

    problems: list[str] = []
    if not (db_path / "ibin-db.json").exists():
        if model.present:
            problems.append("the database disappeared")
        leftovers = [p.name for p in db_path.parent.iterdir() if p.name.startswith(f".{db_path.name}.creating-")]
        return problems + ([f"unexpected files beside the database: {leftovers}"]
                           if db_path.exists() else [])
    with Database.open(db_path, readonly=True) as db:
        rep = db.check()
        problems += [str(f) for f in rep.damage]
        on_file = {int(r.id[2:]): r for r in db.list()}
        # the operation in flight at the kill happened completely or not at all
        if inflight is not None:
            k = inflight[1] if len(inflight) > 1 else None
            if inflight[0] == "add" and k in on_file:
                model.present.add(k)
                model.meta.setdefault(k, None)
            elif inflight[0] == "delete" and k not in on_file:
                model.present.discard(k)
                model.meta.pop(k, None)
            elif inflight[0] == "meta" and k in on_file:
                have = on_file[k].metadata.get("note")
                if have not in (model.meta.get(k), inflight[2]):
                    problems.append(f"ex{k:04d}: note {have!r} is neither the old nor the new value")
                model.meta[k] = have
        lost = sorted(model.present - set(on_file))
        if lost:
            problems.append(f"LOST acknowledged exhibits: {lost}")
            model.lost += len(lost)
        extra = sorted(set(on_file) - model.present)
        if extra:
            problems.append(f"exhibits on file that were never acknowledged nor in flight: {extra}")
        for k, rec in on_file.items():
            arrays, attrs = db.load(rec, verify=True)
            want = exhibit(k)
            if attrs != {"k": k} or any(not np.array_equal(arrays[n], a) for n, a in want.arrays.items()):
                problems.append(f"ex{k:04d}: stored arrays differ from those written (half-written record)")
            want_md = dict(want.metadata)
            if model.meta.get(k) is not None:
                want_md["note"] = model.meta[k]
            if rec.metadata != want_md:
                problems.append(f"ex{k:04d}: metadata {rec.metadata} != {want_md}")
        if on_file:
            keys = sorted(on_file)
            q = np.stack([exhibit(k).vectors[SPACE][0] for k in keys])
            _, rowids, _ = db.search_vectors(SPACE, q, 1)
            for k, r in zip(keys, rowids[:, 0]):
                if r != on_file[k].rowid:
                    problems.append(f"ex{k:04d}: a search with its own descriptor does not return it first")
        audited = {e.details.get("rowid") for e in db.audit_log(event="ingest")}
        missing_audit = [k for k in on_file if on_file[k].rowid not in audited]
        if missing_audit:
            problems.append(f"exhibits without an ingest audit entry: {missing_audit}")
    return problems


def _plan(rng: random.Random, model: Model, next_k: int, trial: int, point: str | None, nth: int) -> tuple[dict, int]:
    ops = []
    for _ in range(rng.randint(1, 3)):
        ops.append(("add", next_k))
        next_k += 1
    live = sorted(model.present)
    if len(live) > 3 and rng.random() < 0.25:
        # the newest exhibit half the time: its row id must never be issued again
        gone = live[-1] if rng.random() < 0.5 else rng.choice(live)
        ops.insert(0, ("delete", gone))
        live.remove(gone)
    if live and (rng.random() < 0.3 or point == "catalog.rows"):
        ops.insert(rng.randrange(1 if ops[0][0] == "delete" else 0, len(ops) + 1), ("meta", rng.choice(live), f"t{trial}"))
    if rng.random() < 0.5 or (point or "").startswith("index."):
        ops.append(("index",))
    return {"ops": ops, "point": point, "nth": nth}, next_k


def _passages(plan: dict, point: str) -> int:
    """How often the writer of ``plan`` passes ``point``."""
    ops = [op[0] for op in plan["ops"]]
    adds = ops.count("add")
    if point == "store.chunk":
        return 2 * adds  # every record is written in two 64 KiB chunks
    if point.startswith("store."):
        return adds
    if point.startswith("catalog."):
        return adds + ops.count("meta") + ops.count("delete")
    return 1  # index.*: one save per index op; the plan's adds precede it


def campaign(db_path: Path, *, point_trials: int, delay_trials: int, seed: int) -> dict:
    """Run the trials; return counts and any problems."""
    from ibin.index._faults import POINTS

    rng = random.Random(seed)
    model = Model()
    next_k = 0
    results = []
    durations: list[float] = []
    schedule = []
    creation = [("create.built", 1)] * 3  # the first writers die while creating the database
    cycle = [p for p in POINTS if not p.startswith("create.")]
    for i in range(point_trials):
        schedule.append(creation[i] if i < len(creation) else (cycle[i % len(cycle)], None))
    schedule += [(None, None)] * delay_trials
    # interleave point and delay trials after the creation trials and three
    # uninterrupted writers that measure how long a writer takes
    head, rest = schedule[:3], schedule[3:]
    rng.shuffle(rest)
    schedule = head + [("calibrate", None)] * 3 + rest
    t_start = time.perf_counter()
    for trial, (point, nth) in enumerate(schedule):
        plan, next_k = _plan(rng, model, next_k, trial, None if point == "calibrate" else point, nth or 1)
        if point is not None and nth is None:  # the n-th passage, anywhere in the writer's work
            plan["nth"] = nth = rng.randint(1, _passages(plan, point))
        for op in plan["ops"]:
            if op[0] == "add":
                model.attempted.add(op[1])
        r, w = os.pipe()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the writer
            os.close(r)
            try:
                _writer(db_path, plan, w)
            except BaseException:  # noqa: BLE001 - report and die: the zygote sees a non-kill exit
                import traceback

                traceback.print_exc()
                os._exit(3)
        os.close(w)
        delay = None
        if point == "calibrate":
            pass
        elif point is None:
            typical = float(np.median(durations)) if durations else 0.05
            delay = rng.uniform(0.0, typical)
            time.sleep(delay)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - t0
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        acks = [a for a in b"".join(chunks).decode().splitlines() if a]
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        crashed = os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0
        if not killed and not crashed:
            durations.append(elapsed)
        inflight = model.apply(plan, [a for a in acks if a != "O"])
        problems = _verify(db_path, model, inflight if killed else None)
        if crashed:
            problems.append(f"the writer failed by itself (exit {os.WEXITSTATUS(status)}), not by the kill")
        if not killed and inflight is not None:
            problems.append(f"the writer exited without finishing {inflight}")
        results.append({"trial": trial, "mode": {None: "delay", "calibrate": "none"}.get(point, "point"), "point": point, "nth": nth,
                        "delay_s": delay, "killed": killed, "acknowledged": len([a for a in acks if a != "O"]),
                        "in_flight": list(inflight) if (killed and inflight) else None, "problems": problems})
    kills = [r for r in results if r["killed"]]
    by_point: dict[str, int] = {}
    for r in kills:
        key = r["point"] or "random delay"
        by_point[key] = by_point.get(key, 0) + 1
    with_problems = [r for r in results if r["problems"]]
    return {
        "trials": len(results),
        "kills": len(kills),
        "kills_survived": sum(1 for r in kills if not r["problems"]),
        "kills_by_point": dict(sorted(by_point.items())),
        "exhibits_acknowledged": model.acked_adds,
        "exhibits_on_file_at_end": len(model.present),
        "exhibits_lost": model.lost,
        "trials_with_problems": len(with_problems),
        "problems": [(r["trial"], r["point"] or f"delay {r['delay_s']:.4f}s", r["problems"]) for r in with_problems][:20],
        "seconds": round(time.perf_counter() - t_start, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="kill ibin writers at random points and verify the database")
    ap.add_argument("db", type=Path)
    ap.add_argument("--point-trials", type=int, default=45)
    ap.add_argument("--delay-trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = campaign(args.db, point_trials=args.point_trials, delay_trials=args.delay_trials, seed=args.seed)
    print(json.dumps(out, indent=1))
    return 0 if not out["trials_with_problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
