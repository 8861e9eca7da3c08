"""Benchmark: wall time of ``course grade reference``, cold, and where it goes.

Each measurement runs the real command in a fresh process (``python -m course
grade``), which starts the grader's pytest process and the worker, and reads
the split back from the score file: the grader's start (Python, pytest, jax
and the suites imported), the worker's start (spawn until it answered,
its jax import included), compilation in each process, and the cases.
The two processes run side by side, so the parts add up to more than the wall.
``cpu`` is the processor time of all the processes together (user and system),
which depends less than the wall on what else the machine runs; the load
average before and after is printed with the table.

Scenarios:

- ``empty cache``: JAX's persistent compilation cache (reference side) emptied first;
- ``new seed``: the cache kept, a seed never graded before (new shapes);
- ``same seed``: the cache kept, the seed of the previous run (a regrade, or the
  next submission of a class graded with one seed).

Usage: ``python benchmarks/grade_reference.py [--exercise NAME ...] [--repeat N]``;
prints a Markdown table (median of ``--repeat`` runs per scenario).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import timed_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def grade_once(exercises: list[str], seed: int, cache: Path) -> dict:
    """Runs ``course grade reference`` in a fresh process; returns the wall time and the score file's timings."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "course", "grade", str(ROOT / "reference"), "--out", out, "--seed", str(seed)]
        for name in exercises:
            command += ["--exercise", name]
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
        run = timed_run(command, cwd=ROOT, env=env)
        score = json.loads((Path(out) / "score.json").read_text())
    if score["score"] != score["max_score"]:
        raise SystemExit(f"the reference did not earn full marks: {score['score']}/{score['max_score']}")
    timings = score["timings"]
    cases = sum(c["seconds"] for e in score["exercises"] for c in e["cases"])
    return {"wall": run["wall_s"], "cpu": run["cpu_s"], "grader start": timings["grader_start"], "worker start": timings["worker_start"],
            "grader compile": timings["grader_compile"], "worker compile": timings["worker_compile"], "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exercise", action="append", default=[], help="only this exercise (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (the median is shown)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: expected a positive number")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    cache = Path(tempfile.mkdtemp(prefix="course-bench-cache-"))
    rows: dict[str, list[dict]] = {"empty cache": [], "new seed": [], "same seed": []}
    try:
        for run in range(args.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir()
            seed = 1000 + run
            rows["empty cache"].append(grade_once(args.exercise, seed, cache))
            rows["new seed"].append(grade_once(args.exercise, seed + 500, cache))
            rows["same seed"].append(grade_once(args.exercise, seed + 500, cache))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    columns = list(next(iter(rows.values()))[0])
    what = ", ".join(args.exercise) or "all exercises"
    print(f"| {what} | " + " | ".join(f"{c} (s)" for c in columns) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    for scenario, runs in rows.items():
        print(f"| {scenario} | " + " | ".join(f"{statistics.median(r[c] for r in runs):.2f}" for c in columns) + " |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
