"""``course site OUT_DIR``: the course as a static web site of executed notebooks.

Every notebook is executed (:mod:`course.notebook_run`) and exported to HTML
with nbconvert, one page per section with links to the previous and next
sections, plus an ``index.html`` that lists the sections in order (the Jinja2
template ``authoring/templates/site_index.html.j2``). Plots are
embedded in the pages as PNG images, so the site is a folder to open or serve
as it is.

A progress bar is a Jupyter widget whose live view needs the widget manager's
JavaScript; the pages show each bar's final state as plain HTML instead, so
they read the same offline.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jinja2
from nbconvert import HTMLExporter
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell

from course.notebook_run import JOBS, NotebookRun, execute_notebooks, resolve_target

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PROGRESS_MODELS = ("FloatProgressModel", "IntProgressModel")
# authoring/templates/*.html.j2, rendered with every value escaped for HTML: titles and error messages hold '<' and '&'
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("authoring", "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


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


def index_page(runs: list[NotebookRun], target: Path, quick: bool) -> str:
    """``index.html``: the sections in order, each with its level, what it builds and how its run went."""
    return TEMPLATES.get_template("site_index.html.j2").render(runs=runs, target=target, quick=quick)


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
