"""Helpers shared by the benchmarks: the machine's description and timing."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    import jax

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "date": time.strftime("%Y-%m-%d"),
    }


# The floor every grading benchmark is quoted against: a fresh process that imports jax and runs one operation.
FLOOR = "import jax.numpy as jnp; jnp.ones(3).sum().block_until_ready()"


def floor_seconds(*, cwd: str | os.PathLike[str], env: dict[str, str]) -> float:
    """Wall seconds of one :data:`FLOOR` process."""
    import sys

    return timed_run([sys.executable, "-c", FLOOR], cwd=cwd, env=env)["wall_s"]


def child_json(script: str, *args: str, cwd: str | os.PathLike[str] | None = None, env: dict[str, str]) -> dict:
    """Runs ``python -c script *args`` in a fresh process; the JSON object on its last line of output.

    Raises:
      SystemExit: the process failed (its error output is shown).
    """
    import sys

    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def timed(fn: Callable[[], object]) -> float:
    """Seconds that ``fn()`` takes (``fn`` must block until its work is done)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def dump(results: dict, path: str | None) -> None:
    text = json.dumps(results, indent=1)
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


def timed_run(command: list[str], *, cwd: str | os.PathLike[str], env: dict[str, str]) -> dict:
    """Runs ``command`` to the end; its wall and processor seconds, and its output.

    Raises:
      SystemExit: the command failed (a benchmark of failing tests measures nothing).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {cwd}:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": completed.stdout}
