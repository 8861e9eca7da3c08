"""``course site OUT_DIR``: the course as a static web site of executed notebooks.

Every notebook is executed (:mod:`course.notebook_run`) and exported to HTML
with nbconvert, one page per section with links to the previous and next
sections, plus an ``index.html`` that lists the sections in order (the Jinja2
template ``authoring/templates/site_index.html.j2``). A site of some sections
only (``course site -n``) lists and links those alone.

The site reads offline, as a folder to open or serve as it is. Plots are
embedded in the pages as PNG images. Formulas are typeset in the browser by
MathJax 3, whose one-file build (``tex-svg-full.js``, from the PyPI package
``django-static-mathjax``) is copied into the site's ``mathjax/`` folder; the
page template (``authoring/templates/site_page.html.j2``) loads it from there
rather than from nbconvert's CDN.

A progress bar is a Jupyter widget whose live view needs the widget manager's
JavaScript; the pages show each bar's final state as plain HTML instead, so
they read the same offline.
"""

from __future__ import annotations

import copy
import os
import shutil
from importlib.metadata import distribution
from pathlib import Path

import jinja2
from nbconvert import HTMLExporter
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell

from course import syllabus
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
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
MATHJAX_PACKAGE = "django-static-mathjax"  # MathJax 3's files, as a Python package (no dependencies of its own)
# The one-file build that typesets TeX as SVG: every TeX extension inside, so it loads no other file.
MATHJAX_FILES = ("mathjax/static/mathjax/es5/tex-svg-full.js", "mathjax/static/mathjax/LICENSE")
MATHJAX_URL = "mathjax/tex-svg-full.js"  # where the pages find it, relative to them


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
    exporter = HTMLExporter(template_name="lab", template_file="site_page.html.j2",
                            extra_template_paths=[str(TEMPLATE_DIR)], mathjax_url=MATHJAX_URL)
    title = f"{run.section.number}. {run.section.title}"
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    return body


def index_page(runs: list[NotebookRun], target: Path, quick: bool) -> str:
    """``index.html``: the sections in order, each with its level, what it builds and how its run went."""
    return TEMPLATES.get_template("site_index.html.j2").render(runs=runs, target=target, quick=quick)


def copy_mathjax(out: Path) -> Path:
    """Copies MathJax (its one-file build and licence) into ``out/mathjax/``; returns that folder.

    Raises:
      importlib.metadata.PackageNotFoundError: the MathJax package is not installed.
    """
    package = distribution(MATHJAX_PACKAGE)
    folder = out / Path(MATHJAX_URL).parent
    folder.mkdir(parents=True, exist_ok=True)
    for name in MATHJAX_FILES:
        shutil.copyfile(package.locate_file(name), folder / Path(name).name)
    return folder


def write_site(out_dir: str | os.PathLike[str], runs: list[NotebookRun], *, target: Path, quick: bool) -> list[Path]:
    """Writes one page per executed notebook, ``index.html`` and the MathJax they load into ``out_dir``.

    Returns:
      The pages written, ``index.html`` first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out)
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
    sections: tuple[syllabus.Section, ...] = syllabus.SECTIONS,
    target: str | os.PathLike[str] | None = None,
    quick: bool = False,
    jobs: int = JOBS,
) -> tuple[list[NotebookRun], list[Path]]:
    """Executes the sections' notebooks against ``target`` and writes the site into ``out_dir``.

    A notebook that fails still gets its page, which ends at the failing cell.

    Args:
      out_dir: the site's folder (created).
      sections: which sections, in the order of the index and of the links between pages (default: all).
      target: the submission: a directory, ``"reference"``, or ``None`` for ``exercises/``.
      quick: the small setting of long cells.
      jobs: how many kernels run at once.

    Returns:
      ``(runs, pages)``: the executions, and the pages written (``index.html`` first).
    """
    resolved = resolve_target(target)
    runs = execute_notebooks(sections, target=resolved, quick=quick, jobs=jobs)
    return runs, write_site(out_dir, runs, target=resolved, quick=quick)
