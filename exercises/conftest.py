"""Pytest settings for the visible tests.

A stub raises ``NotImplementedError("not implemented yet: implement ...")``.
The hook below turns that into one clear line per test instead of a traceback.

The data-parallel test of the training exercise needs several devices; on a
CPU, XLA can split itself into virtual devices, which must be asked for before
JAX starts its backends (JAX starts them lazily, at the first computation, so
setting the flag here is early enough).

Compiled programs are kept on disk between runs (JAX's persistent compilation
cache, see ``course/testing/compilation_cache.py``): a rerun after an edit
compiles only what the edit changed. ``COURSE_COMPILATION_CACHE=0`` turns it
off; ``COURSE_COMPILATION_CACHE=<folder>`` moves it.

Importing JAX and Flax makes over a hundred thousand objects that live until
the end, and each of Python's full garbage collections walks them all, the
last one at exit included. Once the tests are collected, every library they
need is imported: ``gc.freeze()`` then leaves what exists out of every later
collection (about 0.5 s of a run).

Most of a run is XLA compiling small programs: the fast-compilation flags
(``course/compile_flags.py``) cut that about fourfold on a CPU.

Float32 matrix products run at full precision (``course.testing.TOLERANCES``
says why): on a GPU JAX would otherwise use TF32, beyond the tolerances.
"""

import gc

import pytest

from course.compile_flags import request_fast_compilation
from course.sharding import VIRTUAL_CPU_DEVICES, request_host_devices
from course.testing import use_compilation_cache, use_full_float32_matmuls

request_host_devices(VIRTUAL_CPU_DEVICES)
request_fast_compilation()
use_compilation_cache()
use_full_float32_matmuls()  # the fixtures' float32 tolerances hold on GPUs too (TF32 otherwise)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.excinfo is not None and call.excinfo.errisinstance(NotImplementedError):
        report.longrepr = str(call.excinfo.value) or "not implemented yet"
    return report


def pytest_collection_finish(session):
    gc.freeze()
