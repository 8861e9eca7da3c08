"""Benchmark: the student's loop, ``pytest exercises/<name>`` on a correct submission, against the floor.

The floor is the least any JAX program costs here: a fresh Python that imports
jax and runs one operation. A run of the visible tests cannot be cheaper, so
its time is reported as a ratio to the floor, measured in the same rounds: on a
shared, loaded machine the two move together, and the ratio is what stays.

Each round runs, for every exercise, the floor and then each variant, every one
a fresh process (``python -m pytest -q exercises/<name> -p no:cacheprovider``
with ``COURSE_SUBMISSION=reference``), and records its wall time and its
processor time (user and system, which depends less on the load).

Variants:

- ``before``: (with ``--before REV``) the tests, conftest and ``course`` of git
  revision ``REV``, exported to a temporary folder and run the same way;
- ``cold``: this tree with an empty persistent compilation cache: a student's
  first run, or a rerun after an edit that changed every compiled program;
- ``warm``: this tree with the cache filled by an earlier run: a rerun of
  unchanged code. An edit lands between the two: the programs it changed
  compile, everything else loads from the cache.

Before the rounds, one untimed run per exercise and variant, with the plugin
``benchmarks/pytest_phases.py``, fills the ``warm`` cache and records where the
time goes (startup, collection, tests; programs compiled and their tracing,
lowering and compilation time).

    python benchmarks/student_loop.py --before 3e23c7d [--rounds 5] [--exercise attention ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import dump, machine, median, timed_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from course import catalog  # noqa: E402
from course.testing.compilation_cache import ENV_VAR as CACHE_VAR  # noqa: E402

FLOOR = [sys.executable, "-c", "import jax, jax.numpy as jnp; jnp.ones(3).sum().block_until_ready()"]
# Settings of the caller that would change what is measured: a cache of its own, a device split.
DROPPED = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "XLA_FLAGS", "COURSE_SUBMISSION", CACHE_VAR)


def pytest_command(exercise: str, *plugins: str) -> list[str]:
    extra = [arg for plugin in plugins for arg in ("-p", plugin)]
    return [sys.executable, "-m", "pytest", "-q", f"exercises/{exercise}", "-p", "no:cacheprovider", *extra]


def phases_of(stdout: str) -> dict:
    """The ``PHASES {json}`` line that ``pytest_phases`` printed."""
    line = next(line for line in stdout.splitlines() if line.startswith("PHASES "))
    return json.loads(line.removeprefix("PHASES "))


def export(revision: str, folder: Path) -> Path:
    """The files of ``revision`` (``git archive``) in ``folder``, made for them."""
    folder.mkdir()
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


Where = Callable[[str], tuple[Path, dict[str, str]]]  # exercise -> (working directory, environment)


def base_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in DROPPED} | {"COURSE_SUBMISSION": "reference"}


def variants(before: Path | None, caches: Path) -> dict[str, Where]:
    """Where and with which environment each variant runs, per exercise."""
    base = base_environment()
    chosen: dict[str, Where] = {}
    if before is not None:
        chosen["before"] = lambda exercise: (before, base | {"PYTHONPATH": str(before)})

    def cold(exercise):
        return ROOT, base | {"PYTHONPATH": str(ROOT), CACHE_VAR: tempfile.mkdtemp(dir=caches)}

    chosen["cold"] = cold
    chosen["warm"] = lambda exercise: (ROOT, base | {"PYTHONPATH": str(ROOT), CACHE_VAR: str(caches / f"warm-{exercise}")})
    return chosen


def profile(exercises: list[str], chosen: dict[str, Where], plugin_path: str) -> dict:
    """One untimed run per exercise and variant with ``pytest_phases``: where the time goes.

    The ``warm`` cache is filled first, by a run of its own.
    """
    out = {}
    for exercise in exercises:
        cwd, env = chosen["warm"](exercise)
        timed_run(pytest_command(exercise), cwd=cwd, env=env)
        for name, where in chosen.items():
            cwd, env = where(exercise)
            env = env | {"PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{plugin_path}"}
            run = timed_run(pytest_command(exercise, "pytest_phases"), cwd=cwd, env=env)
            out.setdefault(exercise, {})[name] = phases_of(run["stdout"]) | {"wall_s": run["wall_s"]}
            print(f"profile {exercise:20s} {name:7s} {json.dumps(out[exercise][name])}", file=sys.stderr)
    return out


def rounds(exercises: list[str], chosen: dict[str, Where], n: int) -> dict:
    """``n`` rounds of (floor, each variant) per exercise; wall and processor seconds of every run."""
    floor_env = base_environment()
    times = {e: {k: [] for k in ("floor", *chosen)} for e in exercises}
    for r in range(n):
        for exercise in exercises:
            runs = {"floor": timed_run(FLOOR, cwd=ROOT, env=floor_env)}
            for name, where in chosen.items():
                cwd, env = where(exercise)
                runs[name] = timed_run(pytest_command(exercise), cwd=cwd, env=env)
            for name, run in runs.items():
                times[exercise][name].append({"wall_s": round(run["wall_s"], 3), "cpu_s": round(run["cpu_s"], 3)})
            print(f"round {r + 1}/{n} {exercise:20s} " + "  ".join(
                f"{k} {v['wall_s']:.2f}s" for k, v in runs.items()), f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return times


def summary(times: dict) -> dict:
    """Medians per exercise and variant, and their ratios to the floor's medians (wall and processor time)."""
    out = {}
    for exercise, by_variant in times.items():
        floor = {k: median([t[k] for t in by_variant["floor"]]) for k in ("wall_s", "cpu_s")}
        out[exercise] = {
            name: {
                **{k: round(median([t[k] for t in runs]), 3) for k in ("wall_s", "cpu_s")},
                **({} if name == "floor" else {
                    f"ratio_{k.removesuffix('_s')}": round(median([t[k] for t in runs]) / floor[k], 2) for k in floor
                }),
            }
            for name, runs in by_variant.items()
        }
    return out


def table(results: dict) -> str:
    """A Markdown table: per exercise, the floor's medians and each variant's medians and ratios."""
    variants_ = [v for v in next(iter(results.values())) if v != "floor"]
    head = "| exercise | floor wall / cpu (s) | " + " | ".join(f"{v} wall / cpu (s) | {v} ratio wall / cpu" for v in variants_) + " |"
    rows = [head, "|" + " --- |" * (2 + 2 * len(variants_))]
    for exercise, r in results.items():
        cells = [exercise, f"{r['floor']['wall_s']:.2f} / {r['floor']['cpu_s']:.2f}"]
        for v in variants_:
            cells += [f"{r[v]['wall_s']:.2f} / {r[v]['cpu_s']:.2f}", f"{r[v]['ratio_wall']:.2f}x / {r[v]['ratio_cpu']:.2f}x"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--exercise", action="append", help="one exercise (repeatable; default: all of the catalogue)")
    parser.add_argument("--before", metavar="REV", help="also run the visible tests of this git revision")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "student_loop.json"))
    args = parser.parse_args()
    exercises = args.exercise or [e.name for e in catalog.EXERCISES]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="student-loop-") as tmp:
        before = export(args.before, Path(tmp) / "before") if args.before else None
        caches = Path(tmp) / "caches"
        caches.mkdir()
        chosen = variants(before, caches)
        phases = profile(exercises, chosen, os.path.dirname(os.path.abspath(__file__)))
        times = rounds(exercises, chosen, args.rounds)
    results = summary(times)
    print(table(results), file=sys.stderr)
    dump({
        "machine": machine() | {"nproc": len(os.sched_getaffinity(0))},
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "before": args.before, "rounds": args.rounds, "floor_command": FLOOR[1:],
        "results": results, "phases": phases, "times": times,
    }, args.json)


if __name__ == "__main__":
    main()
