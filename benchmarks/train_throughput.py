"""Training throughput of the reference train_step against the same model in PyTorch eager.

Each round times a few JAX steps and then a few PyTorch steps on the same
batch shapes, so both see the same machine load; the medians over rounds and
their ratio are reported, with the model FLOPs utilization against a measured
float32 matmul peak. Needs the ``bench`` extra (torch, CPU build).

By default the process runs as ``course train`` does, with
``course.host_memory.keep_freed_memory()``; ``--host-memory default`` leaves
glibc's allocator as it comes (the setting is process-wide, so it applies to
both frameworks alike).

    python benchmarks/train_throughput.py --configs issue,small,demo --rounds 7
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from common import dump, machine, median, timed  # noqa: E402
from torch_model import TorchTransformerLM  # noqa: E402
from torch_model import train_step as torch_step  # noqa: E402

from course import submission  # noqa: E402
from course.host_memory import keep_freed_memory  # noqa: E402
from course.model import CONFIGS, TransformerConfig, TransformerLM  # noqa: E402

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
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return 2 * n**3 / median([timed(lambda: f(a).block_until_ready()) for _ in range(repeats)])


def minor_faults() -> int:
    """Page faults of this process so far that the kernel served without disk I/O (mapping fresh pages)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="issue,small,demo")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per round and framework")
    parser.add_argument("--host-memory", choices=("keep", "default"), default="keep",
                        help="keep: course train's allocator setting; default: glibc's own")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.host_memory == "keep" and not keep_freed_memory():
        parser.error("--host-memory keep: this C library is not glibc; use --host-memory default")
    submission.activate(submission.repo_root() / "reference")
    from exercises.training.training import train_step

    torch.manual_seed(0)
    peak = matmul_peak()
    results = {"machine": machine(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "xla_flags": os.environ.get("XLA_FLAGS", ""), "host_memory": args.host_memory,
               "matmul_peak_gflops": peak / 1e9, "configs": {}}
    for name in args.configs.split(","):
        config, batch = BENCH_CONFIGS[name]
        tokens = np.random.default_rng(0).integers(0, config.vocab_size, (batch, config.max_seq_len))
        model = TransformerLM(config, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
        jax_batch = jnp.asarray(tokens)
        compile_seconds = timed(lambda: train_step(model, optimizer, jax_batch).block_until_ready())
        twin = TorchTransformerLM(config.vocab_size, config.max_seq_len, config.d_model, config.num_heads, config.num_layers, config.d_ff)
        torch_optimizer = torch.optim.AdamW(twin.parameters(), lr=1e-3)
        torch_batch = torch.as_tensor(tokens)
        torch_step(twin, torch_optimizer, torch_batch)  # warm-up
        jax_rates, torch_rates, faults = [], [], {"jax": 0, "torch": 0}
        for _ in range(args.rounds):
            before = minor_faults()
            seconds = timed(lambda: [train_step(model, optimizer, jax_batch) for _ in range(args.steps)][-1].block_until_ready())
            jax_rates.append(args.steps * batch * config.max_seq_len / seconds)
            faults["jax"] += minor_faults() - before
            before = minor_faults()
            seconds = timed(lambda: [torch_step(twin, torch_optimizer, torch_batch) for _ in range(args.steps)])
            torch_rates.append(args.steps * batch * config.max_seq_len / seconds)
            faults["torch"] += minor_faults() - before
        flops_per_token = model_flops_per_step(config, batch) / (batch * config.max_seq_len)
        results["configs"][name] = {
            "config": str(config), "batch": batch,
            "jax_tokens_per_s": median(jax_rates), "torch_tokens_per_s": median(torch_rates),
            "jax_over_torch": median(jax_rates) / median(torch_rates),
            "jax_compile_s": compile_seconds,
            "jax_mfu_vs_matmul_peak": median(jax_rates) * flops_per_token / peak,
            "torch_mfu_vs_matmul_peak": median(torch_rates) * flops_per_token / peak,
            "jax_minor_faults_per_step": faults["jax"] / (args.rounds * args.steps),
            "torch_minor_faults_per_step": faults["torch"] / (args.rounds * args.steps),
            "jax_rates": jax_rates, "torch_rates": torch_rates,
        }
        print(name, {k: v for k, v in results["configs"][name].items() if not k.endswith("rates")}, flush=True)
    dump(results, args.json)


if __name__ == "__main__":
    main()
