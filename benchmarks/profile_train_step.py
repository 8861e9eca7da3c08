"""Where the reference train_step spends its time on XLA CPU: a per-HLO-op profile.

Traces a few steps with ``jax.profiler`` (XLA's CPU runtime records every op it
runs, under its HLO name), sums the time per op, and prints the slowest ops
next to their instruction in the optimized HLO (which XLA dumps), the time per
kind (matmul fusions and dots, the rest), and the page faults and kernel time
per step. Runs as ``course train`` does unless ``--host-memory default``.

    python benchmarks/profile_train_step.py --config issue --steps 10 --top 25
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from train_throughput import BENCH_CONFIGS, jax_stepper  # noqa: E402

from course.host_memory import keep_freed_memory  # noqa: E402


def op_times(trace_dir: Path) -> collections.Counter:
    """Microseconds per HLO op name, summed over a perfetto trace written by ``jax.profiler``."""
    (trace,) = trace_dir.rglob("perfetto_trace.json.gz")
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    times: collections.Counter = collections.Counter()
    for event in events:
        op = event.get("args", {}).get("hlo_op")
        if event.get("ph") == "X" and op:
            times[op] += event["dur"]
    return times


def instructions(dump_dir: Path) -> dict[str, str]:
    """The optimized HLO of the train step: instruction name -> its definition."""
    (text,) = dump_dir.glob("*jit_train_step.cpu_after_optimizations.txt")
    entry = text.read_text().split("\nENTRY ", 1)[1]
    found = (re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (.*)$", line) for line in entry.splitlines())
    return {m.group(1): m.group(2) for m in found if m}


def is_matmul(definition: str) -> bool:
    """A dot, or a fusion handed to YNNPACK (XLA CPU's matmul library; it may carry elementwise work too)."""
    return " dot(" in definition or '"__ynn_fusion"' in definition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="issue", choices=sorted(BENCH_CONFIGS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--host-memory", choices=("keep", "default"), default="keep")
    args = parser.parse_args()
    if args.host_memory == "keep":
        keep_freed_memory()
    work = Path(tempfile.mkdtemp(prefix="profile_train_step_"))
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={work / 'hlo'}".strip()

    import jax
    import numpy as np

    config, batch = BENCH_CONFIGS[args.config]
    run, _ = jax_stepper(config, np.random.default_rng(0).integers(0, config.vocab_size, (batch, config.max_seq_len)))
    run(10)  # the heap growing to its working size

    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(args.steps)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    with jax.profiler.trace(str(work / "trace"), create_perfetto_trace=True):
        run(args.steps)

    times, hlo = op_times(work / "trace"), instructions(work / "hlo")
    per_step = {op: us / args.steps / 1e3 for op, us in times.items()}  # ms
    matmul = sum(ms for op, ms in per_step.items() if is_matmul(hlo.get(op, "")))
    print(f"{args.config}: {seconds / args.steps * 1e3:.1f} ms per step untraced "
          f"({args.steps * batch * config.max_seq_len / seconds:,.0f} tokens/s), host memory: {args.host_memory}")
    print(f"minor page faults per step {(after.ru_minflt - before.ru_minflt) / args.steps:,.0f}, "
          f"kernel CPU {1e3 * (after.ru_stime - before.ru_stime) / args.steps:.1f} ms per step, "
          f"user CPU {1e3 * (after.ru_utime - before.ru_utime) / args.steps:.1f} ms per step")
    total = sum(per_step.values())
    print(f"op time per step {total:.1f} ms: matmul fusions and dots {matmul:.1f} ms, the rest {total - matmul:.1f} ms")
    for op, ms in sorted(per_step.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{ms:7.2f} ms  {op:28s} {hlo.get(op, '?').split(', metadata=')[0][:150]}")
    print(f"trace and HLO dump: {work}")


if __name__ == "__main__":
    main()
