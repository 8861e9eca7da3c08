"""``course site OUT_DIR``: the course as a static web site of executed notebooks.

Every notebook is executed (:mod:`course.notebook_run`) and exported to HTML
with nbconvert, one page per section with links to the previous and next
sections, plus an ``index.html`` that lists the sections in order. Plots are
embedded in the pages as PNG images, so the site is a folder to open or serve
as it is.

A progress bar is a Jupyter widget whose live view needs the widget manager's
JavaScript; the pages show each bar's final state as plain HTML instead, so
they read the same offline.
"""

from __future__ import annotations

import copy
import html
import os
from pathlib import Path

from nbconvert import HTMLExporter
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell

from course import syllabus
from course.notebook_run import JOBS, NotebookRun, execute_notebooks, resolve_target

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PROGRESS_MODELS = ("FloatProgressModel", "IntProgressModel")


def navigation(runs: list[NotebookRun], index: int) -> str:
    """Markdown links to the previous section, the contents and the next section."""
    links = []
    if index > 0:
        before = runs[index - 1].section
        links.append(f"[← {before.number}. {before.title}]({before.name}.html)")
    links.append("[Contents](index.html)")
    if index + 1 < len(runs):
        after = runs[index + 1].section
        links.append(f"[{after.number}. {after.title} →]({after.name}.html)")
    return " · ".join(links)


def static_widgets(notebook: NotebookNode) -> NotebookNode:
    """A copy of ``notebook`` whose widget outputs are plain HTML of their last state.

    A box of HTML labels and a progress bar (what ``tqdm.auto`` draws) becomes
    those labels around an HTML ``<progress>``; any other widget keeps only its
    text fallback. The stored widget state is dropped, so the exported page
    loads no widget JavaScript.
    """
    notebook = copy.deepcopy(notebook)
    state = notebook.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).pop(WIDGET_VIEW, None)
            if view is not None:
                rendered = _render_widget(state, view.get("model_id", ""))
                if rendered is not None:
                    output["data"]["text/html"] = rendered
    return notebook


def _render_widget(state: dict, model_id: str) -> str | None:
    model = state.get(model_id)
    if model is None:
        return None
    name, values = model["model_name"], model["state"]
    if name == "HTMLModel":
        return f"<span>{values.get('value', '')}</span>"  # already HTML, written by the widget's owner
    if name in PROGRESS_MODELS:
        return f'<progress value="{values.get("value", 0)}" max="{values.get("max", 1)}"></progress>'
    if name == "HBoxModel":
        children = [_render_widget(state, child.removeprefix("IPY_MODEL_")) for child in values.get("children", [])]
        return '<div class="course-widget">' + " ".join(c for c in children if c) + "</div>"
    return None


def export_page(run: NotebookRun, nav: str) -> str:
    """The HTML page of one executed notebook, with navigation links above and below it."""
    notebook = static_widgets(run.notebook)
    notebook.cells = [new_markdown_cell(nav), *notebook.cells, new_markdown_cell(nav)]
    exporter = HTMLExporter(template_name="lab")
    title = f"{run.section.number}. {run.section.title}"
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    return body


INDEX_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.5; }
h1 { margin-bottom: .2rem; }
ol { padding-left: 0; list-style: none; }
li { border: 1px solid #ddd; border-radius: 8px; padding: .8rem 1rem; margin: .8rem 0; }
li a { font-size: 1.15rem; font-weight: 600; text-decoration: none; }
.level { display: inline-block; font-size: .8rem; border-radius: 1rem; padding: 0 .6rem; margin-left: .5rem; color: white; }
.beginner { background: #2e7d32; } .intermediate { background: #1565c0; } .advanced { background: #6a1b9a; }
.status { font-size: .85rem; color: #555; } .failed { color: #b71c1c; }
code { background: #f3f3f3; padding: 0 .2rem; border-radius: 3px; }
"""


def index_page(runs: list[NotebookRun], target: Path, quick: bool) -> str:
    """``index.html``: the sections in order, each with its level, what it builds and how its run went."""
    items = []
    for run in runs:
        section = run.section
        if run.ok:
            status = f'<span class="status">ran in {run.seconds:.0f} s</span>'
        else:
            where = f"cell {run.error.index}" if run.error.index is not None else "a cell"
            status = f'<span class="status failed">stopped at {where}: {html.escape(run.error.summary)}</span>'
        exercises = ", ".join(f"<code>exercises/{html.escape(name)}/</code>" for name in section.exercises) or "none"
        items.append(
            f'<li><a href="{section.name}.html">{section.number}. {html.escape(section.title)}</a>'
            f'<span class="level {section.level}">{section.level}</span>'
            f"<div>You build {html.escape(_plain(section.builds))}.</div>"
            f"<div>Exercises: {exercises}</div>{status}</li>"
        )
    setting = ", quick setting" if quick else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Introduction to Transformers with JAX</title>"
        f"<style>{INDEX_STYLE}</style></head><body>"
        "<h1>Introduction to Transformers with JAX</h1>"
        "<p>Build a transformer language model piece by piece in JAX and Flax NNX: "
        "from arrays and gradients to attention, a model trained on Python's own source code, "
        "and a pretrained model that writes code.</p>"
        f"<ol>{''.join(items)}</ol>"
        f'<p class="status">Executed with the exercises of <code>{html.escape(str(target))}</code>{setting}.</p>'
        "</body></html>\n"
    )


def _plain(markdown: str) -> str:
    return markdown.replace("`", "")


def write_site(out_dir: str | os.PathLike[str], runs: list[NotebookRun], *, target: Path, quick: bool) -> list[Path]:
    """Writes one page per executed notebook and ``index.html`` into ``out_dir``.

    Returns:
      The pages written, ``index.html`` first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text(index_page(runs, target, quick), encoding="utf-8")
    pages = [index]
    for i, run in enumerate(runs):
        page = out / f"{run.section.name}.html"
        page.write_text(export_page(run, navigation(runs, i)), encoding="utf-8")
        pages.append(page)
    return pages


def build_site(
    out_dir: str | os.PathLike[str],
    *,
    target: str | os.PathLike[str] | None = None,
    quick: bool = False,
    jobs: int = JOBS,
) -> tuple[list[NotebookRun], list[Path]]:
    """Executes every notebook against ``target`` and writes the site into ``out_dir``.

    A notebook that fails still gets its page, which ends at the failing cell.

    Returns:
      ``(runs, pages)``: the executions, and the pages written (``index.html`` first).
    """
    resolved = resolve_target(target)
    runs = execute_notebooks(target=resolved, quick=quick, jobs=jobs)
    return runs, write_site(out_dir, runs, target=resolved, quick=quick)
