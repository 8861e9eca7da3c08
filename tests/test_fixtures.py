"""The committed fixtures are what the reference computes today."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from authoring import fixtures
from course import catalog
from course.params import (abstract_module, arrays_under, flatten_params, load_param_arrays, module_with_params, param_arrays,
                           param_shapes, unflatten_params)
from course.testing.toy_model import TOY, BigramMLP
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
    # Another CPU's round-off is no change (a few float32 ulps on logits of 5); a change of the semantics is.
    logits = np.linspace(-5, 5, 11, dtype=np.float32)
    assert fixtures.compare({"m.logits": logits + np.float32(5e-6)}, {"m.logits": logits}) is None
    assert "values differ" in fixtures.compare({"m.logits": logits * np.float32(1.001)}, {"m.logits": logits})
    tokens = np.arange(4, dtype=np.int32)
    assert "values differ" in fixtures.compare({"m.tokens": tokens + 1}, {"m.tokens": tokens})


def test_params_round_trip():
    params = fixtures.mlp_params(np.random.default_rng(0), (3, 5, 2))
    back = unflatten_params(flatten_params("p", params), "p")
    assert len(back) == 2
    for (W, b), (W2, b2) in zip(params, back):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


def test_module_parameters_round_trip_by_path():
    source, target = BigramMLP(**TOY, rngs=nnx.Rngs(0)), BigramMLP(**TOY, rngs=nnx.Rngs(1))
    arrays = param_arrays(source)
    assert sorted(arrays) == ["embed/embedding", "hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    load_param_arrays(target, arrays_under({f"params.{k}": v for k, v in arrays.items()} | {"other": np.ones(1)}, "params."))
    for name, value in param_arrays(target).items():
        np.testing.assert_array_equal(value, arrays[name], err_msg=name)
    with pytest.raises(ValueError, match=r"missing \['out/bias'\], unexpected \['out/b'\]"):
        load_param_arrays(target, {**{k: v for k, v in arrays.items() if k != "out/bias"}, "out/b": arrays["out/bias"]})
    with pytest.raises(ValueError, match=r"hidden/bias: \(3,\) given for a parameter of shape"):
        load_param_arrays(target, {**arrays, "hidden/bias": np.zeros(3, np.float32)})


_BUILT = []  # how each _Scaled was built: "abstract" (under nnx.eval_shape) or "real"


class _Scaled(nnx.Module):
    """A layer that may also hold something besides its parameters."""

    def __init__(self, extra, *, rngs):
        self.hidden = nnx.Linear(16, 16, rngs=rngs)
        _BUILT.append("abstract" if isinstance(self.hidden.kernel.get_value(), jax.core.Tracer) else "real")
        if extra == "array":
            self.scale = jnp.sqrt(jnp.float32(4.0))  # a plain array attribute
        elif extra == "rngs":
            self.drop = nnx.Dropout(0.1, rngs=rngs)  # a random stream: state that is not a parameter
        elif extra == "concrete":
            self.scale = float(jnp.sqrt(jnp.float32(4.0)))  # needs a concrete value: cannot run abstractly


@pytest.mark.parametrize(("extra", "built", "built_given_abstract"), [
    (None, ["abstract"], []), ("array", ["abstract", "real"], ["real"]), ("rngs", ["abstract", "real"], ["real"]),
    ("concrete", ["abstract", "real"], []),  # abstract_module built it for real already
])
def test_module_with_params_builds_abstractly_what_holds_only_parameters(extra, built, built_given_abstract):
    arrays = param_arrays(_Scaled(None, rngs=nnx.Rngs(1)))
    assert param_shapes(abstract_module(lambda: _Scaled(extra, rngs=nnx.Rngs(0)))) == {k: v.shape for k, v in arrays.items()}
    _BUILT.clear()
    module = module_with_params(lambda: _Scaled(extra, rngs=nnx.Rngs(0)), arrays)
    assert _BUILT == built
    for name, value in param_arrays(module).items():
        np.testing.assert_array_equal(value, arrays[name], err_msg=name)
    if extra in ("array", "concrete"):
        assert float(module.scale) == 2.0  # a value, not a placeholder or a leaked tracer
    if extra == "rngs":
        assert isinstance(module.drop.rngs.key.get_value(), jax.Array)
    # Given the abstract module already, it copies it: one abstract build fewer, the given one unchanged.
    abstract = abstract_module(lambda: _Scaled(extra, rngs=nnx.Rngs(0)))
    _BUILT.clear()
    again = module_with_params(lambda: _Scaled(extra, rngs=nnx.Rngs(0)), arrays, abstract=abstract)
    assert _BUILT == built_given_abstract
    np.testing.assert_array_equal(param_arrays(again)["hidden/kernel"], arrays["hidden/kernel"])
    assert param_shapes(abstract) == param_shapes(again)
    if extra is None:
        assert isinstance(abstract.hidden.kernel.get_value(), jax.ShapeDtypeStruct)


def test_with_mistakes_stores_the_mistakes_that_change_a_value(reference_module):
    ref = reference_module("loss")
    logits, targets = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32), np.asarray([0, 4, 2])
    arrays = fixtures.with_mistakes(ref, "loss", "cross_entropy_loss", lambda f: {"ce.output": np.asarray(f(logits, targets))})
    # Without a mask, or with logits this small, the other mistakes compute the right loss: nothing to name.
    assert sorted(arrays) == ["ce.output", "ce.output.mistake.summed", "ce.output.mistake.wrong_sign"]
    np.testing.assert_allclose(arrays["ce.output.mistake.summed"], 3 * arrays["ce.output"], rtol=1e-6)
