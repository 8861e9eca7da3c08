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
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from graders.runtime import transforms, wire

T = TypeVar("T")
_ACTIVE: list[ReferenceStore] = []  # the pytest process's store, when its grading has one


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
