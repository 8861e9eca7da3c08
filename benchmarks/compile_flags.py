"""Benchmark: how long XLA takes to compile a grading's programs, with its default flags and the fast-compilation ones.

Each round starts one fresh process per flag set (interleaved: default, fast,
default, ...); the process compiles the VJP of the reference's
``DecoderBlock`` (outputs and the gradients of the input and every parameter,
as a grading case does) for ``--shapes`` different sizes, and reports the
seconds of JAX's tracing, lowering and XLA compilation (its monitoring
events) and one run of the compiled program. Prints the medians over rounds
and the ratio of each set to the defaults (``course/compile_flags.py``).

Usage: ``python benchmarks/compile_flags.py [--rounds N] [--shapes K] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import child_json, dump, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from course.compile_flags import FAST_COMPILATION  # noqa: E402

FLAG_SETS = {"XLA's defaults": "", "fast compilation": " ".join(FAST_COMPILATION)}

CHILD = r"""
import collections, json, sys, time
import numpy as np
import jax
from flax import nnx
from course import submission
submission.activate(sys.argv[1] + "/reference")
from exercises.transformer.transformer import DecoderBlock
from graders.runtime import transforms

events = collections.Counter()
jax.monitoring.register_event_duration_secs_listener(lambda e, d, **_: events.update({e.rsplit("/", 1)[-1]: d}))
rng = np.random.default_rng(0)
runs = []
for k in range(int(sys.argv[2])):
    H, d_head, T = 2, 4 + k, 6
    block = DecoderBlock(d_model=H * d_head, num_heads=H, d_ff=4 * H * d_head, rngs=nnx.Rngs(0))
    x = rng.standard_normal((2, T, H * d_head)).astype(np.float32)
    args = ((x,), {"mask": np.tril(np.ones((T, T), bool))})
    vjp = dict(transform="vjp", cotangent=rng.standard_normal(x.shape).astype(np.float32), compile=True)
    jax.block_until_ready(transforms.apply_module(block, "__call__", *args, **vjp))
    started = time.perf_counter()
    jax.block_until_ready(transforms.apply_module(block, "__call__", *args, **vjp))
    runs.append(time.perf_counter() - started)
print(json.dumps({"trace": events["jaxpr_trace_duration"], "lower": events["jaxpr_to_mlir_module_duration"],
                  "compile": events["backend_compile_duration"], "run": sum(runs)}))
"""


def measure(flags: str, shapes: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    return child_json(CHILD, str(ROOT), str(shapes), env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shapes", type=int, default=3, help="sizes of the block compiled per process")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args()
    if args.rounds < 1 or args.shapes < 1:
        parser.error("--rounds and --shapes: expected positive numbers")
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name in FLAG_SETS}
    for _ in range(args.rounds):
        for name, flags in FLAG_SETS.items():
            runs[name].append(measure(flags, args.shapes))
    load_after = os.getloadavg()[0]
    parts = list(next(iter(runs.values()))[0])
    medians = {name: {p: statistics.median(r[p] for r in rows) for p in parts} for name, rows in runs.items()}
    base = medians["XLA's defaults"]
    print(f"| {args.shapes} DecoderBlock VJPs | " + " | ".join(f"{p} (s)" for p in parts) + " | trace+lower+compile / defaults |")
    print("| --- " * (len(parts) + 2) + "|")
    for name, m in medians.items():
        ratio = (m["trace"] + m["lower"] + m["compile"]) / (base["trace"] + base["lower"] + base["compile"])
        print(f"| {name} | " + " | ".join(f"{m[p]:.3f}" for p in parts) + f" | {ratio:.2f} |")
    print(f"medians of {args.rounds} rounds; load average before {load_before:.2f}, after {load_after:.2f}")
    if args.json:
        dump({"machine": machine(), "flag_sets": FLAG_SETS, "runs": runs, "load_average": [load_before, load_after]}, args.json)


if __name__ == "__main__":
    main()
