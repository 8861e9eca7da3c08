"""``course lock-grader``: the lock files that the Gradescope bundle's ``setup.sh`` installs from.

Two files in ``graders/templates/`` (the bundle copies them to its root):

- ``requirements.lock``: the grading dependencies (``[tool.course]
  grading-dependencies`` of ``pyproject.toml``: names of ``project.dependencies``,
  with their ranges there; no notebook stack, no instructor's tools) and
  everything they need, exact versions with the hashes of every file, resolved
  by ``uv pip compile`` for Linux and the Python named in its header (``# python:
  X.Y``, the one ``setup.sh`` installs). Versions installed here win
  (constraints), so the bundle installs what this machine tested;
- ``bootstrap.lock``: ``uv`` itself, pinned with its hashes, which the image's
  own Python (3.10 on Ubuntu 22.04, too old for jax) installs with pip.

Writing them needs ``uv`` and the package index; :func:`stale` checks them
against ``pyproject.toml`` without either.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement

from authoring.release import requirement_name
from course.submission import repo_root

LOCKS = Path("graders") / "templates"
GRADING_LOCK = "requirements.lock"
BOOTSTRAP_LOCK = "bootstrap.lock"
PYTHON_LINE = "# python: "
INPUT_LINE = "# input: "  # one per grading requirement, as pyproject.toml writes it
PLATFORM = "x86_64-manylinux_2_28"  # Gradescope's images: x86-64 Linux with glibc 2.35 (Ubuntu 22.04) or newer
HEADER = "# The Gradescope bundle's {what}: written by `course lock-grader`, do not edit.\n"


def grading_requirements(root: Path) -> list[str]:
    """The requirement strings of ``project.dependencies`` that ``[tool.course] grading-dependencies`` names.

    Raises:
      ValueError: a name is not one of ``project.dependencies``.
    """
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    by_name = {requirement_name(d): d for d in pyproject["project"]["dependencies"]}
    names = pyproject["tool"]["course"]["grading-dependencies"]
    unknown = [n for n in names if requirement_name(n) not in by_name]
    if unknown:
        raise ValueError(f"grading-dependencies: {', '.join(unknown)} not in project.dependencies of {root / 'pyproject.toml'}")
    return [by_name[requirement_name(n)] for n in names]


def pins(lock: str) -> dict[str, str]:
    """The ``name==version`` lines of a lock file's text, by normalized name."""
    return {requirement_name(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", lock, re.MULTILINE)}


def header_values(lock: str, prefix: str) -> list[str]:
    """The values of a lock file's header lines that start with ``prefix``."""
    return [line[len(prefix):] for line in lock.splitlines() if line.startswith(prefix)]


def stale(root: Path) -> list[str]:
    """Why the committed lock files no longer match ``pyproject.toml``, one line each (none when they do)."""
    folder = root / LOCKS
    missing = [name for name in (GRADING_LOCK, BOOTSTRAP_LOCK) if not (folder / name).is_file()]
    if missing:
        return [f"{folder / name} is missing" for name in missing]
    lock = (folder / GRADING_LOCK).read_text()
    wanted = grading_requirements(root)
    problems = []
    if header_values(lock, INPUT_LINE) != wanted:
        problems.append(f"{GRADING_LOCK} was locked from {header_values(lock, INPUT_LINE)}, pyproject.toml now asks {wanted}")
    pinned = pins(lock)
    for text in wanted:
        requirement = Requirement(text)
        found = pinned.get(requirement_name(text))
        if found is None or not requirement.specifier.contains(found, prereleases=True):
            problems.append(f"{GRADING_LOCK} pins {requirement.name} to {found}, outside {text!r}")
    if len(header_values(lock, PYTHON_LINE)) != 1:
        problems.append(f"{GRADING_LOCK} names no Python ({PYTHON_LINE}X.Y)")
    if "uv" not in pins((folder / BOOTSTRAP_LOCK).read_text()):
        problems.append(f"{BOOTSTRAP_LOCK} pins no uv")
    return problems


def find_uv() -> str:
    """The ``uv`` on PATH.

    Raises:
      RuntimeError: there is none.
    """
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv: not found on PATH; install it (`pip install uv`) to write the lock files")
    return uv


def compile_lock(requirements: list[str], *, python: str, constraints: list[str]) -> str:
    """``uv pip compile --generate-hashes`` of ``requirements`` for :data:`PLATFORM` and ``python``; its body, no header.

    Raises:
      RuntimeError: ``uv`` is not installed, or it could not resolve.
    """
    with tempfile.TemporaryDirectory() as scratch:
        inputs, pinned = Path(scratch) / "requirements.in", Path(scratch) / "constraints.txt"
        inputs.write_text("\n".join(requirements) + "\n")
        pinned.write_text("\n".join(constraints) + "\n")
        done = subprocess.run([find_uv(), "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--generate-hashes",
                               "--python-version", python, "--python-platform", PLATFORM, "--constraint", str(pinned), str(inputs)],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"uv pip compile failed:\n{done.stderr.strip()}")
    return done.stdout


def installed() -> list[str]:
    """``name==version`` of every distribution installed here: the versions this machine tested.

    One per name, the one Python imports (the first on ``sys.path``), so that the constraints never conflict.
    """
    versions: dict[str, str] = {}
    for distribution in distributions():
        if distribution.metadata["Name"]:
            versions.setdefault(requirement_name(distribution.metadata["Name"]), distribution.version)
    return [f"{name}=={version}" for name, version in sorted(versions.items())]


def write_locks(root: Path | None = None, *, python: str | None = None) -> list[Path]:
    """Writes both lock files (network: the package index); returns their paths.

    Args:
      python: the bundle's Python, ``X.Y`` (default: this interpreter's, the one the tests ran on).

    Raises:
      RuntimeError: as :func:`compile_lock`.
    """
    root = root or repo_root()
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    wanted = grading_requirements(root)
    uv_version = subprocess.run([find_uv(), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    grading = (HEADER.format(what="environment") + f"{PYTHON_LINE}{python}\n" + "".join(f"{INPUT_LINE}{r}\n" for r in wanted)
               + compile_lock(wanted, python=python, constraints=installed()))
    # uv installs itself with the image's Python, whatever its version: resolved for 3.10, the oldest Gradescope ships.
    bootstrap = HEADER.format(what="installer") + compile_lock([f"uv=={uv_version}"], python="3.10", constraints=[])
    paths = [root / LOCKS / GRADING_LOCK, root / LOCKS / BOOTSTRAP_LOCK]
    for path, text in zip(paths, (grading, bootstrap)):
        path.write_text(text)
    return paths
