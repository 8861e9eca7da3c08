"""The committed fixtures are what the reference computes today."""

import numpy as np
import pytest

from authoring import fixtures
from course import catalog
from course.params import flatten_params, unflatten_params
from course.submission import repo_root

ROOT = repo_root()


@pytest.mark.parametrize("exercise", catalog.EXERCISES, ids=lambda e: e.name)
def test_committed_fixtures_are_fresh(exercise):
    path = ROOT / "exercises" / exercise.name / "fixtures.npz"
    with np.load(path, allow_pickle=False) as data:
        committed = {k: data[k] for k in data.files}
    assert fixtures.compare(committed, fixtures.build(exercise, ROOT / "reference")) is None


def test_compare_reports_changed_values_and_names():
    fresh = {"a.output": np.ones(3, np.float32)}
    assert fixtures.compare(fresh, fresh) is None
    assert "values differ" in fixtures.compare({"a.output": np.zeros(3, np.float32)}, fresh)
    assert "names differ" in fixtures.compare({"b.output": np.ones(3, np.float32)}, fresh)
    assert "float64" in fixtures.compare({"a.output": np.ones(3)}, fresh)


def test_params_round_trip():
    params = fixtures.mlp_params(np.random.default_rng(0), (3, 5, 2))
    back = unflatten_params(flatten_params("p", params), "p")
    assert len(back) == 2
    for (W, b), (W2, b2) in zip(params, back):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)
