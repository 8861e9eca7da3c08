"""A trusted pytest process that runs one grading's suites after another, for a batch job.

``course grade`` starts a pytest process per grading: Python, pytest, JAX,
the plugin and the reference cost it about two seconds of processor time
before the first case, and the reference's compiled programs are lost with
it. A class run's job (:mod:`graders.batch`) keeps one :class:`PytestServer`
instead, which runs each of its gradings with ``pytest.main`` in the same
process: the start-up is paid once per job, and the reference's programs stay
compiled for the next student (same seed, same shapes).

Isolation is unchanged: the server is the grader's own trusted process, which
never runs a submission's code; every grading still starts a fresh sandboxed
worker for its student (the plugin's session) and kills it at the end. What a
grading leaves in the server is the reference's side only: imported suites and
reference modules, and compiled programs keyed by the reference's functions
and the suites' shapes, never by a worker's answer. A server that fails,
hangs past a grading's budget or dies is killed, that grading gets no report
(a ``grader_error``, as a crashed pytest process does), and the next grading
starts a new server.

Protocol: one JSON line per grading on the server's stdin, ``{"args": [...],
"log": PATH}`` (pytest's arguments as for :func:`course.pytest_child.run_pytest`,
the file for its output); one JSON line back on the server's stdout, ``{"exit":
code}``, once that grading's report is written. pytest's own output goes to
the log file: the server points its standard output and error there. The
server ends when its stdin closes: when its parent closes it or ends.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from course.pytest_child import LOG_CHARS, pytest_arguments, read_report

STARTED_VAR = "COURSE_GRADING_STARTED"  # when the server received a grading (time.time()), for the plugin's timings


class PytestServer:
    """A server process (started at the first :meth:`run`) and how to reach it.

    Args:
      cwd: its working directory.
      env: its whole environment.
    """

    def __init__(self, *, cwd: str | os.PathLike[str], env: Mapping[str, str]):
        self.cwd, self.env = Path(cwd), dict(env)
        self.process: subprocess.Popen | None = None
        self.gradings = 0  # run by the current process
        self.stopped = False  # by stop(): no grading runs any more

    def run(self, args: Sequence[str], *, timeout: float) -> tuple[dict | None, str]:
        """As :func:`course.pytest_child.run_pytest` with a new session, in the server.

        Returns:
          ``(report, log)``: the pytest-json-report document (``None`` when the
          server wrote none: it died, failed or ran past ``timeout``, and was
          stopped) and the end of pytest's output.
        """
        with tempfile.TemporaryDirectory(prefix="course-pytest-") as tmp:
            report_path, log_path = Path(tmp) / "report.json", Path(tmp) / "pytest.log"
            request = {"args": pytest_arguments(report_path, args), "log": str(log_path)}
            problem = self._exchange(request, timeout)
            log = log_path.read_text(errors="replace") if log_path.is_file() else ""
            if problem:
                self.close()
                return None, f"{log}\n{problem}"[-LOG_CHARS:]
            self.gradings += 1
            return read_report(report_path), log[-LOG_CHARS:]

    def _exchange(self, request: dict, timeout: float) -> str | None:
        """Sends ``request`` and waits for its answer; what went wrong, or ``None``."""
        if self.stopped:
            return "the class run was stopped"
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, "-m", "graders.engine.pytest_server"], cwd=self.cwd,
                                            env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
            self.gradings = 0
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            return f"the pytest server died (exit status {self.process.poll()})"
        deadline = time.monotonic() + timeout
        answer = b""
        while not answer.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                return f"pytest took longer than {timeout:.0f} s and was stopped"
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    return f"the pytest server died (exit status {self.process.wait()})"
                answer += chunk
        try:
            exit_code = json.loads(answer)["exit"]
        except (ValueError, KeyError, TypeError):
            return f"the pytest server answered {answer[:200]!r}"
        return None if isinstance(exit_code, int) and exit_code >= 0 else f"the pytest server failed (exit {exit_code})"

    def stop(self) -> None:
        """From another thread: ends the grading in progress at once (its :meth:`run` returns no report) and every
        later one."""
        self.stopped = True
        process = self.process
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Stops the server and everything in its session."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            pipe.close()
        self.process = None


def main() -> None:
    """The server: answers each request line of stdin (see the module docstring)."""
    import traceback

    import pytest

    answers = os.fdopen(os.dup(1), "w")
    while line := sys.stdin.readline():
        request = json.loads(line)
        with open(request["log"], "w") as log:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            os.environ[STARTED_VAR] = str(time.time())  # the grading's start-up, for its timings
            try:
                code = int(pytest.main(list(request["args"])))
            except BaseException:  # the server's own failure: its parent stops it and starts another
                traceback.print_exc()
                code = -1
            sys.stdout.flush()
            sys.stderr.flush()
        answers.write(json.dumps({"exit": code}) + "\n")
        answers.flush()
        if code < 0:
            return


if __name__ == "__main__":
    main()
