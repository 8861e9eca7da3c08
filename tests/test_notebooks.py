"""The course's notebooks: built from their sources, valid, free of answers; they run, and the site renders.

The slow tests execute every notebook in a real Jupyter kernel, in the quick
setting: once against ``reference/`` (no cell may fail) and once against the
stubs (each notebook must stop at its first exercise cell with the stub's
"not implemented yet" message). The reference runs are shared with the site
test, which opens the exported pages in headless Chromium.
"""

import dataclasses
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from click.testing import CliRunner
from IPython.core.inputtransformer2 import TransformerManager

from authoring import release
from authoring.notebooks import build as notebook_source
from course import catalog, syllabus
from course.cli import main
from course.notebook_run import CellError, NotebookRun, execute_notebooks, write_notebooks
from authoring.notebooks.build import SourceError, parse_source
from course.notebook_helpers import EXERCISE_TAG, SETUP_TAG
from authoring.notebooks.site import index_page, static_widgets, write_site
from course.submission import repo_root
from tests.browser import chromium, needs_chromium, screenshot

ROOT = repo_root()
SECTIONS = syllabus.SECTIONS
IDS = [s.name for s in SECTIONS]
# The fewest plots (embedded PNG images) each executed notebook must show.
PLOTS = {0: 1, 1: 3, 2: 2, 3: 2, 4: 3, 5: 4, 6: 4, 7: 2, 8: 2, 9: 1, 10: 6}


def read(section):
    return nbformat.read(section.notebook, as_version=4)


def code_cells(notebook):
    return [c for c in notebook.cells if c.cell_type == "code"]


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


# ---------------------------------------------------------------- sources and built notebooks


def test_the_sections_are_numbered_in_order_and_every_file_is_listed():
    numbers = [s.number for s in SECTIONS]
    assert numbers == list(range(len(SECTIONS))), numbers  # 0 opens the course; no gaps, no repeats
    assert sorted(p.name for p in syllabus.NOTEBOOK_DIR.glob("*.ipynb")) == [s.notebook.name for s in SECTIONS]
    assert sorted(p.name for p in (syllabus.NOTEBOOK_DIR / "src").glob("*.py")) == [s.source.name for s in SECTIONS]


def test_no_section_runs_an_exercise_taught_after_it():
    """A student works through the notebooks in order: each runs only its own exercises and earlier sections'."""
    taught = {name: s.number for s in reversed(SECTIONS) for name in s.exercises}  # the first section that teaches it
    later = {s.name: [u for u in s.runs if taught[u] > s.number] for s in SECTIONS}
    assert not any(later.values()), {name: uses for name, uses in later.items() if uses}


def test_the_committed_notebooks_are_what_their_sources_build():
    stale = [u.path.name for u in notebook_source.sync(write=False) if u.changed]
    assert not stale, f"{stale} differ from their sources: run `course build-notebooks`"


def test_a_changed_source_is_reported_stale_and_rebuilt(tmp_path, monkeypatch):
    copy = tmp_path / "notebooks"
    shutil.copytree(syllabus.NOTEBOOK_DIR, copy)
    monkeypatch.setattr(syllabus, "NOTEBOOK_DIR", copy)
    source = SECTIONS[2].source
    source.write_text(source.read_text() + "\n# %%\nprint('one more cell')\n")
    assert [u.changed for u in notebook_source.sync(write=False)] == [s is SECTIONS[2] for s in SECTIONS]
    notebook_source.sync(write=True)
    assert not any(u.changed for u in notebook_source.sync(write=False))
    assert read(SECTIONS[2]).cells[-1].source == "print('one more cell')"


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_the_notebook_is_valid_and_carries_no_outputs(section):
    notebook = read(section)
    nbformat.validate(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} has committed outputs"


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_the_notebook_opens_with_its_level_what_it_builds_and_its_exercises(section):
    header = read(section).cells[0].source
    assert header.startswith(f"# {section.number}. {section.title}\n")
    assert f"| **Level** | {section.level} |" in header
    assert section.builds in header
    for name in section.exercises:
        exercise = catalog.get(name)
        assert f"`exercises/{exercise.relpath}`" in header and f"`pytest exercises/{name}`" in header
        assert all(f"`{function}`" in header for function in exercise.functions)
    if not section.exercises:
        assert "none graded" in header
    # Every exercise the notebook runs, its own and the earlier ones it uses, with the command that checks it.
    for name in section.runs:
        assert f"`exercises/{catalog.get(name).relpath}`" in header and f"`pytest exercises/{name}`" in header
    assert ("| **Also runs your** |" in header) == bool(section.uses)


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_the_setup_cell_installs_the_course_on_colab_only(section):
    notebook = read(section)
    setup = code_cells(notebook)[0]
    assert SETUP_TAG in tags(setup)
    lines = setup.source.splitlines()
    colab = lines.index('if "google.colab" in sys.modules:')
    pip = next(i for i, line in enumerate(lines) if "%pip install" in line)
    assert pip > colab and lines[pip].startswith("        "), "pip must run only inside the Colab branch"
    assert f"git+{syllabus.REPOSITORY_URL}#egg={syllabus.DISTRIBUTION}" in lines[pip]
    assert "%load_ext autoreload" in lines and "%autoreload 2" in lines
    assert "use a GPU: Runtime > Change runtime type" in setup.source
    assert "Runtime > Change runtime type" in notebook.cells[1].source


def test_the_distribution_name_is_the_projects():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == syllabus.DISTRIBUTION


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_exercise_cells_import_the_students_code_by_its_module_name(section):
    notebook = read(section)
    code = "\n".join(c.source for c in code_cells(notebook))
    for name in section.exercises:
        assert f"from exercises.{name}.{name} import" in code
    assert not re.search(r"^\s*(from|import) reference\b|submission\.activate", code, re.MULTILINE)
    exercise_cells = [c for c in code_cells(notebook) if EXERCISE_TAG in tags(c)]
    assert bool(exercise_cells) == bool(section.exercises)
    if not section.exercises:
        runs_exercise_code = re.search(r"^\s*(from|import) exercises\b|TransformerLM|load_checkpoint", code, re.MULTILINE)
        assert not runs_exercise_code, f"{section.name} has no exercise, so it must not run exercise code"


# What each section runs of the student's code, as the syllabus lists it; the build checks these lists (below).
RUNS = {
    0: (), 1: ("jax_basics",), 2: (), 3: (), 4: ("positional_encoding",), 5: ("positional_encoding", "attention"),
    6: ("positional_encoding", "attention", "transformer"),
    7: ("positional_encoding", "attention", "loss", "transformer"),
    8: ("positional_encoding", "attention", "loss", "transformer", "encoder_decoder"),
    9: ("positional_encoding", "attention", "loss", "transformer", "training", "generation"),
    10: ("positional_encoding", "attention", "transformer", "generation"),
}


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_the_syllabus_lists_every_exercise_the_notebook_runs(section):
    cells = parse_source(section.source.read_text(), section.source.name)
    assert set(notebook_source.exercises_run(cells)) == set(section.runs)
    assert section.runs == RUNS[section.number]
    assert set(section.exercises) <= set(section.runs) and not set(section.exercises) & set(section.uses)


def code(text):
    return [nbformat.v4.new_code_cell(text)]


@pytest.mark.parametrize(
    ("source", "runs"),
    [
        ("from exercises.loss.loss import next_token_loss", {"loss": "`from exercises.loss.loss import ...`"}),
        ("import numpy as np\nfrom course import tokenizer\ntokenizer.encode('a')", {}),
        # TransformerLM loads three exercise modules; the transformer exercise imports the attention exercise
        ("from course.model import CONFIGS, TransformerLM\nTransformerLM(CONFIGS['tiny'])", {
            "positional_encoding": "`TransformerLM` of course.model", "attention": "`TransformerLM` of course.model",
            "transformer": "`TransformerLM` of course.model"}),
        # through the course's code: load_checkpoint builds a TransformerLM; a module imported whole, used by attribute
        ("from course import checkpoint\n%time model = checkpoint.load_checkpoint(checkpoint.DEMO_CHECKPOINT)",
         {"positional_encoding": "`load_checkpoint` of course.checkpoint", "attention": "`load_checkpoint` of course.checkpoint",
          "transformer": "`load_checkpoint` of course.checkpoint"}),
        ("from course.notebook_helpers import recording_attention\nwith recording_attention() as calls:\n    pass", {
            "transformer": "`recording_attention` of course.notebook_helpers", "attention": "exercises/transformer imports it"}),
        ("from course.train import optimizer_for\noptimizer_for", {}),  # the module loads exercises, this function none
        ("from course.model import TransformerLM", {}),  # imported, never used
        ("from exercises.training.training import train_step", {
            "training": "`from exercises.training.training import ...`", "loss": "exercises/training imports it"}),
    ],
)
def test_exercises_run_reads_imports_and_the_course_code_they_reach(source, runs):
    assert notebook_source.exercises_run(code(source)) == runs


def test_the_build_fails_when_the_syllabus_misses_or_invents_an_exercise():
    section = syllabus.get(7)
    missing = dataclasses.replace(section, uses=("positional_encoding", "attention"))
    with pytest.raises(SourceError, match=re.escape(
            "07_loss.py (section 7 in course/syllabus.py): runs transformer (`TransformerLM` of course.model), "
            "which the syllabus does not list: add them to its uses")):
        notebook_source.build_notebook(missing)
    extra = dataclasses.replace(section, uses=(*section.uses, "generation"))
    with pytest.raises(SourceError, match="runs none of generation, which the syllabus lists: remove them"):
        notebook_source.build_notebook(extra)


@pytest.mark.parametrize("section", SECTIONS, ids=IDS)
def test_every_code_cell_is_valid_ipython(section):
    for cell in code_cells(read(section)):
        compile(TransformerManager().transform_cell(cell.source), f"{section.name}:{cell.id}", "exec")


def leaked(text: str, hidden: dict[str, str]) -> list[str]:
    return [f"{secret!r} from {origin}" for secret, origin in hidden.items() if secret in text]


def test_no_notebook_holds_a_line_of_a_solution():
    hidden = release.secrets(ROOT)  # the same definition of hidden text as `course release` scans for
    answer = "return jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))"
    assert leaked(f"x = 1\n    {answer}\n", hidden), "the check must see a solution line"
    for section in SECTIONS:
        for path in (section.source, section.notebook):
            assert not leaked(path.read_text(), hidden), f"{path.name} shows solutions: {leaked(path.read_text(), hidden)}"


# ---------------------------------------------------------------- the percent format


def test_parse_source_reads_markdown_code_and_tags():
    cells = parse_source('# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %% tags=["exercise"]\n%time f(x)\n')
    assert [(c.cell_type, c.source, c.metadata) for c in cells] == [
        ("markdown", "# Title\n\ntext", {}),
        ("code", "x = 1", {}),
        ("code", "%time f(x)", {"tags": ["exercise"]}),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1\n# %%\ny = 2\n", "s.py:1: expected a '# %%' cell marker"),
        ("# %%\nx = 1\n# %% [markdown]\nnot a comment\n", "s.py:4: a markdown line must start with '# '"),
        ("# %% tags=[1]\nx\n", "s.py:1: tags must be a JSON list of strings"),
        ("# %% tags=[oops]\nx\n", "s.py:1: tags must be a JSON list of strings"),
        ("# %% [code]\nx\n", "s.py:1: expected '# %%'"),
        # what jupytext reads but the course's sources do not use: raw cells, titles, other metadata, other markers
        ("# %%\nx\n# %% [raw]\n# x\n", "s.py:3: expected '# %%'"),
        ("# %% [markdown] Title\n# x\n", "s.py:1: expected '# %%'"),
        ('# %% active="ipynb"\nx\n', "s.py:1: expected '# %%'"),
        ("# %%\nx\n#%%\ny\n", "s.py:1: jupytext reads 2 cells here"),
        ("# %%\n\n# %%\nx\n", "s.py:1: empty cell"),
        ("", "s.py: no cells"),
    ],
)
def test_parse_source_errors_name_the_file_and_line(text, message):
    with pytest.raises(SourceError, match=re.escape(message)):
        parse_source(text, "s.py")


def test_static_widgets_draws_a_progress_bar_from_the_stored_state():
    state = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_progress", "IPY_MODEL_right"]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "training: 100%"}},
        "progress": {"model_name": "FloatProgressModel", "state": {"value": 30.0, "max": 30.0}},
        "right": {"model_name": "HTMLModel", "state": {"value": "30/30 [00:01]"}},
    }
    cell = nbformat.v4.new_code_cell("for i in tqdm(range(30)): pass")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "  0%|          | 0/30", "application/vnd.jupyter.widget-view+json": {"model_id": "bar"}})]
    notebook = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}})
    static = static_widgets(notebook)
    assert "widgets" not in static.metadata and "widgets" in notebook.metadata  # a copy; the input is untouched
    html = static.cells[0].outputs[0].data["text/html"]
    assert html == '<div class="course-widget"><span>training: 100%</span> <progress value="30.0" max="30.0"></progress> <span>30/30 [00:01]</span></div>'
    assert "application/vnd.jupyter.widget-view+json" not in static.cells[0].outputs[0].data


# ---------------------------------------------------------------- execution in a real kernel


# Three kernels at a time keep two cores busy while one of them compiles; the
# two long notebooks (the ones that ask Colab for a GPU) start first.
JOBS = 3


def longest_first(sections):
    return tuple(sorted(sections, key=lambda s: not s.gpu))


@pytest.fixture(scope="module")
def reference_runs():
    """Every notebook executed against reference/ in the quick setting (shared by the tests below), in section order."""
    runs = execute_notebooks(longest_first(SECTIONS), target="reference", quick=True, jobs=JOBS)
    return sorted(runs, key=lambda run: run.section.number)


def test_every_notebook_runs_to_the_end_against_the_reference(reference_runs):
    failures = {run.section.name: run.error.traceback for run in reference_runs if not run.ok}
    assert not failures, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
    for run in reference_runs:
        assert all(cell.execution_count is not None for cell in code_cells(run.notebook)), run.section.name


def test_every_notebook_draws_its_plots(reference_runs):
    for run in reference_runs:
        images = sum("image/png" in o.get("data", {}) for c in code_cells(run.notebook) for o in c.outputs)
        assert images >= PLOTS[run.section.number], f"{run.section.name}: {images} plots, expected {PLOTS[run.section.number]}"


def test_against_the_stubs_each_notebook_stops_at_its_first_exercise_cell_with_the_message():
    # Sections without exercises import no exercise code (checked above), so the stubs change nothing there;
    # section 0, the compiled demo that opens the course, runs too: on a fresh checkout it must write Python.
    opening = SECTIONS[0]
    runs = execute_notebooks(longest_first(s for s in SECTIONS if s.exercises or s is opening), target=ROOT / "exercises",
                             quick=True, jobs=JOBS)
    (demo,) = [run for run in runs if run.section is opening]
    assert demo.ok, demo.error
    written = "".join(o.get("text", "") for c in code_cells(demo.notebook) for o in c.outputs)
    assert "def " in written and "self" in written and "\n    " in written, written[:2000]  # Python-looking text
    for run in (run for run in runs if run.section is not opening):
        exercise_cells = [i for i, c in enumerate(run.notebook.cells) if EXERCISE_TAG in tags(c)]
        error = run.error
        assert error is not None and error.index == exercise_cells[0], f"{run.section.name}: {error}"
        assert error.ename == "NotImplementedError" and error.exercise
        assert re.match(r"not implemented yet: implement [\w.]+ in exercises/\w+/\w+\.py", error.evalue), error.evalue
        # The student sees the message and what to do, not a traceback through the course's code.
        assert error.traceback.startswith(error.evalue), error.traceback
        assert "Your file:" in error.traceback and "pytest exercises/" in error.traceback
        assert "Traceback" not in error.traceback and 'File "' not in error.traceback


def test_notebooks_command_exits_non_zero_when_a_notebook_stops(tmp_path):
    out = tmp_path / "executed"
    result = CliRunner().invoke(main, ["notebooks", "--execute", "-n", "4", "--quick", "--output", str(out)])
    assert result.exit_code == 1, result.output
    assert "not implemented yet: implement sinusoidal_positional_encoding" in result.output
    assert "0/1 notebooks ran to the end" in result.output
    # The notebook that stopped is written all the same: outputs up to its failing cell, none after.
    assert [p.name for p in out.iterdir()] == ["04_positional_encoding.ipynb"]
    executed = nbformat.read(out / "04_positional_encoding.ipynb", as_version=4)
    nbformat.validate(executed)
    cells = executed.cells
    failing = next(i for i, c in enumerate(cells) if any(o.output_type == "error" for o in c.get("outputs", [])))
    assert failing == next(i for i, c in enumerate(cells) if EXERCISE_TAG in tags(c))
    assert all(c.execution_count is not None for c in cells[:failing] if c.cell_type == "code")
    assert any(o.output_type == "stream" for c in cells[:failing] if c.cell_type == "code" for o in c.outputs)
    assert all(c.outputs == [] and c.execution_count is None for c in cells[failing + 1:] if c.cell_type == "code")
    assert [c.source for c in cells] == [c.source for c in read(syllabus.get(4)).cells]


def test_write_notebooks_names_each_as_its_source_and_never_writes_into_the_sources(tmp_path, monkeypatch):
    runs = [NotebookRun(s, read(s), 1.0, None) for s in (syllabus.get(2), syllabus.get(5))]
    written = write_notebooks(runs, output=tmp_path / "new" / "folder")
    assert [p.name for p in written] == ["02_flax_nnx.ipynb", "05_attention.ipynb"]
    assert nbformat.read(written[1], as_version=4) == runs[1].notebook
    copy = tmp_path / "notebooks"
    shutil.copytree(syllabus.NOTEBOOK_DIR, copy)
    monkeypatch.setattr(syllabus, "NOTEBOOK_DIR", copy)
    for inside in (copy, copy / "executed", copy / "src" / ".." / "out"):
        with pytest.raises(ValueError, match="output: .* is inside .*notebooks, whose notebooks it would overwrite"):
            write_notebooks(runs, output=inside)
    assert not (copy / "executed").exists() and not (copy / "out").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        write_notebooks(runs, output=tmp_path / "file")


def test_notebooks_output_is_refused_inside_the_sources_before_anything_runs():
    inside = CliRunner().invoke(main, ["notebooks", "--execute", "-n", "4", "--output", str(syllabus.NOTEBOOK_DIR / "run")])
    assert inside.exit_code == 2 and "--output" in inside.output and "would overwrite" in inside.output
    assert "notebooks ran" not in inside.output and not (syllabus.NOTEBOOK_DIR / "run").exists()
    alone = CliRunner().invoke(main, ["notebooks", "--output", "somewhere"])
    assert alone.exit_code == 2 and "--output needs --execute" in alone.output


def test_notebooks_command_names_bad_arguments():
    missing = CliRunner().invoke(main, ["notebooks", "--execute", "--with", "/no/such/dir"])
    assert missing.exit_code == 2 and "--with" in missing.output and "does not exist" in missing.output
    unknown = CliRunner().invoke(main, ["notebooks", "-n", "42"])
    assert unknown.exit_code == 2 and "--section" in unknown.output and "no section numbered 42" in unknown.output
    site = CliRunner().invoke(main, ["site", "out", "--with", "/no/such/dir"])
    assert site.exit_code == 2 and "--with" in site.output


def test_notebooks_command_checks_and_lists():
    checked = CliRunner().invoke(main, ["build-notebooks", "--check"])
    assert checked.exit_code == 0 and "course/notebooks/10_your_model.ipynb: up to date" in checked.output
    listed = CliRunner().invoke(main, ["notebooks"])
    assert listed.exit_code == 0 and "5. Understanding attention (intermediate): course/notebooks/05_attention.ipynb" in listed.output


# ---------------------------------------------------------------- the site in a browser


def test_a_notebook_that_stopped_is_reported_on_the_index_and_still_gets_its_page(tmp_path):
    section = syllabus.get(4)
    message = "not implemented yet: implement sinusoidal_positional_encoding in exercises/positional_encoding/positional_encoding.py"
    stopped = NotebookRun(section, read(section), 3.2, CellError(8, "NotImplementedError", message, message, True))
    index, page = write_site(tmp_path, [stopped], target=ROOT / "exercises", quick=True)
    text = index.read_text()
    assert f"stopped at cell 8: {message}" in text and "ran in" not in text
    assert page.name == "04_positional_encoding.html" and "4. Positional encodings" in page.read_text()


def test_the_index_escapes_what_it_shows():
    section = syllabus.get(5)
    error = CellError(None, "ValueError", 'expected <b>3</b> & "4"', "", False)
    text = index_page([NotebookRun(section, read(section), 1.0, error)], Path("/tmp/a<b>"), quick=False)
    assert "stopped at a cell: ValueError: expected &lt;b&gt;3&lt;/b&gt; &amp; &#34;4&#34;</span>" in text
    assert "<code>/tmp/a&lt;b&gt;</code>" in text and "<b>" not in text
    assert f'<a href="{section.name}.html">5. {section.title}</a>' in text


class _Page(HTMLParser):
    """The links, embedded images and title of a page's DOM."""

    def __init__(self):
        super().__init__()
        self.links, self.images, self.progress_bars, self.title, self._in_title = [], [], 0, "", False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "img" and (attrs.get("src") or "").startswith("data:image/png;base64,"):
            self.images.append(attrs["src"])
        elif tag == "progress":
            self.progress_bars += 1
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


@needs_chromium
def test_the_site_renders_in_chromium_with_its_plots(reference_runs, tmp_path):
    site = tmp_path / "site"
    pages = write_site(site, reference_runs, target=ROOT / "reference", quick=True)
    assert [p.name for p in pages] == ["index.html", *(f"{s.name}.html" for s in SECTIONS)]
    profile = tmp_path / "profile"

    index = _Page()
    index.feed(chromium("--dump-dom", pages[0].as_uri(), profile=profile).stdout)
    assert index.title == "Introduction to Transformers with JAX"
    assert index.links == [f"{s.name}.html" for s in SECTIONS]  # every section, in order

    for section, page in zip(SECTIONS, pages[1:]):
        dom = _Page()
        dom.feed(chromium("--dump-dom", page.as_uri(), profile=profile).stdout)
        assert dom.title == f"{section.number}. {section.title}"
        assert len(dom.images) >= PLOTS[section.number], f"{page.name}: {len(dom.images)} images"
        assert "index.html" in dom.links
        if section.number == 9:
            assert dom.progress_bars >= 1, "the training progress bar is missing from the page"

    # Screenshots, kept in the tests' artifacts folder for a person to look at.
    for page in (pages[0], pages[5]):
        shot = screenshot(page.as_uri(), f"site_{page.stem}.png", profile=profile)
        pixels = read_png(shot)
        assert pixels.shape[:2] == (1600, 1280) and pixels.std() > 0.05, f"{shot} looks blank"


class _Text(HTMLParser):
    """A DOM's typeset formulas (MathJax's ``mjx-container`` elements, each with its SVG) and its prose.

    The prose is the text outside scripts, styles, code and formulas: where
    a ``$`` left there would be a formula MathJax did not typeset.
    """

    SKIPPED = ("script", "style", "pre", "code", "mjx-container")

    def __init__(self):
        super().__init__()
        self.formulas, self.drawn, self.errors, self.prose, self._skipping = 0, 0, 0, [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "mjx-container":
            self.formulas += 1
        elif tag == "svg" and self._skipping:
            self.drawn += 1
        if "data-mjx-error" in attrs or tag == "merror":
            self.errors += 1
        if tag in self.SKIPPED:
            self._skipping += 1

    def handle_endtag(self, tag):
        if tag in self.SKIPPED:
            self._skipping -= 1

    def handle_data(self, data):
        if not self._skipping:
            self.prose.append(data)


def formulas_in(section) -> int:
    """How many formulas (``$...$`` and ``$$...$$``) the section's markdown cells hold, code spans aside."""
    text = "\n".join(c.source for c in read(section).cells if c.cell_type == "markdown")
    text = re.sub(r"`[^`]*`", "", text)
    return len(re.findall(r"\$\$.+?\$\$|\$[^$]+?\$", text, re.DOTALL))


@needs_chromium
def test_a_site_of_two_sections_typesets_its_formulas_with_no_network(tmp_path):
    site = tmp_path / "site"
    result = CliRunner().invoke(main, ["site", str(site), "-n", "5", "-n", "7", "--with", "reference", "--quick"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in site.iterdir()) == ["05_attention.html", "07_loss.html", "index.html", "mathjax"]
    assert (site / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000 and (site / "mathjax" / "LICENSE").is_file()
    profile = tmp_path / "profile"

    index = _Page()
    index.feed(chromium("--dump-dom", (site / "index.html").as_uri(), profile=profile).stdout)
    assert index.links == ["05_attention.html", "07_loss.html"]  # only these sections
    for name, others in (("05_attention", ["07_loss.html"]), ("07_loss", ["05_attention.html"])):
        page = (site / f"{name}.html").read_text()
        scripts = re.findall(r'<script[^>]* src="([^"]*)"', page)
        assert scripts == ["mathjax/tex-svg-full.js"], scripts  # nothing from the network
        dom = _Page()
        dom.feed(page)
        assert sorted({link for link in dom.links if link.endswith(".html")}) == sorted(["index.html", *others])

        # Networking is off in chromium(); virtual time lets MathJax finish before the DOM is dumped.
        text = _Text()
        text.feed(chromium("--virtual-time-budget=15000", "--dump-dom", (site / f"{name}.html").as_uri(), profile=profile).stdout)
        expected = formulas_in(syllabus.get(int(name[:2])))
        assert expected > 10 and text.formulas == expected, f"{name}: {text.formulas} of {expected} formulas typeset"
        assert text.drawn == expected and text.errors == 0
        prose = "".join(text.prose)
        assert "$" not in prose, f"{name}: untypeset TeX: {prose[max(0, prose.index('$') - 80):prose.index('$') + 80]!r}"

    shot = screenshot((site / "05_attention.html").as_uri(), "site_formulas_05_attention.png", profile=profile, wait_ms=15000)
    assert read_png(shot).std() > 0.05, f"{shot} looks blank"


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)
