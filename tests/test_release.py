"""`course release`: the student repository holds nothing hidden, installs and runs its tests."""

import os
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
    assert sorted(release.requirement_name(d) for d in left_out) == ["import-linter", "jinja2", "jupytext"]
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
    found = release.leaks(copy)
    assert any("exercises/loss/loss.py" in f and "reference/loss/loss.py" in f for f in found), found
    assert sorted(f for f in found if "a hidden folder" in f) == [f"course/{h}: a hidden folder" for h in ("authoring", "graders", "reference")], found


def test_hidden_test_names_count_as_secrets(tmp_path):
    fake = tmp_path / "root"
    for folder in ("reference", "exercises", "graders"):
        shutil.copytree(ROOT / folder, fake / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (fake / "graders" / "test_hidden_demo.py").write_text("def test_the_secret_edge_case():\n    pass\n")
    assert "test_the_secret_edge_case" in release.secrets(fake)


def test_the_release_builds_and_its_tests_run(released, tmp_path):
    wheel_dir = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(released)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "exercises/attention/fixtures.npz" in names and "course/demo/model.npz" in names
    assert not any(n.startswith(("reference/", "graders/", "authoring/")) for n in names)
    # Installed on its own, the student's `course` has the student's verbs and no instructor's.
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    helped = subprocess.run([sys.executable, "-m", "course", "--help"], cwd=site, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site)})
    verbs = {line.split()[0] for line in helped.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert helped.returncode == 0 and verbs == {"check", "generate", "notebooks", "train"}, helped.stdout + helped.stderr
    env = {**os.environ, "PYTHONPATH": str(released)}
    env.pop("COURSE_SUBMISSION", None)
    stubs = subprocess.run([sys.executable, "-m", "pytest", "exercises/attention", "-q"], cwd=released, env=env, capture_output=True, text=True)
    assert stubs.returncode == 1 and "not implemented yet: implement causal_mask" in stubs.stdout, stubs.stdout[-2000:]
    shutil.copyfile(ROOT / "reference" / "attention" / "attention.py", released / "exercises" / "attention" / "attention.py")
    solved = subprocess.run([sys.executable, "-m", "pytest", "exercises/attention", "-q"], cwd=released, env=env, capture_output=True, text=True)
    assert solved.returncode == 0, solved.stdout[-2000:]


def test_cli_refuses_to_overwrite_and_to_write_inside_the_repo(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["release", str(target)])
    assert result.exit_code == 1 and "not empty" in result.output and (target / "keep.txt").read_text() == "mine"
    inside = CliRunner().invoke(main, ["release", str(ROOT / "out" / "student")])
    assert inside.exit_code == 1 and "inside the course repository" in inside.output
