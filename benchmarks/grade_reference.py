"""Benchmark: wall time of ``course grade reference``, cold and within a class run, beside the floor.

Each measurement runs the real command, ``python -m course grade reference``,
in a fresh process: it starts the grader's pytest process, which starts the
worker. The split comes from the score file: *grader start* is the pytest
process until the suites can run (Python, pytest, jax, the plugin); *worker
start* is spawning the worker until it answered (its jax import included);
*compile* is JAX's tracing, lowering and XLA compilation in each process. The
two processes work side by side, so the parts add up to more than the wall.

Scenarios:

- ``cold``: JAX's persistent compilation cache and the reference store
  (``graders/engine/reference_store.py``) emptied first: one grading on a new machine;
- ``class run``: both kept from a grading with the same seed: every student
  of a class run after the first (the worker still compiles the submission:
  it never shares a cache).

The *floor* is a fresh process that imports jax and runs one operation, timed
in the same rounds. ``--baseline DIR`` also grades with another checkout's
code (e.g. ``git worktree add /tmp/before <rev>``), interleaved, so that a
change is measured side by side with what it changes.

Usage: ``python benchmarks/grade_reference.py [--exercise NAME ...] [--repeat N] [--baseline DIR] [--json FILE]``;
prints Markdown tables of medians over ``--repeat`` rounds and the load average.
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
from common import dump, floor_seconds, machine, timed_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED = 2026


def grade_once(code: Path, exercises: list[str], cache: Path) -> dict:
    """Runs ``course grade reference`` with the checkout ``code`` in a fresh process; its wall time and the score file's split."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "course", "grade", str(code / "reference"), "--out", out, "--seed", str(SEED)]
        for name in exercises:
            command += ["--exercise", name]
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(code)}
        run = timed_run(command, cwd=code, env=env)
        score = json.loads((Path(out) / "score.json").read_text())
    if score["score"] != score["max_score"]:
        raise SystemExit(f"the reference did not earn full marks with {code}: {score['score']}/{score['max_score']}")
    timings = score["timings"]
    return {"wall": run["wall_s"], "grader start": timings["grader_start"], "worker start": timings["worker_start"],
            "grader compile": timings["grader_compile"], "worker compile": timings["worker_compile"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exercise", action="append", default=[], help="only this exercise (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the median is shown)")
    parser.add_argument("--baseline", type=Path, help="another checkout of the course, graded side by side")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: expected a positive number")
    if args.baseline is not None and not (args.baseline / "graders").is_dir():
        parser.error(f"--baseline: {args.baseline} is not a checkout of the course")
    checkouts = {"this checkout": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    load_before = os.getloadavg()[0]
    runs: dict[str, list] = {"floor": []}
    for round_ in range(args.repeat):
        runs["floor"].append(floor_seconds(cwd=ROOT, env=dict(os.environ)))
        for name, code in checkouts.items():
            cache = Path(tempfile.mkdtemp(prefix="course-bench-cache-"))
            try:
                runs.setdefault(f"{name}, cold", []).append(grade_once(code, args.exercise, cache))
                runs.setdefault(f"{name}, class run", []).append(grade_once(code, args.exercise, cache))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    load_after = os.getloadavg()[0]
    floor = statistics.median(runs["floor"])
    what = ", ".join(args.exercise) or "all exercises"
    columns = list(runs["this checkout, cold"][0])
    print(f"floor (import jax, one operation): {floor:.2f} s (median of {args.repeat})")
    print(f"| {what} | " + " | ".join(f"{c} (s)" for c in columns) + " | wall / floor |")
    print("| --- " * (len(columns) + 2) + "|")
    for scenario, rows in runs.items():
        if scenario == "floor":
            continue
        medians = {c: statistics.median(r[c] for r in rows) for c in columns}
        print(f"| {scenario} | " + " | ".join(f"{medians[c]:.2f}" for c in columns) + f" | {medians['wall'] / floor:.1f} |")
    print(f"load average before {load_before:.2f}, after {load_after:.2f}")
    if args.json:
        dump({"machine": machine(), "exercises": what, "runs": runs, "load_average": [load_before, load_after]}, args.json)


if __name__ == "__main__":
    main()
