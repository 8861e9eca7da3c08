"""Benchmark: what bubblewrap costs a grading, side by side with the fallback sandbox and a floor.

Each run grades the whole reference in a fresh process (``graders.grade``,
which starts the grader's pytest process and the worker) with one isolation
level; the floor is a fresh process that imports jax and runs one operation.
Runs are interleaved (floor, fallback, bubblewrap, floor, ...) so that a
change in the machine's load hits every column alike, and all use one seed and
one warm compilation cache (a first, unmeasured grading fills it): the
difference left is the sandbox's own.

Usage: ``python benchmarks/sandbox_overhead.py [--exercise NAME ...] [--repeat N] [--json FILE]``;
prints the median wall times, their ratios to the floor and bubblewrap's cost relative to the fallback
(the fallback is the sandbox before bubblewrap: as root, an unprivileged user).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import FLOOR, dump, machine, median, timed_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GRADE = ("import sys, graders; r = graders.grade({reference!r}, exercises={exercises!r} or None, seed=7, isolation={isolation!r}, "
         "open_interpreter_path=True); sys.exit(0 if r.score == r.max_score and r.isolation == {level!r} else 1)")


def run(kind: str, exercises: list[str], cache: Path) -> dict:
    """One fresh process of ``kind`` (``floor``, ``fallback`` or ``bubblewrap``): its wall seconds (and more; see ``timed_run``).

    Raises:
      SystemExit: the reference did not earn full marks at the expected isolation level.
    """
    if kind == "floor":
        code = FLOOR
    else:
        level = "bubblewrap" if kind == "bubblewrap" else ("user" if os.geteuid() == 0 else "none")
        code = GRADE.format(reference=str(ROOT / "reference"), exercises=exercises, isolation=kind, level=level)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    return timed_run([sys.executable, "-c", code], cwd=ROOT, env=env)  # exits when the grade or the level is wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exercise", action="append", default=[], help="only this exercise (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per column (the median is shown)")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: expected a positive number")
    kinds = ("floor", "fallback", "bubblewrap")
    cache = Path(tempfile.mkdtemp(prefix="course-bench-cache-"))
    load_before = os.getloadavg()[0]
    try:
        run("fallback", args.exercise, cache)  # fills the compilation cache
        runs: dict[str, list[dict]] = {k: [] for k in kinds}
        for _ in range(args.repeat):
            for kind in kinds:
                runs[kind].append(run(kind, args.exercise, cache))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    # Wall time only: the processor time of a bubblewrap worker is not counted for its parent (the sandbox is
    # killed, not waited for), so a cpu column would flatter it.
    wall = {k: median([r["wall_s"] for r in v]) for k, v in runs.items()}
    print(f"machine: {machine()}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"{', '.join(args.exercise) or 'all exercises'}, median of {args.repeat}")
    print("| run | wall (s) | wall / floor |")
    print("| --- | --- | --- |")
    for kind in kinds:
        print(f"| {kind} | {wall[kind]:.2f} | {wall[kind] / wall['floor']:.1f}x |")
    print(f"bubblewrap / fallback: {wall['bubblewrap'] / wall['fallback']:.3f}")
    dump({"machine": machine(), "load_before": load_before, "load_after": os.getloadavg()[0], "median_wall_s": wall,
          "walls_s": {k: [r["wall_s"] for r in v] for k, v in runs.items()}}, args.json)


if __name__ == "__main__":
    main()
