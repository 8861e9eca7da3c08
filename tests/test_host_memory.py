"""course.host_memory: XLA's per-execution scratch buffer is reused instead of faulted in afresh."""

import json
import platform
import subprocess
import sys

import pytest
from click.testing import CliRunner

import course.cli

# A program whose scratch buffer (the 5000 x 5000 float32 product in the middle, 100 MB) is
# larger than a malloc arena of a non-main thread (64 MB), so glibc maps it with
# mmap on every execution unless told otherwise.
PROBE = r"""
import json, resource, sys, time
from course.host_memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
import jax, jax.numpy as jnp, numpy as np
f = jax.jit(lambda x: (x @ x.T) @ x)
x = jnp.asarray(np.random.default_rng(0).standard_normal((5000, 64)), jnp.float32)
f(x).block_until_ready()  # compilation
faults = []
for _ in range(6):
    # XLA frees the scratch buffer shortly after the result is ready; waiting for that keeps one
    # buffer alive at a time, so the heap need not grow to hold several.
    time.sleep(0.1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# The median: the first call may still grow the heap, and on a busy machine one call may run on another of XLA's
# threads, whose malloc arena has not held the buffer yet (seen in CI: one call of five faulted every page).
faults = sorted(faults[1:])[len(faults[1:]) // 2]
print(json.dumps({"applied": applied, "faults_per_call": faults}))
"""
SCRATCH_PAGES = 5000 * 5000 * 4 // 4096


def probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_the_scratch_buffer_is_reused_instead_of_faulted_in_each_call():
    default, kept = probe("default"), probe("keep")
    # Without the setting every call maps its scratch buffer afresh: one fault per page.
    assert default["faults_per_call"] > 0.5 * SCRATCH_PAGES, default
    assert kept["applied"] is True
    assert kept["faults_per_call"] < 0.05 * SCRATCH_PAGES, kept


def test_the_course_command_applies_it_before_any_verb(monkeypatch):
    calls = []
    monkeypatch.setattr(course.cli, "keep_freed_memory", lambda: calls.append(True))
    result = CliRunner().invoke(course.cli.main, ["check", "--help"])
    assert result.exit_code == 0, result.output
    assert calls == [True]
