"""What course.host_memory's setting costs in memory and buys in speed, on the real training loop.

Runs ``course.train.train`` (the reference submission, a named run, evaluation
and checkpoints left out) in a fresh process per measurement, alternating a
process with ``keep_freed_memory()`` and one with glibc's allocator as it
comes. Reports each process's peak resident memory (``ru_maxrss``, which
includes loading the corpus) and the median tokens/s of its logged intervals
after the first two (compilation, warm-up).

    python benchmarks/train_memory.py --run small --steps 150 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import dump, machine, median  # noqa: E402

CHILD = r"""
import dataclasses, json, resource, statistics, sys, tempfile
from course.host_memory import keep_freed_memory
mode, run, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "keep":
    keep_freed_memory()
from course import submission
from course.train import RUNS, train
submission.activate(submission.repo_root() / "reference")
config = dataclasses.replace(RUNS[run], steps=steps, eval_every=10**9, checkpoint_every=10**9)
rates = []
with tempfile.TemporaryDirectory() as out:
    train(config, out, progress=lambda metrics: rates.append(metrics["tokens_per_second"]))
print(json.dumps({"tokens_per_s": statistics.median(rates[2:]),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, run: str, steps: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, run, str(steps)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="small", help="a named run of course.train.RUNS")
    parser.add_argument("--steps", type=int, default=150, help="at least 4 logged intervals (log_every steps each)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {"keep": [], "default": []}
    for _ in range(args.repeats):
        for mode in results:
            results[mode].append(measure(mode, args.run, args.steps))
    summary = {mode: {key: median([r[key] for r in runs]) for key in ("tokens_per_s", "peak_rss_mib")} for mode, runs in results.items()}
    dump({"machine": machine(), "run": args.run, "steps": args.steps, "runs": results, "medians": summary}, args.json)


if __name__ == "__main__":
    main()
