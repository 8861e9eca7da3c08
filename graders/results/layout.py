"""The results folder of ``course grade-all``: the names and schema that its writer and its readers share.

:mod:`graders.batch` writes the folder and :mod:`graders.results.reports` reads
it: ``batch.json`` (schema :data:`BATCH_SCHEMA`: the grader version, the seed
and the exercises of the class run; a shard's also names its shard, ``[I, N]``)
and, per student, ``<student>/`` with the score files of :func:`graders.grade`
and ``submission.json`` (the content hash, the
:class:`~graders.results.scores.SubmissionStatus` and its reason).
"""

from __future__ import annotations

import json
from pathlib import Path

from graders.results.scores import SubmissionStatus

BATCH_FILE = "batch.json"
STUDENT_FILE = "submission.json"
BATCH_SCHEMA = "course-batch/1"


def read_batch(results_dir: Path) -> dict:
    """The ``batch.json`` of ``results_dir``.

    Raises:
      ValueError: it is missing, damaged or not of :data:`BATCH_SCHEMA` (the message names the file).
    """
    record = _read(results_dir / BATCH_FILE)
    if not isinstance(record, dict) or record.get("schema") != BATCH_SCHEMA:
        raise ValueError(f"{results_dir / BATCH_FILE} is not a batch file of schema {BATCH_SCHEMA}")
    return record


def read_student(folder: Path) -> dict:
    """The ``submission.json`` of a student's results ``folder``, its status checked.

    Raises:
      ValueError: it is missing or damaged (a grading cut short, or a folder that is not a student's).
    """
    record = _read(folder / STUDENT_FILE)
    try:
        SubmissionStatus(record["status"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{folder / STUDENT_FILE} is not a student's record") from None
    return record


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path} ({type(error).__name__})") from None
