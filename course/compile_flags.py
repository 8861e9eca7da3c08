"""XLA flags that compile the many small programs of tests and grading quickly on a CPU, without importing JAX.

A test run or a grading compiles one program per function, shape and
transformation and runs each only a few times, so XLA's CPU compiler, not the
computation, takes most of its time. LLVM's optimisations and the new fusion
emitters cost most of that compilation: a Transformer block's VJP compiles in
about 0.8 s with XLA's defaults and 0.2 s with these flags on a 2-core machine
(``benchmarks/compile_flags.py``). They change how the code is generated, not
what it computes (no fast math), so outputs stay within the course's tolerances.
Training and the notebooks keep XLA's defaults: they run one program for long.
XLA reads the flags when JAX starts its backends, so set them before that.
"""

from __future__ import annotations

import os

# As options of one compilation (``jax.jit(f).lower(...).compile(compiler_options=...)``) ...
FAST_COMPILATION_OPTIONS = {
    "xla_backend_optimization_level": 0,  # LLVM -O0 (on a GPU too): the programs are tiny
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_enable_concurrency_optimized_scheduler": False,
}
# ... and as XLA_FLAGS, for every compilation of a process.
FAST_COMPILATION = tuple(f"--{name}={str(value).lower()}" for name, value in FAST_COMPILATION_OPTIONS.items())


def _name(flag: str) -> str:
    return flag.partition("=")[0]


def with_fast_compilation(flags: str) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) plus :data:`FAST_COMPILATION`; a flag already there keeps its value."""
    parts = flags.split()
    present = {_name(f) for f in parts}
    return " ".join([*parts, *(f for f in FAST_COMPILATION if _name(f) not in present)])


def request_fast_compilation() -> None:
    """Adds :data:`FAST_COMPILATION` to this process's ``XLA_FLAGS`` (before JAX starts its backends)."""
    os.environ["XLA_FLAGS"] = with_fast_compilation(os.environ.get("XLA_FLAGS", ""))
