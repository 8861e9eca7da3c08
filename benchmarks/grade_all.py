"""Benchmark: submissions per minute of ``course grade-all`` on this machine.

Generates a class from ``reference/`` copies: a quarter wrong (a known
mistake in the positional encoding), the rest correct, so the numbers are
those of ordinary grading (a hang costs its time limit, a crash its restarts,
whatever the machine). Runs the real command, ``python -m course grade-all
--jobs J --seed S``, in a fresh process with an empty results folder and an
empty JAX compilation cache, then a second time unchanged (every submission
skipped).

Usage: ``python benchmarks/grade_all.py [--students N] [--jobs J] [--exercise NAME ...]``;
prints one Markdown row per run and writes ``benchmarks/results/grade_all.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import floor_seconds  # noqa: E402
from tests.conftest import copy_with_edits  # noqa: E402  (the tests' submission generator, not a copy)

WRONG = {"positional_encoding/positional_encoding.py": ("jnp.arange(seq_len, dtype=jnp.float32)",
                                                        "jnp.arange(1, seq_len + 1, dtype=jnp.float32)")}


def make_class(folder: Path, students: int) -> None:
    """``students`` submissions: every fourth one wrong, the others correct."""
    for i in range(students):
        copy_with_edits(folder / f"student{i:03d}", WRONG if i % 4 == 3 else None)


def grade_all(submissions: Path, results: Path, jobs: int, exercises: list[str], cache: Path) -> float:
    """Runs ``course grade-all`` in a fresh process; returns its wall time in seconds."""
    command = [sys.executable, "-m", "course", "grade-all", str(submissions), "--out", str(results),
               "--jobs", str(jobs), "--seed", "2026"]
    for name in exercises:
        command += ["--exercise", name]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache)}
    started = time.monotonic()
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"grade-all failed:\n{completed.stdout[-4000:]}{completed.stderr[-4000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--exercise", action="append", default=[], help="only this exercise (repeatable)")
    args = parser.parse_args()
    if args.students < 1 or args.jobs < 1:
        parser.error("--students and --jobs: expected positive numbers")
    from benchmarks.common import machine

    rows = {}
    with tempfile.TemporaryDirectory(prefix="course-bench-grade-all-") as tmp:
        base = Path(tmp)
        make_class(base / "submissions", args.students)
        load_before = os.getloadavg()[0]
        floors = [floor_seconds(cwd=ROOT, env=dict(os.environ))]
        first = grade_all(base / "submissions", base / "results", args.jobs, args.exercise, base / "cache")
        again = grade_all(base / "submissions", base / "results", args.jobs, args.exercise, base / "cache")
        floors.append(floor_seconds(cwd=ROOT, env=dict(os.environ)))
        load_after = os.getloadavg()[0]
        summary = [json.loads(p.read_text()) for p in (base / "results").glob("*/submission.json")]
    if len(summary) != args.students or not all(s["status"] == "graded" for s in summary):
        raise SystemExit(f"expected {args.students} graded submissions, got {[s['status'] for s in summary]}")
    what = ", ".join(args.exercise) or "all exercises"
    rows = {"first run": first, "unchanged re-run": again}
    print(f"| {what}, {args.students} students, --jobs {args.jobs} | wall (s) | submissions/min |")
    print("| --- | --- | --- |")
    for name, wall in rows.items():
        print(f"| {name} | {wall:.1f} | {60 * args.students / wall:.1f} |")
    floor = statistics.median(floors)
    print(f"floor (import jax, one operation; before and after): {floors[0]:.2f} s, {floors[1]:.2f} s; a first-run submission "
          f"takes {first / args.students * args.jobs / floor:.1f} floors of one job's time")
    print(f"load average before {load_before:.2f}, after {load_after:.2f}")
    out = ROOT / "benchmarks" / "results" / "grade_all.json"
    out.write_text(json.dumps({"machine": machine(), "exercises": what, "students": args.students, "jobs": args.jobs,
                               "wall_seconds": rows, "submissions_per_minute": {k: 60 * args.students / v for k, v in rows.items()},
                               "floor_seconds": floors, "load_average": [load_before, load_after]}, indent=1))


if __name__ == "__main__":
    main()
