"""The course's exercises: one folder each, with the module to implement and its tests.

Importing this package installs the active-submission finder, so that
``exercises.<name>.<name>`` loads from the submission named by the
``COURSE_SUBMISSION`` environment variable (this directory when unset);
see ``course/submission.py``.
"""

from course.submission import install

install()
