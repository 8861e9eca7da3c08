"""JAX's persistent compilation cache for a student's runs of the visible tests.

A student's loop is edit, save, rerun. Most of what a run of ``pytest
exercises/<name>`` compiles is the same as last time: every operation run
eagerly on the fixtures' shapes, and every function the edit did not touch.
JAX can keep compiled programs on disk, keyed by the program itself, the
compile options, the devices and the jax and jaxlib versions, so a rerun loads
them instead of compiling again; only what the edit changed is compiled. A
stale or wrong entry cannot be loaded for another program, so the cache is
safe to keep, and safe to delete at any time. It is bounded: past
:data:`MAX_BYTES`, JAX deletes the programs loaded least recently (a semester
of edits would otherwise fill the disk, one program per change).

Only the visible tests turn it on (``exercises/conftest.py``), for the
student's own runs. The grader's worker never uses a persistent cache: it runs
untrusted code, and a cache one submission wrote would be read by the next.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import jax

ENV_VAR = "COURSE_COMPILATION_CACHE"  # a folder for the cache; "0" or "off" turns it off
OFF = frozenset({"0", "off"})
MAX_BYTES = 1 << 30  # of one cache folder: a few thousand of the course's programs


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where the visible tests keep compiled programs; ``None`` when the student turned the cache off.

    ``COURSE_COMPILATION_CACHE`` names the folder, or turns the cache off with
    ``0`` or ``off``. Unset, it is a per-user folder,
    ``$XDG_CACHE_HOME/jax-transformers-course/visible-tests/jax-<version>``
    (``~/.cache`` when ``XDG_CACHE_HOME`` is unset); one folder per jax
    version, since an upgrade makes every older entry useless.
    """
    chosen = environ.get(ENV_VAR, "").strip()
    if chosen.lower() in OFF:
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jax-transformers-course" / "visible-tests" / f"jax-{jax.__version__}"


def use_compilation_cache(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Turns on JAX's persistent compilation cache in :func:`cache_dir`, for every program however small.

    Must run before the first compilation of the process. Returns the folder,
    or ``None`` (and changes nothing) when the cache is turned off.
    """
    folder = cache_dir(environ)
    if folder is None:
        return None
    persist_compilations(folder)
    return folder


def persist_compilations(folder: str | os.PathLike[str]) -> None:
    """Keeps every program this process compiles in ``folder``, the least recently loaded deleted past :data:`MAX_BYTES`.

    Must run before the first compilation of the process.
    """
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # JAX's defaults keep only programs that took a second to compile; the
    # tests' hundred small ones take milliseconds each, and they are the cost.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)  # eviction locks the folder with filelock
