"""What changes the reference train_step's speed on XLA CPU: one process per variant.

XLA flags and the allocator setting only take effect in a fresh process, so
each variant runs in its own child; the baseline (the course's own setting:
``course.host_memory.keep_freed_memory()``, XLA's default flags) runs first and
last to show the drift of the machine over the experiment. Reports median
tokens/s per variant, its ratio to the mean of the two baselines, and the
child's minor page faults and kernel CPU time per step.

    python benchmarks/xla_cpu_variants.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import dump, machine  # noqa: E402

CHILD = r"""
import json, os, resource, sys, time, statistics
from course.host_memory import keep_freed_memory
variant, rounds, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if variant != "glibc's default allocator":
    keep_freed_memory()
import jax, jax.numpy as jnp, numpy as np, optax
from flax import nnx
from course import submission
from course.model import TransformerConfig, TransformerLM
submission.activate(submission.repo_root() / "reference")
from exercises.training.training import train_step
from exercises.loss.loss import next_token_loss
dtype = jnp.bfloat16 if variant == "bfloat16 params" else jnp.float32
config = TransformerConfig(vocab_size=128, max_seq_len=128, d_model=128, num_heads=4, num_layers=2, d_ff=512)
model = TransformerLM(config, rngs=nnx.Rngs(0))
if dtype != jnp.float32:
    nnx.update(model, jax.tree.map(lambda x: x.astype(dtype), nnx.state(model, nnx.Param)))
optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
step = train_step
if variant == "donate model and optimizer":
    # The exercise's step body, compiled with the model and optimizer state donated.
    def body(model, optimizer, tokens):
        loss, grads = nnx.value_and_grad(lambda m: next_token_loss(m(tokens), tokens))(model)
        optimizer.update(model, grads)
        return loss
    step = nnx.jit(body, donate_argnums=(0, 1))
batch = jnp.asarray(np.random.default_rng(0).integers(0, 128, (32, 128)))
step(model, optimizer, batch).block_until_ready()
rates = []
before = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(model, optimizer, batch)
    loss.block_until_ready()
    rates.append(steps * 32 * 128 / (time.perf_counter() - start))
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tokens_per_s": statistics.median(rates),
                  "minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / (rounds * steps),
                  "system_ms_per_step": 1e3 * (after.ru_stime - before.ru_stime) / (rounds * steps)}))
"""

VARIANTS = {
    "baseline": {},
    "glibc's default allocator": {},
    "donate model and optimizer": {},
    "bfloat16 params": {},
    "legacy (non-thunk) CPU runtime": {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=false"},
    "single-threaded Eigen": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"},
}


def run(variant: str, env: dict, rounds: int, steps: int) -> dict | str:
    done = subprocess.run([sys.executable, "-c", CHILD, variant, str(rounds), str(steps)],
                          env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        return "failed: " + done.stderr.strip().splitlines()[-1]
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {name: run(name, env, args.rounds, args.steps) for name, env in VARIANTS.items()}
    results["baseline (again)"] = run("baseline", {}, args.rounds, args.steps)
    base = (results["baseline"]["tokens_per_s"] + results["baseline (again)"]["tokens_per_s"]) / 2
    ratios = {k: v["tokens_per_s"] / base for k, v in results.items() if isinstance(v, dict)}
    dump({"machine": machine(), "variants": results, "ratio_to_baseline": ratios}, args.json)


if __name__ == "__main__":
    main()
