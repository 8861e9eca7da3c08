"""pytest in a child process, reporting through pytest-json-report.

``course check`` runs the visible tests this way, and the grader its hidden
suites: the code under test never runs in the calling process, and the report
comes back as JSON rather than as parsed terminal output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

LOG_CHARS = 20_000  # the end of pytest's output, where its summary and errors are


def run_pytest(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float,
    new_session: bool = False,
) -> tuple[dict | None, str]:
    """Runs ``python -m pytest -q -p no:cacheprovider --json-report ... *args`` in a child process.

    Args:
      args: pytest's other options and the paths to test.
      cwd: the child's working directory.
      env: the child's whole environment (default: this process's).
      timeout: seconds before the child is killed.
      new_session: start the child in a session of its own (``setsid``), so
        that signals meant for this process's group do not reach it.

    Returns:
      ``(report, log)``: the parsed pytest-json-report document (``None``
      when the child wrote none: it crashed, or ran past ``timeout``), and the
      last :data:`LOG_CHARS` characters of its stdout and stderr.
    """
    with tempfile.TemporaryDirectory(prefix="course-pytest-") as tmp:
        report_path = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pytest", *pytest_arguments(report_path, args)]
        try:
            completed = subprocess.run(command, cwd=cwd, env=None if env is None else dict(env), capture_output=True,
                                       text=True, timeout=timeout, start_new_session=new_session)
            log = completed.stdout + completed.stderr
        except subprocess.TimeoutExpired as expired:
            log = f"pytest took longer than {timeout:.0f} s and was stopped\n{_text(expired.stdout)}{_text(expired.stderr)}"
        return read_report(report_path), log[-LOG_CHARS:]


def pytest_arguments(report: Path, args: Sequence[str]) -> list[str]:
    """pytest's arguments in :func:`run_pytest`: its options, writing the JSON report to ``report``, then ``args``."""
    return ["-q", "-p", "no:cacheprovider", "--json-report", f"--json-report-file={report}",
            "--json-report-omit=log,warnings,keywords,streams", *args]


def _text(output: bytes | str | None) -> str:
    """A timed-out child's output, which subprocess hands back as bytes even in text mode."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def read_report(path: Path) -> dict | None:
    """The JSON report at ``path``; ``None`` when there is none or it is not a JSON object."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
