"""A batch job's pytest server (graders/engine/pytest_server.py): gradings one after another in one trusted process,
the same results as a pytest process per grading, and a new server whenever one hangs or dies."""

import os
import signal

import pytest

from graders.engine import grading
from graders.engine.pytest_server import PytestServer
from tests.conftest import ROOT

SUITE = '''
import os, time

def test_quick():
    assert True

def test_slow_when_asked():
    if os.environ.get("SLOW_TEST") and os.path.exists(os.environ["SLOW_TEST"]):
        time.sleep(60)
'''


@pytest.fixture
def server(tmp_path):
    (tmp_path / "test_suite.py").write_text(SUITE)
    server = PytestServer(cwd=tmp_path, env={**os.environ, "SLOW_TEST": str(tmp_path / "slow")})
    yield server
    server.close()


def outcomes(report):
    return {test["nodeid"].split("::")[-1]: test["outcome"] for test in report["tests"]}


def test_one_server_runs_gradings_one_after_another(server, tmp_path):
    report, log = server.run([str(tmp_path / "test_suite.py")], timeout=60)
    pid = server.process.pid
    assert outcomes(report) == {"test_quick": "passed", "test_slow_when_asked": "passed"} and "2 passed" in log
    report, _ = server.run([str(tmp_path / "test_suite.py"), "-k", "quick"], timeout=60)
    assert outcomes(report) == {"test_quick": "passed"}
    assert server.process.pid == pid and server.gradings == 2


def test_a_hung_or_dead_server_is_replaced(server, tmp_path):
    (tmp_path / "slow").touch()
    report, log = server.run([str(tmp_path / "test_suite.py")], timeout=3)
    assert report is None and "longer than 3 s and was stopped" in log and server.process is None
    (tmp_path / "slow").unlink()
    assert server.run([str(tmp_path / "test_suite.py")], timeout=60)[0] is not None
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    report, _ = server.run([str(tmp_path / "test_suite.py"), "-k", "quick"], timeout=60)
    assert outcomes(report) == {"test_quick": "passed"} and server.gradings == 1  # a new server


def test_a_grading_in_the_server_equals_one_in_its_own_process():
    server = grading.pytest_server()
    try:
        own = grading.grade(ROOT / "reference", exercises=["positional_encoding"], seed=5)
        served = [grading.grade(ROOT / "reference", exercises=["positional_encoding"], seed=5, server=server)
                  for _ in range(2)]
        assert server.gradings == 2 and server.process is not None  # the second grading reused the process
    finally:
        server.close()
    for result in served:
        assert result.status == own.status and (result.score, result.max_score) == (own.score, own.max_score) == (11, 11)
        assert [(c.name, c.status) for e in result.exercises for c in e.cases] == [
            (c.name, c.status) for e in own.exercises for c in e.cases]
