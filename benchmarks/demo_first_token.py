"""Benchmark: the compiled demo on a first-ever run, as ``course generate`` shows it.

Each round starts a fresh process with JAX's persistent compilation cache off
(a first run: nothing compiled yet), loads ``course/demo/model.jaxexport``
and times, for the prompt ``"def "`` at temperature 0.8:

- the first token of ``compiled_demo.stream`` from the end of loading (the
  prefill's compilation included), and the second token after the first (the
  decoding program's compilation);
- then, everything compiled, the sustained rate of a ``--tokens``-token
  stream, with top-k 40 and with every token kept (``course generate``'s
  default); it passes the 128-token context, so the cache restarts every 65 tokens.

``--baseline DIR`` alternates with another checkout's code, for a side-by-side comparison.

Usage: ``python benchmarks/demo_first_token.py [--rounds N] [--tokens N] [--baseline DIR]``.
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
import json, sys, time
import jax
import numpy as np
jax.config.update("jax_enable_compilation_cache", False)
from course import compiled_demo
from course.host_memory import keep_freed_memory
keep_freed_memory()  # as `course generate` runs
prompt, tokens = np.frombuffer(b"def ", np.uint8).astype(np.int32), int(sys.argv[1])
started = time.perf_counter()
demo = compiled_demo.load()
loaded = time.perf_counter()
stream = compiled_demo.stream(demo, prompt, 2, seed=0, temperature=0.8, top_k=40)
next(stream)
first = time.perf_counter()
next(stream)
second = time.perf_counter()
rates = {}
for top_k in (40, None):
    began = time.perf_counter()
    made = sum(1 for _ in compiled_demo.stream(demo, prompt, tokens, seed=1, temperature=0.8, top_k=top_k))
    rates[f"top_k {top_k}"] = made / (time.perf_counter() - began)
print(json.dumps({"load": loaded - started, "first_token": first - loaded, "second_token": second - first, **rates}))
"""


def once(code: Path, tokens: int) -> dict:
    return child_json(CHILD, str(tokens), cwd=code, env={**os.environ, "PYTHONPATH": str(code)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=5000, help="new tokens of each sustained-rate stream")
    parser.add_argument("--baseline", type=Path, help="another checkout of the course, measured alternately")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: expected a positive number")
    if args.tokens < 2:
        parser.error("--tokens: expected at least 2")
    checkouts = {"this checkout": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    for _ in range(args.rounds):  # alternating, so that both see the same load
        for name, code in checkouts.items():
            runs[name].append(once(code, args.tokens))
    print("| checkout | first token after loading (s), each round | second token after the first (s) | "
          "tokens/s, top-k 40 | tokens/s, every token kept | loading (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in runs.items():
        def median(field, digits):
            return f"{statistics.median(r[field] for r in rows):,.{digits}f}"
        firsts = ", ".join(f"{r['first_token']:.2f}" for r in rows)
        print(f"| {name} | {firsts} (median {median('first_token', 2)}) | {median('second_token', 2)} | "
              f"{median('top_k 40', 0)} | {median('top_k None', 0)} | {median('load', 2)} |")
    print(f"medians of {args.rounds} rounds, {args.tokens} tokens per stream")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
