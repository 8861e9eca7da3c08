"""Benchmark: the compiled demo's first token on a first-ever run, as ``course generate`` shows it.

Each round starts a fresh process with JAX's persistent compilation cache off
(a first run: nothing compiled yet), loads ``course/demo/model.jaxexport``
and times the first token of ``compiled_demo.stream`` for the prompt ``"def "``
from the end of loading (the prefill's compilation included). ``--baseline
DIR`` alternates with another checkout's code, for a side-by-side comparison.

Usage: ``python benchmarks/demo_first_token.py [--rounds N] [--baseline DIR]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import child_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import json, time
import jax
import numpy as np
jax.config.update("jax_enable_compilation_cache", False)
from course import compiled_demo
started = time.perf_counter()
demo = compiled_demo.load()
loaded = time.perf_counter()
next(compiled_demo.stream(demo, np.frombuffer(b"def ", np.uint8).astype(np.int32), 2, seed=0, temperature=0.8, top_k=40))
print(json.dumps({"load": loaded - started, "first_token": time.perf_counter() - loaded}))
"""


def once(code: Path) -> dict:
    return child_json(CHILD, cwd=code, env={**os.environ, "PYTHONPATH": str(code)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout of the course, measured alternately")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: expected a positive number")
    checkouts = {"this checkout": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    for _ in range(args.rounds):  # alternating, so that both see the same load
        for name, code in checkouts.items():
            runs[name].append(once(code))
    print("| checkout | first token after loading (s), each round | median | loading (s) |")
    print("| --- | --- | --- | --- |")
    for name, rows in runs.items():
        firsts = [r["first_token"] for r in rows]
        print(f"| {name} | {', '.join(f'{x:.2f}' for x in firsts)} | {statistics.median(firsts):.2f} | "
              f"{statistics.median(r['load'] for r in rows):.2f} |")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
