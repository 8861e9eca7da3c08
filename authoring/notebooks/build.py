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
builds, the exercises it teaches and the earlier ones it also runs, with their
``pytest`` commands, from :mod:`course.syllabus`), how to run it, and the setup
cell that installs the course on Colab. Built notebooks carry no outputs;
``course build-notebooks`` writes them and ``course build-notebooks --check``
fails when one is stale.

Building a notebook also checks the syllabus's lists against its source
(:func:`exercises_run`): every exercise the code runs, imported or through the
course's own code (``TransformerLM`` is built from three exercises), must be
listed, and every listed one must run.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat
from nbformat import NotebookNode
from IPython.core.inputtransformer2 import TransformerManager
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import course
from course import catalog, submission, syllabus
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
    """The first cell of a section's notebook: its title, level, what it builds and every exercise it runs."""
    rows = [("Level", section.level), ("You build", section.builds)]
    if section.exercises:
        exercises = [catalog.get(name) for name in section.exercises]
        rows.append(("Exercises", "<br>".join(
            f"`exercises/{e.relpath}`: {', '.join(f'`{f}`' for f in e.functions)}" for e in exercises
        )))
    else:
        rows.append(("Exercises", "none graded in this section: run the cells, change them, and see what happens"))
    if section.uses:
        rows.append(("Also runs your", "<br>".join(f"`exercises/{catalog.get(name).relpath}`" for name in section.uses)))
    if section.runs:
        rows.append(("Check your work", "<br>".join(f"`pytest exercises/{name}`" for name in section.runs)))
    lines = [f"# {section.number}. {section.title}", "", "| | |", "| --- | --- |"]
    lines += [f"| **{key}** | {value} |" for key, value in rows]
    colab = syllabus.colab_url(section)
    if colab:
        lines += ["", f"[Open in Colab]({colab})"]
    return "\n".join(lines)


# What a notebook runs of the student's code, read from its source (never run):
# `course build-notebooks` holds the syllabus's lists of each section to it.

EXERCISE_MODULE = re.compile(r"exercises\.(\w+)\.(\w+)")
COURSE_DIR = Path(course.__file__).resolve().parent
Symbol = tuple[str, str]  # a name defined in a module of course: ("course.model", "TransformerLM")


@dataclass(frozen=True)
class _Imports:
    """What a module's (or a notebook's) ``from course... import`` lines bind, by local name."""

    names: dict[str, Symbol]  # from course.model import TransformerLM
    modules: dict[str, str]  # from course import data


def exercises_run(cells: list[NotebookNode]) -> dict[str, str]:
    """The exercises whose code the cells run, each with what runs it first.

    Read from the code, statically: an import of an exercise module
    (``from exercises.loss.loss import ...``); a name imported from ``course``
    whose code loads exercise modules (``exercise_module("transformer")``),
    itself or through the course code it uses (``TransformerLM`` loads
    positional_encoding, attention and transformer, and ``load_checkpoint``
    builds a ``TransformerLM``); then what those exercise modules import in
    turn (the transformer exercise imports the attention exercise's).

    Args:
      cells: a notebook's cells; its code cells (IPython, magics included) are read.

    Returns:
      ``{exercise name: why}``, e.g. ``{"transformer": "`TransformerLM` of course.model"}``.
    """
    code = "\n".join(TransformerManager().transform_cell(c.source) for c in cells if c.cell_type == "code")
    tree = _with_magics(ast.parse(code))
    found = {name: _shown(node) for node in ast.walk(tree) for name in _loaded_exercises(node)}
    for module, name in sorted(_references(tree, _imports(tree))):
        for exercise in _course_loads((module, name)):
            found.setdefault(exercise, f"`{name}` of {module}")
    pending = list(found)
    while pending:  # an exercise module runs the exercise modules it imports
        name = pending.pop()
        stub = submission.repo_root() / "exercises" / name / f"{name}.py"
        for node in ast.walk(ast.parse(stub.read_text(encoding="utf-8"))):
            for used in _loaded_exercises(node):
                if used not in found:
                    found[used] = f"exercises/{name} imports it"
                    pending.append(used)
    return found


def _with_magics(tree: ast.Module) -> ast.Module:
    """``tree`` and the Python that its magics run (``%time model = load(...)`` is a call with the code as a string)."""
    body = list(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in ("run_line_magic", "run_cell_magic"):
            for argument in node.args[1:]:  # the magic's name, then its line (and its cell)
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    try:
                        body += _with_magics(ast.parse(argument.value)).body
                    except SyntaxError:
                        pass  # a magic's arguments that are not Python (%pip install ...)
    return ast.Module(body=body, type_ignores=[])


def _loaded_exercises(node: ast.AST) -> list[str]:
    """The exercises ``node`` itself loads: an import, ``exercise_module("<name>")``, or a module's dotted name."""
    if isinstance(node, ast.ImportFrom) and node.level == 0:
        dotted = [node.module or ""]
    elif isinstance(node, ast.Import):
        dotted = [alias.name for alias in node.names]
    elif isinstance(node, ast.Call) and _called(node) == "exercise_module" and node.args:
        first = node.args[0]
        return [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else []
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        dotted = [node.value]  # importlib.import_module("exercises.transformer.transformer")
    else:
        return []
    matches = [EXERCISE_MODULE.fullmatch(name) for name in dotted]
    return [m[1] for m in matches if m and m[1] == m[2]]


def _shown(node: ast.AST) -> str:
    """A short quote of the code that loads an exercise."""
    return f"`from {node.module} import ...`" if isinstance(node, ast.ImportFrom) else f"`{ast.unparse(node)}`"


def _called(call: ast.Call) -> str | None:
    function = call.func
    return function.id if isinstance(function, ast.Name) else function.attr if isinstance(function, ast.Attribute) else None


def _module_path(module: str) -> Path | None:
    """The file of a module of the course package (``course.model``), or None when it is not one."""
    parts = module.split(".")
    if parts[0] != "course":
        return None
    base = COURSE_DIR.joinpath(*parts[1:])
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def _imports(tree: ast.Module) -> _Imports:
    imports = _Imports({}, {})
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _module_path(node.module or "") is not None:
            for alias in node.names:
                local, submodule = alias.asname or alias.name, f"{node.module}.{alias.name}"
                if _module_path(submodule) is not None:
                    imports.modules[local] = submodule
                else:
                    imports.names[local] = (node.module, alias.name)
    return imports


def _references(node: ast.AST, imports: _Imports, module: str = "", defined: frozenset[str] = frozenset()) -> set[Symbol]:
    """The course names ``node`` uses: imported ones, ``data.name`` of an imported module, and ``module``'s ``defined`` ones."""
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in imports.names:
            found.add(imports.names[sub.id])
        elif isinstance(sub, ast.Name) and sub.id in defined:
            found.add((module, sub.id))
        elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in imports.modules:
            found.add((imports.modules[sub.value.id], sub.attr))
    return found


@functools.cache
def _parsed(module: str) -> tuple[_Imports, dict[str, ast.AST]] | None:
    """A course module's imports and top-level definitions by name (functions, classes, assignments)."""
    path = _module_path(module)
    if path is None:
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    definitions = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            definitions[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    definitions[target.id] = node
    return _imports(tree), definitions


@functools.cache
def _symbol(symbol: Symbol) -> tuple[frozenset[str], frozenset[Symbol]]:
    """The exercises one course name's code loads itself, and the course names it uses."""
    module, name = symbol
    parsed = _parsed(module)
    if parsed is None:
        return frozenset(), frozenset()
    imports, definitions = parsed
    if name not in definitions:  # imported into the module from another one, or no name of the course
        return frozenset(), frozenset([imports.names[name]] if name in imports.names else [])
    node = definitions[name]
    loads = frozenset(exercise for sub in ast.walk(node) for exercise in _loaded_exercises(sub))
    return loads, frozenset(_references(node, imports, module, frozenset(definitions)) - {symbol})


def _course_loads(root: Symbol) -> set[str]:
    """The exercises a course name loads, through every course name its code uses in turn."""
    found, seen, pending = set(), set(), [root]
    while pending:
        symbol = pending.pop()
        if symbol not in seen:
            seen.add(symbol)
            loads, references = _symbol(symbol)
            found |= loads
            pending += references
    return found


def check_exercises(section: syllabus.Section, cells: list[NotebookNode]) -> None:
    """Fails unless the section's exercises and uses (course/syllabus.py) are exactly what its cells run.

    Raises:
      SourceError: naming the source, what it runs that the syllabus does not list (and why), and what the syllabus
        lists that it does not run.
    """
    runs = exercises_run(cells)
    unlisted = [f"{name} ({why})" for name, why in runs.items() if name not in section.runs]
    unused = [name for name in section.runs if name not in runs]
    problems = []
    if unlisted:
        problems.append(f"runs {', '.join(sorted(unlisted))}, which the syllabus does not list: add them to its uses")
    if unused:
        problems.append(f"runs none of {', '.join(unused)}, which the syllabus lists: remove them")
    if problems:
        raise SourceError(f"{section.source.name} (section {section.number} in course/syllabus.py): {'; '.join(problems)}")


RUN_HERE = f"""\
**Running this notebook.** On your own machine, install the course once
(`pip install -e .` in the repository) and open the notebook in Jupyter
(`jupyter lab course/notebooks`). On **Google Colab**, the setup cell below
installs the course first, and your exercise files are then in
`{COLAB_DIR}/exercises/` (Colab's file browser, on the left); a Colab runtime
forgets them when it is recycled, so download what you write. Colab runs
everything on a CPU unless you ask for a GPU: *Runtime > Change runtime type >
T4 GPU*. The course runs on a CPU too, only the training in section 9 is slower.

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
    source_cells = parse_source(source, section.source.name)
    check_exercises(section, source_cells)
    cells += source_cells
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
