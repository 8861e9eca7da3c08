"""Training throughput of the reference train_step against the same model in PyTorch eager.

Each framework trains in its own process, as each would be run: JAX as
``course train`` runs it (with ``course.host_memory.keep_freed_memory()``;
``--host-memory default`` leaves glibc's allocator as it comes), PyTorch as it
comes. Both warm up (compilation, the allocators' working size), then the
rounds alternate between the two processes, a few steps each on the same
batch, so both see the same machine load. Reports the medians over rounds,
their ratio, the minor page faults per step, and the model FLOPs utilization
against a measured float32 matmul peak. Needs the ``bench`` extra (torch, CPU
build).

    python benchmarks/train_throughput.py --configs issue,small,demo --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import dump, machine, median, timed  # noqa: E402

from course.model import CONFIGS, TransformerConfig  # noqa: E402

# The model named in the issue that asked for this benchmark, besides the course's own configs.
BENCH_CONFIGS = {"issue": (TransformerConfig(vocab_size=128, max_seq_len=128, d_model=128, num_heads=4, num_layers=2, d_ff=512), 32)}
BENCH_CONFIGS |= {name: (CONFIGS[name], 32) for name in ("small", "demo")}


def model_flops_per_step(config: TransformerConfig, batch: int) -> float:
    """Training FLOPs of one step: 6 per parameter per token plus attention (PaLM, appendix B)."""
    d, L, T, V, F = config.d_model, config.num_layers, config.max_seq_len, config.vocab_size, config.d_ff
    params = L * (4 * d * d + 2 * d * F) + d * V  # matmul weights (the embedding lookup is free)
    return batch * T * (6 * params + 6 * L * T * d)  # attention: 12 * L * T * d / 2 for the causal half


def matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """Achieved float32 FLOP/s of one large jitted matmul: the practical peak of this device."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return 2 * n**3 / median([timed(lambda: f(a).block_until_ready()) for _ in range(repeats)])


def jax_stepper(config: TransformerConfig, tokens: np.ndarray):
    """The reference train_step on the course's model; returns (run n steps, compile seconds)."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from course import submission
    from course.model import TransformerLM

    submission.activate(submission.repo_root() / "reference")
    train_step = submission.exercise_module("training").train_step
    model = TransformerLM(config, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
    batch = jnp.asarray(tokens)
    compile_seconds = timed(lambda: train_step(model, optimizer, batch).block_until_ready())
    return lambda n: [train_step(model, optimizer, batch) for _ in range(n)][-1].block_until_ready(), compile_seconds


def torch_stepper(config: TransformerConfig, tokens: np.ndarray):
    """The same model and AdamW step in PyTorch eager; returns (run n steps, first-step seconds)."""
    import torch
    from torch_model import TorchTransformerLM
    from torch_model import train_step as torch_step

    torch.manual_seed(0)
    model = TorchTransformerLM(config.vocab_size, config.max_seq_len, config.d_model, config.num_heads, config.num_layers, config.d_ff)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.as_tensor(tokens)
    first_seconds = timed(lambda: torch_step(model, optimizer, batch))
    return lambda n: [torch_step(model, optimizer, batch) for _ in range(n)], first_seconds


def worker(framework: str, name: str, steps: int, warmup: int, host_memory: str) -> None:
    """A child process: builds one framework's step, then answers one timed round per line on stdin."""
    if framework == "jax" and host_memory == "keep":
        from course.host_memory import keep_freed_memory

        keep_freed_memory()
    config, batch = BENCH_CONFIGS[name]
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (batch, config.max_seq_len))
    run, first_seconds = (jax_stepper if framework == "jax" else torch_stepper)(config, tokens)
    run(warmup)
    info = {"first_step_s": first_seconds}
    if framework == "torch":
        import torch

        info |= {"torch": torch.__version__, "threads": torch.get_num_threads()}
    print(json.dumps(info), flush=True)
    for _ in sys.stdin:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        seconds = timed(lambda: run(steps))
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        print(json.dumps({"tokens_per_s": steps * batch * config.max_seq_len / seconds, "faults_per_step": faults / steps}), flush=True)


def start(framework: str, name: str, args: argparse.Namespace) -> tuple[subprocess.Popen, dict]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--worker", framework, "--configs", name, "--steps", str(args.steps),
         "--warmup", str(args.warmup), "--host-memory", args.host_memory],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    return child, json.loads(child.stdout.readline())


def timed_round(child: subprocess.Popen) -> dict:
    time.sleep(0.2)  # the other process's worker threads stop spin-waiting and go to sleep
    child.stdin.write("round\n")
    child.stdin.flush()
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"the {child.args[3]} worker exited with status {child.wait()}")
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="issue,small,demo")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per round and framework")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps after the first, per framework")
    parser.add_argument("--host-memory", choices=("keep", "default"), default="keep",
                        help="the JAX process: keep = course train's allocator setting; default = glibc's own")
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.configs, args.steps, args.warmup, args.host_memory)
    for name in args.configs.split(","):
        if name not in BENCH_CONFIGS:
            parser.error(f"--configs: unknown config {name!r}; known: {', '.join(BENCH_CONFIGS)}")

    peak = matmul_peak()
    results = {"machine": machine(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "host_memory": args.host_memory,
               "matmul_peak_gflops": peak / 1e9, "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
               "configs": {}}
    for name in args.configs.split(","):
        config, batch = BENCH_CONFIGS[name]
        (jax_child, jax_info), (torch_child, torch_info) = start("jax", name, args), start("torch", name, args)
        results |= {"torch": torch_info["torch"], "torch_threads": torch_info["threads"]}
        rounds = {"jax": [], "torch": []}
        for _ in range(args.rounds):
            rounds["jax"].append(timed_round(jax_child))
            rounds["torch"].append(timed_round(torch_child))
        for child in (jax_child, torch_child):
            child.stdin.close()
            child.wait()
        rates = {k: [r["tokens_per_s"] for r in v] for k, v in rounds.items()}
        flops_per_token = model_flops_per_step(config, batch) / (batch * config.max_seq_len)
        results["configs"][name] = {
            "config": str(config), "batch": batch,
            "jax_tokens_per_s": median(rates["jax"]), "torch_tokens_per_s": median(rates["torch"]),
            "jax_over_torch": median(rates["jax"]) / median(rates["torch"]),
            "jax_compile_s": jax_info["first_step_s"],
            "jax_mfu_vs_matmul_peak": median(rates["jax"]) * flops_per_token / peak,
            "torch_mfu_vs_matmul_peak": median(rates["torch"]) * flops_per_token / peak,
            "jax_minor_faults_per_step": median([r["faults_per_step"] for r in rounds["jax"]]),
            "torch_minor_faults_per_step": median([r["faults_per_step"] for r in rounds["torch"]]),
            "jax_rates": rates["jax"], "torch_rates": rates["torch"],
        }
        print(name, {k: v for k, v in results["configs"][name].items() if not k.endswith("rates")}, flush=True)
    dump(results, args.json)


if __name__ == "__main__":
    main()
