"""Keeping freed host memory in the process, so XLA on CPU stops page-faulting every step.

XLA's CPU runtime allocates one scratch buffer per execution of a compiled
program (186 MiB for a training step of the course's ``small`` model at
batch 32) and frees it when the execution ends. glibc's ``malloc`` serves a
block that large from a fresh ``mmap`` whenever the caller is not the main
thread (which XLA's worker threads never are), and ``free`` unmaps it, so on
every step the kernel maps, faults in and zeroes some 47,000 pages again:
about a third of the step's CPU time on a 2-core machine (BENCHMARKS.md).

With a single malloc arena, no ``mmap`` for large blocks and no trimming of
the heap's top, the freed buffer stays in the heap and the next step reuses
it: the page faults disappear. The price is that the process keeps its peak
heap size until it exits, which is what a training or generation process
wants anyway.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
    """Tells glibc's allocator to keep freed memory for reuse; a no-op elsewhere.

    Call it before JAX's first computation: XLA's threads pick their malloc
    arena on their first allocation, and a thread that already holds its own
    arena keeps mapping large blocks afresh.

    Returns:
      Whether the allocator was reconfigured (``False`` on macOS, Windows or a
      non-glibc Linux such as Alpine).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the running process's C library
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
