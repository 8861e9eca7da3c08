"""The instructor's workshop: what is made from ``reference/`` and released to students.

``stubs`` and ``fixtures`` (the exercises' stubs and the visible tests' expected
values), ``notebooks`` (building the notebooks from their sources, and the HTML
site), ``release`` (the student repository) and ``cli`` (their ``course`` verbs).
Never shipped to students.
"""
