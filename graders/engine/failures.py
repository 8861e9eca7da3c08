"""What counts as the submission's fault.

A case that raises one of these (or an ``AssertionError``) failed because of
the submission: it scores zero and the student reads the message. Any other
exception in a case is a grader bug: the case is reported as a grader error,
and ``course grade`` exits non-zero so that an instructor looks at it.
Messages are written for students and never hold reference values.
"""

from __future__ import annotations


class SubmissionFailure(AssertionError):
    """The submission did something wrong; ``str(self)`` is the student-facing message.

    Attributes:
      hint: the known mistake this looks like, or ``None``.
    """

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class Mismatch(SubmissionFailure):
    """An output or gradient differs from the reference's."""


class StudentError(SubmissionFailure):
    """The submission's code raised an exception (or failed to import).

    Attributes:
      type_name: the exception's class name.
      bases: the names of its classes, most derived first.
    """

    def __init__(self, message: str, *, type_name: str, bases: list[str]):
        super().__init__(message)
        self.type_name, self.bases = type_name, list(bases)


class WorkerCrash(SubmissionFailure):
    """The worker process died, ran out of time or memory, or sent garbage."""


class ForbiddenRoutine(SubmissionFailure):
    """The exercise calls a library routine that does the exercise for it.

    Attributes:
      names: the routines it calls.
      where: where its source uses them (``"attention/attention.py:12"``), when the grader read it there.
    """

    def __init__(self, names: list[str], *, where: list[str] = ()):
        listed = ", ".join(names)
        seen = f" ({_listed(where)})" if where else ""
        super().__init__(
            f"this exercise calls {listed}{seen}, a library routine that does the exercise for you; "
            "the exercise earns no points while it does: write the computation yourself"
        )
        self.names, self.where = list(names), list(where)


class Tampering(SubmissionFailure):
    """The submission interferes with the grader's checks (its traps, its runtime): the exercise earns nothing.

    Attributes:
      seen: what showed it, each with where (``"attention/attention.py:3: fn.__code__"``).
    """

    LABEL = "tampering with the grader"  # listed with the exercise's forbidden routines in the score files

    def __init__(self, seen: list[str]):
        super().__init__(
            f"this exercise tampers with the grader's checks ({_listed(seen)}); "
            "the exercise earns no points while it does"
        )
        self.seen = list(seen)


def _listed(items: list[str], shown: int = 5) -> str:
    """The first ``shown`` of ``items``, joined, and how many more there are."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return "; ".join(items[:shown]) + more


class NotRun(SubmissionFailure):
    """The case was not run: the submission's time ran out or its worker kept crashing."""
