"""Comparisons for the suites: the student's outputs and gradients against the reference's.

Every comparison uses the course's tolerances (``course.testing.TOLERANCES``,
per kind of quantity and dtype) and never puts a reference value in its
message. On a mismatch, each *known mistake* of the case is tried: the
reference computed as if that mistake had been made (the catalogue of
``course.mistakes``, whose hints the visible tests give too); when the
student's outputs match one, its hint is added to the message and recorded
with the case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import ModuleType

import numpy as np

from course import mistakes as catalogue
from course.testing import describe_mismatch
from graders.engine import reference_store
from graders.engine.failures import Mismatch, StudentError
from graders.runtime import transforms
from graders.runtime.wire import Unsupported

Mistakes = Mapping[str, Callable]  # hint -> the reference's function with that mistake (same signature)


def known_mistakes(reference: ModuleType, function: str, *bound) -> Mistakes:
    """The catalogued mistakes of the reference's ``function`` (``course.mistakes``), in the catalogue's order.

    Args:
      reference: the reference's exercise module (``exercises.<name>.<name>``).
      function: a function or NNX module class of that exercise.
      bound: leading arguments bound to every mistake (a module class's
        mistakes take the reference's module instance first).
    """
    exercise = reference.__name__.split(".")[1]
    return {m.hint: partial(m.wrong(reference), *bound) for m in catalogue.of(exercise, function)}


def leaves(tree) -> list:
    """The leaves of nested tuples, lists and dicts (tuples and lists alike; ``None`` kept)."""
    if isinstance(tree, tuple | list):
        return [leaf for item in tree for leaf in leaves(item)]
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in leaves(tree[key])]
    return [tree]


def _shape(x) -> str:
    if isinstance(x, Unsupported):
        return repr(x)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{np.dtype(x.dtype).name}{list(x.shape)}"
    return type(x).__name__


def _shapes(xs: list) -> str:
    shown = ", ".join(map(_shape, xs[:6]))
    return shown + (f", ... ({len(xs)} in all)" if len(xs) > 6 else "")


def mismatch(actual, expected, *, what: str, kind: str = "output", names: Sequence[str] | None = None,
             tolerance_of=None) -> str | None:
    """Why the tree ``actual`` differs from ``expected`` (``None`` when it matches).

    Args:
      names: one name per leaf of ``expected`` for the message (default ``what[i]``).
      tolerance_of: compare with this dtype's tolerance (default: each expected leaf's dtype,
        which the actual leaf's dtype must equal).
    """
    got, want = leaves(actual), [np.asarray(x) if x is not None else None for x in leaves(expected)]
    if len(got) != len(want):
        return f"{what}: expected {len(want)} array(s) ({_shapes(want)}), got {len(got)} ({_shapes(got)})"
    for i, (g, w) in enumerate(zip(got, want)):
        label = names[i] if names else (what if len(want) == 1 else f"{what}[{i}]")
        if w is None:
            continue
        if isinstance(g, Unsupported) or not isinstance(g, np.ndarray | np.generic):
            return f"{label}: expected an array, got {_shape(g)}"
        message = describe_mismatch(g, w, what=label, kind=kind, reveal=False, tolerance_of=tolerance_of)
        if message:
            return message
    return None


def check(actual, expected, *, what: str, kind: str = "output", names: Sequence[str] | None = None,
          mistakes: Mistakes | None = None, mistake_args: tuple = (), mistake_kwargs: dict | None = None,
          tolerance_of=None) -> None:
    """Fails with :class:`Mismatch` unless ``actual`` matches ``expected``.

    Args:
      mistakes: known mistakes, tried only on a mismatch: each function is
        called as ``fn(*mistake_args, **mistake_kwargs)`` in this (trusted) process.
    """
    __tracebackhide__ = True
    message = mismatch(actual, expected, what=what, kind=kind, names=names, tolerance_of=tolerance_of)
    if message is None:
        return
    hint = find_mistake(actual, mistakes or {}, mistake_args, mistake_kwargs or {}, kind=kind, tolerance_of=tolerance_of)
    raise Mismatch(message + (f". Hint: {hint}" if hint else ""), hint=hint)


def find_mistake(actual, mistakes: Mistakes, args: tuple, kwargs: dict, *, kind: str = "output", tolerance_of=None) -> str | None:
    """The hint of the first known mistake whose outputs ``actual`` matches, or ``None``."""
    for hint, wrong in mistakes.items():
        with np.errstate(all="ignore"):
            expected = transforms.apply(wrong, args, kwargs)
        if mismatch(actual, expected, what="", kind=kind, tolerance_of=tolerance_of) is None:
            return hint
    return None


def expect_like_reference(student, reference: Callable, function: str, args: tuple, kwargs: dict | None = None, *,
                          cotangent=None, outputs: Sequence[str] | None = None, inputs: Sequence[str] | None = None,
                          mistakes: Mistakes | None = None, transform: str | None = None, in_axes=None,
                          tolerance_of=None):
    """Runs ``function`` in the worker and ``reference`` here on the same inputs, and compares.

    With a ``cotangent`` both run as VJPs (the student's function differentiated
    in the worker) and the gradient with respect to every floating-point
    argument is compared too (tolerance kind ``"gradient"``).

    Args:
      outputs: names of the output leaves, for messages (``("output", "weights")``).
      inputs: names of the positional arguments, for gradient messages.
      mistakes: see :func:`check`; tried on the outputs.
      transform, in_axes: ``"jit"`` or ``"vmap"`` for both sides (not with a cotangent).
      tolerance_of: see :func:`mismatch` (outputs only).

    Returns:
      ``(student_outputs, reference_outputs)`` for further checks.
    """
    __tracebackhide__ = True
    kwargs = dict(kwargs or {})
    if cotangent is not None:
        transform = "vjp"
    waiting = student.submit(function, *args, kwargs=kwargs, transform=transform, in_axes=in_axes, cotangent=cotangent)
    # A reference failure leaves the answer unread; the session skips it before its next request.
    label = f"{getattr(reference, '__module__', '')}.{getattr(reference, '__qualname__', function)}/{transform}/{in_axes}"
    want = reference_store.outputs(label, (args, kwargs, cotangent), lambda: transforms.apply(
        reference, args, kwargs, transform=transform, in_axes=in_axes, cotangent=cotangent, compile=True))
    got = waiting()
    if cotangent is not None:
        (got, got_grads), (want, want_grads) = got, want
    what = f"{function}: " + (", ".join(outputs) if outputs else "output")
    check(got, want, what=what, names=outputs, mistakes=mistakes, mistake_args=args, mistake_kwargs=kwargs,
          tolerance_of=tolerance_of)
    if cotangent is not None:
        for i, want_grad in enumerate(want_grads):
            if not any(leaf is not None for leaf in leaves(want_grad)):
                continue
            name = inputs[i] if inputs else f"argument {i}"
            got_grad = got_grads[i] if isinstance(got_grads, tuple | list) and i < len(got_grads) else None
            check(got_grad, want_grad, what=f"{function}: gradient with respect to {name}", kind="gradient")
    return got, want


def expect_dtype(actual, dtype, *, what: str) -> None:
    """Fails unless ``actual`` is an array of ``dtype``."""
    __tracebackhide__ = True
    if not hasattr(actual, "dtype"):
        raise Mismatch(f"{what}: expected an array, got {_shape(actual)}")
    if np.dtype(actual.dtype) != np.dtype(dtype):
        raise Mismatch(f"{what}: expected dtype {np.dtype(dtype).name}, got {np.dtype(actual.dtype).name}")


def expect_array(actual, *, dtype, shape: Sequence[int] | None = None, what: str) -> np.ndarray:
    """``actual`` as a numpy array, failing with :class:`Mismatch` unless it is an array of ``dtype`` and ``shape``.

    For a student's result that a suite uses other than through :func:`check`
    (indexes with it, counts it, reads it as a number): a wrong dtype or shape
    then fails the case with a message instead of crashing the suite's code.

    Args:
      dtype: the dtype the specification gives (token ids ``int32``, a loss ``float32``).
      shape: the expected shape; ``None`` accepts any.
    """
    __tracebackhide__ = True
    expect_dtype(actual, dtype, what=what)
    if shape is not None and tuple(actual.shape) != tuple(shape):
        raise Mismatch(f"{what}: expected shape {list(shape)}, got {list(actual.shape)}")
    return np.asarray(actual)


def expect_outputs(actual, count: int, *, what: str) -> list:
    """The ``count`` outputs of a function that returns a tuple, failing with :class:`Mismatch` unless it did."""
    __tracebackhide__ = True
    if isinstance(actual, tuple | list) and len(actual) == count:
        return list(actual)
    got = f"{len(actual)} ({_shapes(list(actual))})" if isinstance(actual, tuple | list) else _shape(actual)
    raise Mismatch(f"{what}: expected a tuple of {count} arrays, got {got}")


def expect_raises(student, function: str, args: tuple, kwargs: dict | None = None, *, error: str, why: str) -> None:
    """Fails unless ``function(*args, **kwargs)`` raises ``error`` (a builtin exception's name) or a subclass."""
    __tracebackhide__ = True
    try:
        student.call(function, *args, kwargs=kwargs)
    except StudentError as raised:
        if error in raised.bases:
            return
        raise Mismatch(f"{function}: {why} should raise {error}; instead {raised}") from None
    raise Mismatch(f"{function}: {why} should raise {error}, returned normally")
