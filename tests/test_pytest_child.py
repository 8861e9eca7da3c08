"""course.pytest_child: pytest in a child process, its JSON report and output back."""

import os

from course.pytest_child import run_pytest

TESTS = '''
import os
import time


def test_sees_its_environment():
    assert os.environ["CHILD_MARK"] == "42"


def test_fails():
    assert 1 == 2, "one is not two"


def test_sleeps():
    if os.environ.get("CHILD_SLEEP"):
        time.sleep(60)
'''


def test_the_report_and_output_come_back(tmp_path):
    (tmp_path / "test_child.py").write_text(TESTS)
    report, log = run_pytest([str(tmp_path)], cwd=tmp_path, env={**os.environ, "CHILD_MARK": "42"}, timeout=120)
    outcomes = {test["nodeid"].split("::")[-1]: test["outcome"] for test in report["tests"]}
    assert outcomes == {"test_sees_its_environment": "passed", "test_fails": "failed", "test_sleeps": "passed"}
    assert "one is not two" in log and "1 failed, 2 passed" in log


def test_a_child_past_its_time_gives_no_report(tmp_path):
    (tmp_path / "test_child.py").write_text(TESTS)
    env = {**os.environ, "CHILD_MARK": "42", "CHILD_SLEEP": "1"}
    report, log = run_pytest([str(tmp_path)], cwd=tmp_path, env=env, timeout=5, new_session=True)
    assert report is None and log.startswith("pytest took longer than 5 s and was stopped")
