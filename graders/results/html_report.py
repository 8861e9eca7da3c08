"""``report.html``: one self-contained page of a class's results, readable offline.

Charts are drawn with matplotlib (Agg, no display) and embedded as base64
PNG ``data:`` URIs; the page loads nothing else.
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # no display on a grading server
import matplotlib.pyplot as plt  # noqa: E402

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }
th { background: #eee; }
.bad { color: #b00; }
img { max-width: 48%; margin-right: 1%; }
"""


def render(summary: dict) -> str:
    """The page for a class summary (:func:`graders.results.reports.class_summary`)."""
    body = [
        f"<h1>Class report</h1><p>{len(summary['students'])} students; seed {summary['seed']}; "
        f"grader version {html.escape(summary['grader_version'])}; average {summary['average_total']:.1f} / {summary['total_max']:g}; "
        + ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(summary["status_counts"].items())) + "</p>",
        f'<img alt="score histogram" src="{_png(_histogram(summary))}">',
        f'<img alt="per-exercise averages" src="{_png(_averages(summary))}">',
        "<h2>Hardest cases</h2>", _hardest_table(summary),
        "<h2>Students</h2>", _students_table(summary),
    ]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Class report</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _histogram(summary: dict):
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist([s["percent"] for s in summary["students"]], bins=10, range=(0, 100), color="#4477aa", edgecolor="white")
    axes.set(title="Score distribution", xlabel="percent", ylabel="students")
    return figure


def _averages(summary: dict):
    names = summary["exercises"]
    percent = [100 * summary["exercise_averages"][n] / summary["max_points"][n] if summary["max_points"][n] else 0 for n in names]
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


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _hardest_table(summary: dict) -> str:
    if not summary["hardest_cases"]:
        return "<p>Every graded case passed for every student.</p>"
    rows = [[html.escape(c["exercise"]), html.escape(c["case"]), f"{100 * c['pass_rate']:.0f}%",
             html.escape(c["top_hint"] or "") + (f" ({c['top_hint_count']}×)" if c["top_hint"] else "")]
            for c in summary["hardest_cases"]]
    return _table(["exercise", "case", "pass rate", "hint most often shown"], rows)


def _students_table(summary: dict) -> str:
    names = summary["exercises"]
    rows = [[html.escape(s["student"]), *(f"{s['points'][n]:g}" for n in names), f"{s['total']:g}", f"{s['percent']:.1f}",
             (f'<span class="bad">{html.escape(s["status"])}</span>' if s["status"] != "graded" else "graded"),
             html.escape(s["reason"][:200])]
            for s in summary["students"]]
    maxima = ["<b>max points</b>", *(f"{summary['max_points'][n]:g}" for n in names), f"{summary['total_max']:g}", "100", "", ""]
    return _table(["student", *names, "total", "percent", "status", "reason"], [maxima, *rows])
