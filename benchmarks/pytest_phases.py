"""A pytest plugin for ``benchmarks/student_loop.py``: where a run of the visible tests spends its time.

Loaded with ``-p pytest_phases`` (this folder on ``PYTHONPATH``), it prints one
line, ``PHASES {json}``, when the session ends:

- ``startup_s``: from the process's creation until pytest configured this
  plugin (Python, pytest and its plugins, the conftest: jax imported there);
- ``collect_s``: collection (the test modules and what they import, their
  module-level arrays);
- ``tests_s``: the tests themselves;
- ``programs``: XLA programs compiled or loaded from the persistent cache, with
  ``trace_s``, ``lower_s`` and ``compile_s`` (tracing to a jaxpr, lowering to
  StableHLO, and XLA's compilation or the cache's load) and ``cache_hits``;
- ``modules``: which of the heavy optional libraries were imported.
"""

from __future__ import annotations

import json
import sys
import time

import psutil

CREATED = psutil.Process().create_time()
EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "compile_s",
}
HEAVY = ("flax", "optax", "scipy")
phases: dict[str, float] = {}
counts = {"programs": 0, "cache_hits": 0, "trace_s": 0.0, "lower_s": 0.0, "compile_s": 0.0}


def _on_duration(event: str, seconds: float, **_) -> None:
    if event in EVENTS:
        counts[EVENTS[event]] += seconds
        counts["programs"] += event == "/jax/core/compile/backend_compile_duration"


def _on_event(event: str, **_) -> None:
    counts["cache_hits"] += event == "/jax/compilation_cache/cache_hits"


def pytest_configure(config) -> None:
    import jax

    phases["configured"] = time.time()
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    jax.monitoring.register_event_listener(_on_event)


def pytest_collection_finish(session) -> None:
    phases["collected"] = time.time()


def pytest_sessionfinish(session) -> None:
    end = time.time()
    report = {
        "startup_s": phases["configured"] - CREATED,
        "collect_s": phases["collected"] - phases["configured"],
        "tests_s": end - phases["collected"],
        **counts,
        "modules": [name for name in HEAVY if name in sys.modules],
    }
    print("\nPHASES " + json.dumps(report))
