"""Compile time of the reference train_step: cold, and with JAX's persistent compilation cache.

Each measurement is a fresh Python process that builds the model and times
its first train_step (tracing + compilation + one step) and its second (one
step). The first process fills an empty cache directory; the next ones read it.

    python benchmarks/compile_time.py --config small --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import dump, machine, median  # noqa: E402

CHILD = r"""
import json, sys, time
import jax
cache = sys.argv[2]
if cache:
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
import jax.numpy as jnp, numpy as np, optax
from flax import nnx
from course import submission
from course.model import CONFIGS, TransformerLM
submission.activate(submission.repo_root() / "reference")
from exercises.training.training import train_step
config = CONFIGS[sys.argv[1]]
model = TransformerLM(config, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
batch = jnp.asarray(np.random.default_rng(0).integers(0, config.vocab_size, (32, config.max_seq_len)))
start = time.perf_counter(); train_step(model, optimizer, batch).block_until_ready(); first = time.perf_counter() - start
start = time.perf_counter(); train_step(model, optimizer, batch).block_until_ready(); second = time.perf_counter() - start
print(json.dumps({"first_step_s": first, "second_step_s": second}))
"""


def run(config: str, cache: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, config, cache], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    cold = [run(args.config, "") for _ in range(args.runs)]
    with tempfile.TemporaryDirectory() as cache:
        filling = run(args.config, cache)
        warm = [run(args.config, cache) for _ in range(args.runs)]
    compile_of = lambda runs: median([r["first_step_s"] - r["second_step_s"] for r in runs])  # noqa: E731
    dump({"machine": machine(), "config": args.config,
          "cold_compile_s": compile_of(cold), "cache_filling_compile_s": filling["first_step_s"] - filling["second_step_s"],
          "persistent_cache_compile_s": compile_of(warm), "cold": cold, "warm": warm}, args.json)


if __name__ == "__main__":
    main()
