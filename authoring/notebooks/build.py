"""The notebooks' text sources and the ``.ipynb`` files built from them.

Each section's notebook is written as a percent-format Python file (the format
of jupytext and of VS Code's cells), which reads and diffs like code::

    # %% [markdown]
    # ## Scaled dot-product attention
    # Every query reads a weighted average of the values.

    # %%
    weights = softmax(scores)

    # %% tags=["exercise"]
    output, weights = scaled_dot_product_attention(q, k, v)

jupytext reads the cells (:func:`parse_source`), and this module holds it to
that much of the format: a markdown cell's lines start with ``# `` (or are a
bare ``#`` or blank); a code cell is IPython code as written, magics included
(a magic commented out, ``# %time``, is jupytext's way of writing one and
reads as the magic); ``tags=[...]`` (JSON) sets the cell's tags, and the tag
``exercise`` marks a cell that runs the student's code.

The built notebook (``course/notebooks/<name>.ipynb``, committed so that
Jupyter and Colab open it) is the source's cells after three generated ones,
the same in every notebook: a header (the section's level, what the student
builds, its exercise folder and ``pytest`` command, from
:mod:`course.syllabus`), how to run it, and the setup cell that installs the
course on Colab. Built notebooks carry no outputs; ``course notebooks --build``
writes them and ``course notebooks --check`` fails when one is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course import catalog, syllabus
from course.notebook_helpers import SETUP_TAG

COLAB_DIR = f"/content/{syllabus.DISTRIBUTION}"  # where pip's --src puts the course on Colab
MARKER = "# %%"
HEADERS = "'# %%', '# %% [markdown]' or '# %% tags=[\"...\"]'"


class SourceError(ValueError):
    """A notebook source is malformed; the message names the file and line."""


def parse_source(text: str, origin: str = "<source>") -> list[NotebookNode]:
    """The cells of a percent-format notebook source, read by jupytext.

    jupytext reads each cell, from its ``# %%`` line to the next, on its own, so
    that an error names the line it is on; what jupytext accepts beyond this
    module's format (titles, other metadata, raw cells) is refused here.

    Args:
      text: the source.
      origin: its file name, used in error messages.

    Returns:
      Markdown and code cells (nbformat v4) whose only metadata is their tags.

    Raises:
      SourceError: text before the first ``# %%``, a malformed marker or tags,
        a markdown line not starting with ``#``, or an empty cell.
    """
    lines = text.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith(MARKER)]
    head = lines[: starts[0]] if starts else lines  # what comes before the first cell
    stray = next((index for index, line in enumerate(head) if line.strip()), None)
    if stray is not None:
        raise SourceError(f"{origin}:{stray + 1}: expected a {MARKER!r} cell marker before any text, got {lines[stray]!r}")
    if not starts:
        raise SourceError(f"{origin}: no cells (each starts with a {MARKER!r} line)")
    ends = [*starts[1:], len(lines)]
    return [_read_cell(lines[start:end], origin, start + 1) for start, end in zip(starts, ends)]


def _read_cell(lines: list[str], origin: str, number: int) -> NotebookNode:
    where, header = f"{origin}:{number}", lines[0]
    try:
        cells = jupytext.reads("\n".join(lines), fmt="py:percent").cells
    except Exception as error:  # jupytext fails in several ways on metadata it parses but cannot use (tags=[1])
        raise _header_error(header, where) from error
    if len(cells) != 1:
        raise SourceError(f"{where}: jupytext reads {len(cells)} cells here: start each cell with a {MARKER!r} line")
    cell = cells[0]
    # lines_to_next_cell is jupytext's count of the blank lines after the cell, kept only to write the source back
    metadata = {key: value for key, value in cell.metadata.items() if key != "lines_to_next_cell"}
    tags = metadata.pop("tags", [])
    strings = isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)
    if metadata or cell.cell_type not in ("code", "markdown") or not strings:
        raise _header_error(header, where)
    if cell.cell_type == "markdown":
        # jupytext keeps an uncommented line as it is; a missing "# " is a slip here, not markdown
        for offset, line in enumerate(lines[1:], start=1):
            if line.strip() and line != "#" and not line.startswith("# "):
                raise SourceError(f"{origin}:{number + offset}: a markdown line must start with '# ' (or be '#'), got {line!r}")
    if not cell.source.strip():
        raise SourceError(f"{where}: empty cell")
    make = new_markdown_cell if cell.cell_type == "markdown" else new_code_cell
    return make(cell.source, metadata={"tags": tags} if tags else {})


def _header_error(header: str, where: str) -> SourceError:
    if "tags=" in header:
        return SourceError(f"{where}: tags must be a JSON list of strings, got {header!r}")
    return SourceError(f"{where}: expected {HEADERS}, got {header!r}")


def header_markdown(section: syllabus.Section) -> str:
    """The first cell of a section's notebook: its title, level, what it builds and its exercises."""
    rows = [("Level", section.level), ("You build", section.builds)]
    if section.exercises:
        exercises = [catalog.get(name) for name in section.exercises]
        rows.append(("Exercises", "<br>".join(
            f"`exercises/{e.relpath}`: {', '.join(f'`{f}`' for f in e.functions)}" for e in exercises
        )))
        rows.append(("Check your work", "<br>".join(f"`pytest exercises/{e.name}`" for e in exercises)))
    else:
        rows.append(("Exercises", "none graded in this section: run the cells, change them, and see what happens"))
    lines = [f"# {section.number}. {section.title}", "", "| | |", "| --- | --- |"]
    lines += [f"| **{key}** | {value} |" for key, value in rows]
    colab = syllabus.colab_url(section)
    if colab:
        lines += ["", f"[Open in Colab]({colab})"]
    return "\n".join(lines)


RUN_HERE = f"""\
**Running this notebook.** On your own machine, install the course once
(`pip install -e .` in the repository) and open the notebook in Jupyter
(`jupyter lab course/notebooks`). On **Google Colab**, the setup cell below
installs the course first, and your exercise files are then in
`{COLAB_DIR}/exercises/` (Colab's file browser, on the left); a Colab runtime
forgets them when it is recycled, so download what you write. Colab runs
everything on a CPU unless you ask for a GPU: *Runtime > Change runtime type >
T4 GPU*. The course runs on a CPU too, only the training in section 8 is slower.

Cells marked **Exercise** run *your* code from `exercises/`. Until you have
written the function they need, they stop with a message that says which
function to write and where. Write it, save the file and run the cell again:
`%autoreload` picks up your change without a restart."""


def setup_code() -> str:
    """The setup cell: installs the course on Colab (only there), then readies the notebook."""
    return f"""\
# Setup. On Google Colab this installs the course (once per runtime); on your own Jupyter it installs nothing.
# On Colab, use a GPU: Runtime > Change runtime type > T4 GPU (before running this cell).
import os
import sys

if "google.colab" in sys.modules:
    if not os.path.isdir("{COLAB_DIR}"):  # installing again would reset your exercise files
        %pip install --quiet --src /content -e "git+{syllabus.REPOSITORY_URL}#egg={syllabus.DISTRIBUTION}"
    sys.path.insert(0, "{COLAB_DIR}")  # this Python started before the install
    os.chdir("{COLAB_DIR}")  # so that `!pytest exercises/<name>` works from a cell

%load_ext autoreload
%autoreload 2
from course.notebook_helpers import setup_notebook

setup_notebook()"""


def _metadata(section: syllabus.Section) -> dict:
    metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    if section.gpu:  # Colab reads these and offers a GPU runtime when it opens the notebook
        metadata["accelerator"] = "GPU"
        metadata["colab"] = {"gpuType": "T4", "provenance": []}
    return metadata


def build_notebook(section: syllabus.Section, source: str | None = None) -> NotebookNode:
    """The section's notebook: the generated header, run-here and setup cells, then its source's cells.

    Args:
      section: the section.
      source: its source text (default: read from ``section.source``).

    Raises:
      SourceError: the source is malformed.
      nbformat.ValidationError: the result is not a valid notebook (a bug here).
    """
    if source is None:
        source = section.source.read_text(encoding="utf-8")
    cells = [
        new_markdown_cell(header_markdown(section)),
        new_markdown_cell(RUN_HERE),
        new_code_cell(setup_code(), metadata={"tags": [SETUP_TAG]}),
    ]
    cells += parse_source(source, section.source.name)
    for index, cell in enumerate(cells):
        cell["id"] = f"s{section.number:02d}-{index:02d}"  # fixed ids keep rebuilds byte-identical
    notebook = new_notebook(cells=cells, metadata=_metadata(section))
    nbformat.validate(notebook)
    return notebook


def render(section: syllabus.Section) -> str:
    """The text of the section's built ``.ipynb`` file."""
    return nbformat.writes(build_notebook(section)) + "\n"


@dataclass(frozen=True)
class NotebookUpdate:
    path: Path  # the built notebook
    changed: bool  # whether the committed file differs from what its source builds


def sync(*, write: bool, sections: tuple[syllabus.Section, ...] = syllabus.SECTIONS) -> list[NotebookUpdate]:
    """Builds every section's notebook from its source.

    Args:
      write: write the notebooks that changed; ``False`` only reports (``--check``).
      sections: which sections (default: all).

    Returns:
      One :class:`NotebookUpdate` per section, in order.

    Raises:
      FileNotFoundError: a section's source is missing.
      SourceError: a source is malformed.
    """
    updates = []
    for section in sections:
        if not section.source.is_file():
            raise FileNotFoundError(f"notebook source: {section.source} is missing")
        text = render(section)
        current = section.notebook.read_text(encoding="utf-8") if section.notebook.is_file() else None
        changed = current != text
        if changed and write:
            section.notebook.write_text(text, encoding="utf-8")
        updates.append(NotebookUpdate(section.notebook, changed))
    return updates
