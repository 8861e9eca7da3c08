"""`course release`: the student repository holds nothing hidden, installs and runs its tests."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from click.testing import CliRunner

from authoring import release
from course import catalog
from course.cli import main
from course.submission import repo_root

ROOT = repo_root()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return release.release(tmp_path_factory.mktemp("student") / "repo")


def test_the_release_has_the_student_files_and_nothing_hidden(released):
    top = {p.name for p in released.iterdir()}
    assert top == {"course", "exercises", "README.md", "pyproject.toml", ".gitignore", ".github"}
    assert (released / ".github" / "workflows" / "tests.yml").read_text().count("course check") == 1
    for exercise in catalog.EXERCISES:
        shipped = released / "exercises" / exercise.relpath
        assert shipped.read_text() == (ROOT / "exercises" / exercise.relpath).read_text()
        assert (released / "exercises" / exercise.name / "fixtures.npz").is_file()
    assert not list(released.rglob("__pycache__"))
    assert release.leaks(released) == []
    readme = (released / "README.md").read_text()
    assert "`exercises/attention/` | intermediate | `causal_mask`, `scaled_dot_product_attention`" in readme


def test_the_student_pyproject_is_the_course_s_less_the_instructor_s_tools_and_verbs(released):
    course = tomllib.loads((ROOT / "pyproject.toml").read_text())
    student = tomllib.loads((released / "pyproject.toml").read_text())
    for key in ("name", "version", "description", "requires-python"):
        assert student["project"][key] == course["project"][key]
    left_out = [d for d in course["project"]["dependencies"] if d not in student["project"]["dependencies"]]
    assert sorted(release.requirement_name(d) for d in left_out) == [
        "django-static-mathjax", "import-linter", "jinja2", "jupytext", "packaging"]
    assert "entry-points" not in student["project"] and student["project"]["scripts"] == {"course": "course.cli:main"}
    assert student["tool"]["setuptools"]["packages"]["find"]["include"] == ["course*", "exercises*"]
    assert student["tool"]["setuptools"]["package-data"].keys() == {"course", "exercises"}


def test_the_scanner_finds_reference_lines_and_hidden_folders(released, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(released, copy)
    stub = copy / "exercises" / "loss" / "loss.py"
    stub.write_text(stub.read_text() + "\n    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [..., V]\n")
    for hidden in ("reference", "graders", "authoring"):
        (copy / "course" / hidden).mkdir()
    compiled = copy / "course" / "demo" / "model.jaxexport"  # a binary, scanned byte for byte
    compiled.write_bytes(compiled.read_bytes() + b"\xff\x00kth_largest = jax.lax.top_k(logits, top_k)[0][..., -1:]  # [..., 1]\x00")
    found = release.leaks(copy)
    assert any("exercises/loss/loss.py" in f and "reference/loss/loss.py" in f for f in found), found
    assert any("course/demo/model.jaxexport" in f and "reference/generation/generation.py" in f for f in found), found
    assert sorted(f for f in found if "a hidden folder" in f) == [f"course/{h}: a hidden folder" for h in ("authoring", "graders", "reference")], found


def test_hidden_test_names_count_as_secrets(tmp_path):
    fake = tmp_path / "root"
    for folder in ("reference", "exercises", "graders"):
        shutil.copytree(ROOT / folder, fake / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (fake / "graders" / "test_hidden_demo.py").write_text("def test_the_secret_edge_case():\n    pass\n")
    assert "test_the_secret_edge_case" in release.secrets(fake)


@pytest.fixture(scope="module")
def wheel(released, tmp_path_factory):
    """The student repository built as a wheel."""
    wheel_dir = tmp_path_factory.mktemp("wheels")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(released)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (built,) = wheel_dir.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory):
    """The wheel installed on its own into a folder: the student's install, whose metadata has no instructor's verbs."""
    target = tmp_path_factory.mktemp("site")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return target


def test_the_release_builds_and_its_tests_run(released, wheel, site, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    assert {"exercises/attention/fixtures.npz", "course/demo/model.npz", "course/demo/model.jaxexport"} <= set(names)
    assert not any(n.startswith(("reference/", "graders/", "authoring/")) for n in names)
    # Installed on its own, the student's `course` has the student's verbs and no instructor's.
    helped = subprocess.run([sys.executable, "-m", "course", "--help"], cwd=site, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site)})
    verbs = {line.split()[0] for line in helped.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert helped.returncode == 0 and verbs == {"check", "generate", "notebooks", "train"}, helped.stdout + helped.stderr
    repo = shutil.copytree(released, tmp_path / "repo")  # the student's checkout; the release stays as written
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("COURSE_SUBMISSION", None)
    demo = subprocess.run([sys.executable, "-m", "course", "generate", "--prompt", "def ", "--max-new-tokens", "40"],
                          cwd=repo, env=env | {"COURSE_COMPILATION_CACHE": "0"}, capture_output=True, text=True)
    assert demo.returncode == 0 and demo.stdout.startswith("def ") and len(demo.stdout) > 40, demo.stdout + demo.stderr
    stubs = subprocess.run([sys.executable, "-m", "pytest", "exercises/attention", "-q"], cwd=repo, env=env, capture_output=True, text=True)
    assert stubs.returncode == 1 and "not implemented yet: implement causal_mask" in stubs.stdout, stubs.stdout[-2000:]
    shutil.copyfile(ROOT / "reference" / "attention" / "attention.py", repo / "exercises" / "attention" / "attention.py")
    solved = subprocess.run([sys.executable, "-m", "pytest", "exercises/attention", "-q"], cwd=repo, env=env, capture_output=True, text=True)
    assert solved.returncode == 0, solved.stdout[-2000:]


def ci_check(repo, site, *extra: str) -> tuple[subprocess.CompletedProcess, int, int]:
    """Runs the release's CI step that checks the exercises in ``repo`` (installed as ``site``); returns it and its points."""
    (line,) = [line for line in (repo / ".github" / "workflows" / "tests.yml").read_text().splitlines() if "course check" in line]
    command = line.split("run:", 1)[1].split("#", 1)[0].split()
    assert command[:2] == ["course", "check"], line
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(site)])}  # the checkout's code, the install's metadata
    env.pop("COURSE_SUBMISSION", None)
    done = subprocess.run([sys.executable, "-m", *command, *extra], cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    found = re.search(r"^Points (\d+)/(\d+)$", done.stdout, re.MULTILINE)
    assert found, done.stdout[-3000:] + done.stderr[-3000:]
    return done, int(found[1]), int(found[2])


def edited(repo, relpath: str, old: str, new: str, *, source=ROOT / "reference") -> None:
    """Writes ``source/relpath`` with ``old`` replaced by ``new`` into the checkout's ``exercises/``."""
    text = (source / relpath).read_text()
    assert old in text, f"{relpath} has no {old!r}"
    (repo / "exercises" / relpath).write_text(text.replace(old, new))


def test_the_student_s_ci_is_green_on_the_stubs(released, site, tmp_path):
    done, points, total = ci_check(shutil.copytree(released, tmp_path / "repo"), site)
    assert done.returncode == 0 and points == 0 and total >= 5 * len(catalog.EXERCISES), done.stdout[-3000:]
    assert "broken" not in done.stdout


def test_the_student_s_ci_counts_wrong_values_as_progress(released, site, tmp_path):
    repo = shutil.copytree(released, tmp_path / "repo")
    edited(repo, "positional_encoding/positional_encoding.py", "jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
           "jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)")  # runs, and puts the columns in the wrong order
    done, points, total = ci_check(repo, site, "-e", "positional_encoding", "-e", "loss")
    assert done.returncode == 0 and 0 < points < total, done.stdout[-3000:]
    assert "broken" not in done.stdout


def test_the_student_s_ci_fails_on_code_that_does_not_run(released, site, tmp_path):
    repo = shutil.copytree(released, tmp_path / "repo")
    edited(repo, "positional_encoding/positional_encoding.py", "if d_model <= 0 or d_model % 2:", "if d_model > 0:")  # always raises
    edited(repo, "attention/attention.py", "def causal_mask(", "def causal_mask((", source=ROOT / "exercises")
    done, points, total = ci_check(repo, site, "-e", "positional_encoding", "-e", "attention", "-e", "loss")
    assert done.returncode == 1 and points < total, done.stdout[-3000:]
    broken = [line for line in done.stdout.splitlines() if line.startswith("broken ")]
    assert [line.split()[1] for line in broken] == ["positional_encoding:", "attention:"], done.stdout[-3000:]
    assert "ValueError: d_model: expected a positive even int" in done.stdout and "SyntaxError" in done.stdout


def test_cli_refuses_to_overwrite_and_to_write_inside_the_repo(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["release", str(target)])
    assert result.exit_code == 1 and "not empty" in result.output and (target / "keep.txt").read_text() == "mine"
    inside = CliRunner().invoke(main, ["release", str(ROOT / "out" / "student")])
    assert inside.exit_code == 1 and "inside the course repository" in inside.output


def test_release_names_edited_stubs_and_releases_them_only_when_asked(tmp_path, monkeypatch):
    fake = tmp_path / "root"
    for folder in ("course", "exercises", "reference"):
        shutil.copytree(ROOT / folder, fake / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "pyproject.toml", fake / "pyproject.toml")
    stub = fake / "exercises" / "loss" / "loss.py"
    stub.write_text(stub.read_text() + "\n# A note for this term's students.\n")
    monkeypatch.setattr(release, "repo_root", lambda: fake)
    out = tmp_path / "student"
    refused = CliRunner().invoke(main, ["release", str(out)])
    assert refused.exit_code == 1 and not out.exists(), refused.output
    assert "exercises/loss/loss.py differs from the stub generated from reference/" in refused.output
    assert "`course stubs`" in refused.output and "overwrites the edits" in refused.output and "--allow-edited-stubs" in refused.output
    assert "attention" not in refused.output  # only the edited stub is named
    allowed = CliRunner().invoke(main, ["release", str(out), "--allow-edited-stubs"])
    assert allowed.exit_code == 0, allowed.output
    assert (out / "exercises" / "loss" / "loss.py").read_text() == stub.read_text()
    # A re-release over the last one (the student repository's clone) keeps its history; a refused one changes nothing.
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "exercises" / "old_exercise").mkdir()
    kept = sorted(p.relative_to(out) for p in out.rglob("*"))
    refused = CliRunner().invoke(main, ["release", str(out), "--force"])
    assert refused.exit_code == 1 and "differs from the stub" in refused.output, refused.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == kept
    replaced = CliRunner().invoke(main, ["release", str(out), "--force", "--allow-edited-stubs"])
    assert replaced.exit_code == 0, replaced.output
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n" and not (out / "exercises" / "old_exercise").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "student"]  # no half-written release beside it
