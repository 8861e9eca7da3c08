"""The results folder of ``course grade-all``: the names and schema that its writer and its readers share.

:mod:`graders.batch` writes the folder and :mod:`graders.results.reports` reads
it: ``batch.json`` (schema :data:`BATCH_SCHEMA`: the grader version, the seed
and the exercises of the class run; a shard's also names its shard, ``[I, N]``)
and, per student, ``<student>/`` with the score files of :func:`graders.grade`
and ``submission.json`` (the content hash, the
:class:`~graders.results.scores.SubmissionStatus` and its reason).
"""

BATCH_FILE = "batch.json"
STUDENT_FILE = "submission.json"
BATCH_SCHEMA = "course-batch/1"
