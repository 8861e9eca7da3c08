"""Pytest settings for the visible tests.

A stub raises ``NotImplementedError("not implemented yet: implement ...")``.
This hook turns that into one clear line per test instead of a traceback.
"""

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.excinfo is not None and call.excinfo.errisinstance(NotImplementedError):
        report.longrepr = str(call.excinfo.value) or "not implemented yet"
    return report
