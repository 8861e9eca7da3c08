"""``report.html``: one self-contained page of a class's results, readable offline.

The page is the Jinja2 template ``graders/templates/report.html.j2``, rendered
with autoescaping (student ids, reasons and hints come from submissions).
Charts are drawn with matplotlib (Agg, no display) and embedded as base64
PNG ``data:`` URIs; the page loads nothing else.
"""

from __future__ import annotations

import base64
import io

import jinja2
import matplotlib

from graders.results.reports import ClassSummary
from graders.results.scores import SubmissionStatus

matplotlib.use("Agg")  # no display on a grading server
import matplotlib.pyplot as plt  # noqa: E402

_PAGES = jinja2.Environment(loader=jinja2.PackageLoader("graders", "templates"), autoescape=True,
                            undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_PAGES.filters["g"] = "{:g}".format  # numbers as the CSV writes them: 2 not 2.0


def render(summary: ClassSummary) -> str:
    """The page for a class summary (:func:`graders.results.reports.class_summary`)."""
    return _PAGES.get_template("report.html.j2").render(
        summary=summary, histogram=_png(_histogram(summary)), averages=_png(_averages(summary)), graded=SubmissionStatus.GRADED)


def _histogram(summary: ClassSummary):
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist([s.percent for s in summary.students], bins=10, range=(0, 100), color="#4477aa", edgecolor="white")
    axes.set(title="Score distribution", xlabel="percent", ylabel="students")
    return figure


def _averages(summary: ClassSummary):
    names = summary.exercises
    percent = [100 * summary.exercise_averages[n] / summary.max_points[n] if summary.max_points[n] else 0 for n in names]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.barh(names, percent, color="#66aa55")
    axes.set(title="Average per exercise", xlabel="percent of the exercise's points", xlim=(0, 100))
    axes.invert_yaxis()  # catalogue order, top to bottom
    figure.tight_layout()
    return figure


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
