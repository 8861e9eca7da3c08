"""The reference's outputs, computed once per grading seed and reused by every student graded with it.

Every student of a class run gets the same seed, so the same inputs (drawn
from the seed and the case's id), so the reference's answers to them are the
same too: the first grading computes them and stores them, the next ones read
them instead of compiling and running the reference again.

Only the trusted pytest process reads and writes the store. It lives in the
grader's cache folder (``graders.engine.grading.default_cache_dir``, private to
the grader's user), which a worker never sees: bubblewrap shows it nothing of
the machine, and the fallback's worker runs as a user that cannot search the
folder. A grading whose worker runs as the grader's own user (isolation
``none``) gets no store, since its worker could write one.

An entry is found by what determines it: the grading code's version
(:func:`graders.engine.grading.grader_version`: a changed suite, reference or
runtime starts afresh), the JAX version and platform, the seed, the case, the
call's label (which names the function, its transformation and anything about
it that is not an input, such as a module's sizes) and a digest of the inputs
(each array's dtype, shape and bytes, each other value's type and ``repr``).
An input the student's answer shaped is computed, never mixed up; an input
that cannot be digested (an object) is computed every time. Entries are the
worker protocol's frames (:mod:`graders.runtime.wire`: JSON and ``.npz``,
never pickles), written to a temporary name and renamed, so concurrent jobs
and an interrupted grading leave only whole entries.

The store is bounded (:func:`prune`): a seed's folder unused for
:data:`MAX_AGE_DAYS` goes, and so do the least recently used ones past
:data:`MAX_BYTES` (a student's ``course grade`` draws a new seed each run,
and every change of the grading code starts a new folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from graders.runtime import transforms, wire

T = TypeVar("T")
_ACTIVE: list[ReferenceStore] = []  # the pytest process's store, when its grading has one
MAX_AGE_DAYS = 30
MAX_BYTES = 1 << 30
IN_USE_SECONDS = 3600  # a seed used this recently may be a concurrent grading's: never removed for size
_PRUNED = ".pruned"  # in the stores' folder: its time is the last prune's (one an hour is enough)


class Undigestible(TypeError):
    """An input the store cannot identify by its value (an object): its call is computed every time."""


class ReferenceStore:
    """The stored reference outputs of one seed (folder ``root``), for the case :attr:`case` being run.

    Args:
      root: the folder of this grading code, JAX version, platform and seed.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.case = ""
        self.hits = 0
        self.misses = 0

    def outputs(self, label: str, inputs, compute: Callable[[], T]) -> T:
        """``compute()``'s outputs for these ``inputs``: read from the store, or computed and stored.

        Raises:
          Undigestible: an input is neither an array, a scalar, a string nor a container of them.
        """
        path = self.root / f"{_digest((self.case, label, inputs))}.frame"
        if path.is_file():
            stored = _read(path)
            if stored is not _MISSING:
                self.hits += 1
                return stored
        self.misses += 1
        result = compute()
        _write(path, result)
        return result


def activate(store: ReferenceStore | None) -> None:
    """Makes ``store`` the one :func:`outputs` uses in this process (``None``: none)."""
    _ACTIVE[:] = [store] if store is not None else []


def active() -> ReferenceStore | None:
    return _ACTIVE[0] if _ACTIVE else None


def outputs(label: str, inputs, compute: Callable[[], T]) -> T:
    """``compute()``, the reference's outputs for ``inputs``, through this process's store when it has one.

    Args:
      label: names the computation in the case: the function, its transformation and
        whatever else decides the outputs beyond ``inputs`` and the seed.
      inputs: every array and value the outputs depend on (arguments, weights, cotangent).
      compute: computes them: a tree of arrays, numbers, strings and ``None`` in tuples, lists and dicts.
    """
    store = active()
    if store is None:
        return compute()
    try:
        return store.outputs(label, inputs, compute)
    except Undigestible:
        return compute()


def module_outputs(module, method: str, args: tuple = (), kwargs: dict | None = None, *, transform: str | None = None,
                   cotangent=None, compile: bool = False):
    """``transforms.apply_module(module, method, ...)`` through the store: the reference module's outputs.

    The label is the module's class, method and transformation; its weights are
    inputs. Its other attributes (sizes) must follow from the case and seed,
    as they do in every suite (drawn from ``suite_rng``).
    """
    from course.params import param_arrays

    label = f"{type(module).__name__}.{method}/{transform}"
    return outputs(label, (param_arrays(module), tuple(args), dict(kwargs or {}), cotangent),
                   lambda: transforms.apply_module(module, method, args, kwargs, transform=transform, cotangent=cotangent,
                                                   compile=compile))


_MISSING = object()


def _digest(tree) -> str:
    digest = hashlib.sha256()
    _feed(digest, tree)
    return digest.hexdigest()


def _feed(digest, tree) -> None:
    if isinstance(tree, tuple | list):
        digest.update(f"{type(tree).__name__}{len(tree)}(".encode())
        for item in tree:
            _feed(digest, item)
        digest.update(b")")
    elif isinstance(tree, dict):
        digest.update(f"dict{len(tree)}(".encode())
        for key in sorted(tree, key=repr):
            _feed(digest, key)
            _feed(digest, tree[key])
        digest.update(b")")
    elif wire.is_array(tree):
        array = np.ascontiguousarray(np.asarray(tree))
        digest.update(f"array{array.dtype.name}{array.shape}:".encode())
        digest.update(array.tobytes())
    elif tree is None or isinstance(tree, bool | int | float | str | np.dtype):
        digest.update(f"{type(tree).__name__}:{tree!r};".encode())
    else:
        raise Undigestible(f"cannot identify a {type(tree).__name__} by its value")


def _read(path: Path):
    """The stored outputs, or ``_MISSING`` when the entry cannot be read (it is then computed again)."""
    try:
        header, arrays = wire.unpack_frame(path.read_bytes())
        return wire.decode(header["outputs"], arrays)
    except (OSError, wire.ProtocolError, KeyError, ValueError):
        return _MISSING


def _write(path: Path, result) -> None:
    """Stores ``result``; outputs the wire cannot carry (an object) are not stored."""
    arrays: dict = {}
    try:
        header = {"outputs": wire.encode(result, arrays)}
    except TypeError:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", suffix=".tmp", delete=False) as file:
        file.write(wire.pack(header, arrays))
    os.replace(file.name, path)


def prune(stores: Path, used: Path) -> list[Path]:
    """Marks the seed folder ``used`` (``stores/<grading code>/seed-<n>``) as used now, then, at most once an hour,
    removes the seed folders under ``stores`` unused for :data:`MAX_AGE_DAYS`, and the least recently used
    ones while the rest holds more than :data:`MAX_BYTES`; returns what it removed.

    A folder is renamed before it is deleted, so a grading that still reads it
    finds nothing (and computes) rather than half of it. Concurrent gradings
    may prune at once: each folder goes once, and one in use is kept.
    """
    used.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.utime(used)
    marker, now = stores / _PRUNED, time.time()
    if marker.exists() and now - marker.stat().st_mtime < IN_USE_SECONDS:
        return []
    marker.touch()
    for trash in stores.glob("*/.removed-*"):  # what an interrupted prune left
        shutil.rmtree(trash, ignore_errors=True)
    seeds = sorted((u for u in map(_usage, stores.glob("*/seed-*")) if u), reverse=True)  # most recently used first
    removed, total = [], 0
    for last_used, size, seed in seeds:
        age = now - last_used
        if age > MAX_AGE_DAYS * 86400 or (total + size > MAX_BYTES and age > IN_USE_SECONDS):
            if _remove(seed):
                removed.append(seed)
        else:
            total += size
    for code in stores.iterdir():  # a grading code's folder left empty
        if code.is_dir() and not code.is_symlink() and not any(code.iterdir()) and now - code.stat().st_mtime > IN_USE_SECONDS:
            with contextlib.suppress(OSError):  # a grading has just put a seed in it
                code.rmdir()
    return removed


def _usage(seed: Path) -> tuple[float, int, Path] | None:
    """When ``seed`` was last used and how many bytes it holds; ``None`` when it is no seed folder (or gone meanwhile)."""
    try:
        if seed.is_symlink() or not seed.is_dir():
            return None
        return seed.stat().st_mtime, sum(f.stat().st_size for f in seed.rglob("*") if f.is_file()), seed
    except FileNotFoundError:  # another grading's prune removed it
        return None


def _remove(folder: Path) -> bool:
    """Removes ``folder``; ``False`` when another grading's prune got to it first."""
    trash = folder.with_name(f".removed-{folder.name}-{os.getpid()}")
    try:
        folder.rename(trash)
    except FileNotFoundError:
        return False
    shutil.rmtree(trash, ignore_errors=True)
    return True
