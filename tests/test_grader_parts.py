"""The grader's parts on their own: the wire format, comparisons, the score model, the plugin, the sandbox."""

import functools
import io
import json
import os
import sys
import time
import types
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

from course.submission import repo_root
from graders.engine import client, compare, grading, sandbox
from graders.results import gradescope, pytest_report, scores
from graders.engine.failures import Mismatch, Tampering, WorkerCrash
from graders.runtime import traps, wire

pytest_plugins = ["pytester"]


def test_wire_round_trips_trees_of_arrays():
    tree = ({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 3}, [np.float32(2.5), None, "s"], jnp.ones((2,), jnp.bfloat16), True)
    arrays: dict = {}
    header = wire.encode(tree, arrays)
    _, payload = wire.unpack(*_split(wire.pack({"t": header}, arrays)))
    back, (scalar, nothing, text), half, flag = wire.decode(header, payload)
    np.testing.assert_array_equal(back["w"], tree[0]["w"])
    assert back["n"] == 3 and scalar.shape == () and scalar.dtype == np.float32 and nothing is None and text == "s"
    assert half.dtype == jnp.bfloat16 and half.shape == (2,) and flag is True


def _split(frame: bytes) -> tuple[bytes, bytes]:
    body, payload = wire._HEADER.unpack(frame[:16])
    return frame[16:16 + body], frame[16 + body:16 + body + payload]


def test_wire_refuses_pickles_and_unknown_values():
    buffer = io.BytesIO()
    np.savez(buffer, a0=np.array([object()], dtype=object))  # an object array is stored as a pickle
    with pytest.raises(wire.ProtocolError, match="unreadable"):
        wire.unpack(b"{}", buffer.getvalue())
    with pytest.raises(wire.ProtocolError, match="unknown value"):
        wire.decode({"$eval": "1"}, {})
    with pytest.raises(TypeError, match="cannot send a object"):
        wire.encode(object(), {})
    assert isinstance(wire.decode(wire.encode(object(), {}, strict=False), {}), wire.Unsupported)


def test_wire_enforces_the_message_limit():
    import os

    read, write = os.pipe()
    wire.write_frame(write, wire.pack({"x": 1}, {"a0": np.zeros(1000, np.float32)}))
    with pytest.raises(wire.ProtocolError, match="exceeds the limit"):
        wire.read_frame(read, limit=100)
    os.close(read), os.close(write)


def test_mismatch_messages_never_show_expected_values():
    with pytest.raises(Mismatch) as raised:
        compare.check(np.array([9.87654], np.float32), np.array([1.2345678], np.float32), what="output")
    assert "1.23457" not in str(raised.value) and "Largest error" in str(raised.value)
    assert "expected 2 array(s)" in compare.mismatch((np.zeros(2),), (np.zeros(2), np.zeros(3)), what="out")
    assert compare.mismatch([np.zeros(2, np.float32)], (np.zeros(2, np.float32),), what="out") is None  # lists and tuples alike


def test_a_known_mistake_is_named():
    doubled = {"the output is doubled": lambda x: 2 * x, "the output is negated": lambda x: -x}
    with pytest.raises(Mismatch, match="Hint: the output is negated") as raised:
        compare.check(-np.ones(3, np.float32), np.ones(3, np.float32), what="y", mistakes=doubled, mistake_args=(np.ones(3, np.float32),))
    assert raised.value.hint == "the output is negated"


def _bfloat16(values) -> np.ndarray:
    """``values`` as the wire delivers a bfloat16 answer: a numpy array of ml_dtypes' bfloat16."""
    return wire.decode(wire.encode(jnp.asarray(values, jnp.bfloat16), arrays := {}), arrays)


def test_a_bfloat16_answer_to_a_float32_question_fails_on_its_dtype():
    want = np.linspace(1, 2, 6, dtype=np.float32)
    got = _bfloat16(want * 1.01)  # within bfloat16's tolerance of the float32 values
    assert got.dtype.name == "bfloat16"
    with pytest.raises(Mismatch, match=r"^y: expected dtype float32, got bfloat16$"):
        compare.check(got, want, what="y")


def test_two_percent_off_in_the_right_dtype_fails_at_float32_tolerance():
    want = np.linspace(1, 2, 6, dtype=np.float32)
    with pytest.raises(Mismatch, match=r"y: 6 of 6 values differ .*atol=1e-05 \+ rtol=0.0001"):
        compare.check(want * np.float32(1.02), want, what="y")


def test_a_float32_answer_to_a_bfloat16_question_names_the_dtype():
    want = jnp.linspace(1, 2, 6, dtype=jnp.bfloat16)  # the reference's own bfloat16 output
    with pytest.raises(Mismatch, match=r"^y: expected dtype bfloat16, got float32$"):
        compare.check(np.asarray(want, np.float32), want, what="y")
    compare.check(_bfloat16(np.asarray(want, np.float32) * 1.01), want, what="y")  # bfloat16's tolerance


def test_the_checks_run_in_order_array_dtype_shape_values():
    want = np.zeros((2, 3), np.float32)
    with pytest.raises(Mismatch, match=r"^y: expected an array, got float$"):
        compare.check(0.0, want, what="y")
    with pytest.raises(Mismatch, match=r"^y: expected dtype float32, got bfloat16$"):
        compare.check(_bfloat16(np.ones((3, 2))), want, what="y")
    with pytest.raises(Mismatch, match=r"^y: expected shape \(2, 3\), got \(3, 2\)$"):
        compare.check(np.ones((3, 2), np.float32), want, what="y")
    with pytest.raises(Mismatch, match=r"^y: 6 of 6 values differ"):
        compare.check(np.ones((2, 3), np.float32), want, what="y")


def test_tolerance_of_compares_a_float32_result_of_bfloat16_inputs_at_bfloat16_tolerance():
    want = np.linspace(1, 2, 6, dtype=np.float32)
    compare.check(want * np.float32(1.01), want, what="loss", tolerance_of=jnp.bfloat16)
    with pytest.raises(Mismatch, match=r"^loss: expected dtype float32, got bfloat16$"):
        compare.check(_bfloat16(want), want, what="loss", tolerance_of=jnp.bfloat16)


def test_integer_and_boolean_answers_keep_working():
    compare.check(np.array([3, 1], np.int32), jnp.array([3, 1], jnp.int32), what="ids")
    compare.check(np.tril(np.ones((3, 3), bool)), jnp.tril(jnp.ones((3, 3), bool)), what="mask")
    with pytest.raises(Mismatch, match=r"^mask: expected dtype bool, got float32$"):
        compare.check(np.tril(np.ones((3, 3), np.float32)), jnp.tril(jnp.ones((3, 3), bool)), what="mask")


def _report(outcome="passed", forbidden=(), exercise="loss", name=None, values="cross_entropy_loss", requires=None):
    record = {"exercise": exercise, "points": 2, "visibility": "visible", "status": "passed" if outcome == "passed" else "failed",
              "message": "" if outcome == "passed" else "wrong", "hint": None, "forbidden": list(forbidden), "detail": "",
              "values": None if requires else values, "requires_values": requires}
    return {"nodeid": f"graders/suites/test_{exercise}.py::{name or f'test_x[{outcome}]'}", "outcome": outcome,
            "call": {"duration": 0.1}, "user_properties": [{"grader": record}]}


def test_the_score_model_converts_writes_and_reads_back(tmp_path):
    report = {"tests": [_report("passed"), _report("failed")], "grader": {"device": {"worker": ["cpu:0"]}}}
    result = pytest_report.convert(report, submission="s", seed=4, exercises=["loss"])
    assert result.status == "ok" and result.score == 2 and result.max_score == 4
    scores.write_json(tmp_path / "score.json", result.to_json())
    assert scores.load(tmp_path / "score.json") == result
    results = gradescope.results(result, execution_time=1.5)
    assert results["score"] == 2 and [t["status"] for t in results["tests"]] == ["passed", "failed"]
    assert results["tests"][1]["output"] == "wrong" and results["execution_time"] == 1.5
    (tmp_path / "bad.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match="not a score file"):
        scores.load(tmp_path / "bad.json")


def test_a_score_file_reads_back_statuses_as_enums(tmp_path):
    result = pytest_report.convert({"tests": [_report("failed")]}, submission="s", seed=4, exercises=["loss"])
    scores.write_json(tmp_path / "score.json", result.to_json())
    loaded = scores.load(tmp_path / "score.json")
    assert loaded.status is scores.RunStatus.OK and loaded.exercises[0].cases[0].status is scores.CaseStatus.FAILED
    data = result.to_json()
    data["exercises"][0]["cases"][0]["status"] = "maybe"
    (tmp_path / "odd.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="maybe"):
        scores.load(tmp_path / "odd.json")


def test_a_forbidden_routine_zeroes_the_whole_exercise():
    report = {"tests": [_report("passed"), _report("failed", forbidden=["optax.softmax_cross_entropy"])]}
    (exercise,) = pytest_report.convert(report, submission="s", seed=0, exercises=["loss"]).exercises
    assert exercise.score == 0 and exercise.forbidden == ("optax.softmax_cross_entropy",)
    assert all(c.status == "failed" for c in exercise.cases)


def test_a_case_requiring_values_counts_only_once_they_pass(tmp_path):
    def convert(*tests):
        return pytest_report.convert({"tests": list(tests)}, submission="s", seed=0, exercises=["loss"])

    raises = _report(name="test_raises", requires="cross_entropy_loss")
    other = _report(name="test_other_raises", requires="next_token_loss")
    values = [_report(name="test_values[a]"), _report("failed", name="test_values[b]"),
              _report(name="test_next", values="next_token_loss")]
    result = convert(*values, raises, other)
    cases = {c.name: c for c in result.exercises[0].cases}
    assert cases["test_raises"].status == "failed" and cases["test_raises"].points == 0
    assert cases["test_raises"].message == "counts only once cross_entropy_loss computes correct values (see test_values[b])"
    assert cases["test_other_raises"].status == "passed" and cases["test_other_raises"].points == 2
    hidden = {**values[1], "user_properties": [{"grader": {**values[1]["user_properties"][0]["grader"], "visibility": "hidden"}}]}
    (gated,) = [c for c in convert(values[0], hidden, raises).exercises[0].cases if c.name == "test_raises"]
    assert gated.points == 0 and "test_values" not in gated.message and "not shown yet" in gated.message
    assert result.score == 2 + 2 + 2 and result.status == "ok"
    # Both writers read the gated case from the score model.
    scores.write_json(tmp_path / "score.json", result.to_json())
    assert scores.load(tmp_path / "score.json") == result
    gradescope_tests = {t["name"]: t for t in gradescope.results(result, execution_time=1.0)["tests"]}
    assert gradescope_tests["loss: test_raises"]["status"] == "failed" and gradescope_tests["loss: test_raises"]["score"] == 0
    assert gradescope_tests["loss: test_raises"]["output"].startswith("counts only once cross_entropy_loss")
    # A values case with a grader error gates nothing (the run is a grader error already); one that never ran gates.
    broken = _report("failed", name="test_values[a]")
    broken["user_properties"][0]["grader"]["status"] = "grader_error"
    gated = {c.name: c for c in convert(broken, raises).exercises[0].cases}
    assert gated["test_raises"].status == "passed" and gated["test_raises"].points == 2
    (alone,) = convert(raises).exercises[0].cases
    assert alone.points == 0 and alone.message.endswith("cross_entropy_loss computes correct values (none of its cases ran)")


def test_missing_records_and_broken_suites_are_grader_errors():
    report = {"tests": [{"nodeid": "x::y", "outcome": "passed"}],
              "collectors": [{"nodeid": "graders/suites/test_loss.py", "outcome": "failed", "longrepr": "ImportError"}]}
    result = pytest_report.convert(report, submission="s", seed=0, exercises=["loss"])
    assert result.status == "grader_error" and len(result.errors) == 2


@pytest.mark.parametrize(("marks", "problem"), [
    ("", "expected @pytest.mark.points(n) with a positive number, got None"),
    ("@pytest.mark.points(-1)", "got -1"),
    ("@pytest.mark.points(1)\n@pytest.mark.visibility('secret')", "visibility must be one of"),
    ("@pytest.mark.points(1)", "expected exactly one of @pytest.mark.values(function)"),
    ("@pytest.mark.points(1)\n@pytest.mark.values('next_token_loss')\n@pytest.mark.requires_values('next_token_loss')",
     "expected exactly one of"),
    ("@pytest.mark.points(1)\n@pytest.mark.values('softmax')",
     "names 'softmax', which is not a function of exercise loss (cross_entropy_loss, next_token_loss)"),
    ("@pytest.mark.points(1)\n@pytest.mark.requires_values('next_token_loss')",
     "no case of test_loss.py carries @pytest.mark.values('next_token_loss')"),
])
def test_the_plugin_rejects_cases_without_valid_markers(pytester, marks, problem):
    pytester.makepyfile(test_loss=f"import pytest\n\n{marks}\ndef test_case():\n    pass\n")
    result = pytester.runpytest("-p", "graders.engine.plugin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert problem in output and "test_loss.py::test_case" in output


def test_the_scratch_copy_leaves_out_links_and_refuses_huge_submissions(tmp_path):
    submission = tmp_path / "submission"
    (submission / "loss").mkdir(parents=True)
    (submission / "loss" / "loss.py").write_text("x = 1\n")
    (submission / "loss" / "secret.py").symlink_to("/etc/hostname")
    (submission / "loss" / "hidden.pyc").write_bytes(b"bytecode the static scan cannot read")
    scratch = sandbox.make_scratch(submission)
    try:
        assert (scratch / "submission" / "loss" / "loss.py").read_text() == "x = 1\n"
        assert not (scratch / "submission" / "loss" / "secret.py").exists()
        assert not (scratch / "submission" / "loss" / "hidden.pyc").exists()
        assert (scratch / "lib" / "grader_runtime" / "worker.py").is_file()
    finally:
        sandbox.remove_scratch(scratch)
    (submission / "big.bin").write_bytes(b"0" * (2 << 20))
    with pytest.raises(ValueError, match="submission: 2 MiB is more than the 1 MiB"):
        sandbox.make_scratch(submission, max_mb=1)


TOY = '''
import jax.numpy as jnp
from flax import nnx


class Mlp(nnx.Module):
    def __init__(self, d, *, rngs):
        self.hidden = nnx.Linear(d, d, rngs=rngs)
        self.out = nnx.Linear(d, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))
'''


def test_modules_get_the_reference_weights_and_their_parameter_gradients(tmp_path):
    """The worker builds an NNX module, takes weights by parameter path and differentiates with respect to them."""
    import importlib.util

    from flax import nnx

    from graders.engine.client import Session, Student
    from course.params import param_arrays
    from graders.engine.failures import StudentError
    from graders.runtime import transforms

    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.py").write_text(TOY)
    spec = importlib.util.spec_from_file_location("toy_here", tmp_path / "toy" / "toy.py")
    here = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(here)
    reference = here.Mlp(3, rngs=nnx.Rngs(1))
    weights = param_arrays(reference)
    rng = np.random.default_rng(0)
    x, ct = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    session = Session(tmp_path, sandbox.Limits(call_seconds=60), traps=[])
    try:
        module = Student(session, "toy").construct("Mlp", 3, rngs_seed=0)
        assert module.params == {k: ("float32", v.shape) for k, v in weights.items()}
        module.set_params(weights)
        # Built without computing its initial weights (params_follow), then given the same ones: the same answers.
        placeholder = Student(session, "toy").construct("Mlp", 3, rngs_seed=0, params_follow=True)
        assert placeholder.params == module.params
        placeholder.set_params(weights)
        want, (want_args, want_params) = transforms.apply_module(reference, "__call__", (x,), transform="vjp", cotangent=ct)
        for built in (module, placeholder):
            out, (arg_grads, param_grads) = built.call(x, transform="vjp", cotangent=ct)
            compare.check(out, want, what="output")
            compare.check(arg_grads, want_args, what="input gradient", kind="gradient")
            compare.check(param_grads, {k: np.asarray(v) for k, v in want_params.items()}, what="parameter gradients", kind="gradient")
        with pytest.raises(StudentError, match="parameter hidden/kernel: expected float32\\[3, 4\\], got float32\\[3, 3\\]"):
            module.set_params({**weights, "hidden/kernel": np.zeros((3, 4), np.float32)})
    finally:
        session.close()


def test_modules_are_built_abstractly_only_when_their_parameters_are_all_they_hold():
    """``transforms.construct(params_follow=True)`` computes no initial weight, unless the module needs them."""
    import jax
    from flax import nnx

    from graders.runtime import transforms

    class Plain(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(2, 3, rngs=rngs)

    class KeepsRngs(Plain):  # e.g. for dropout: state besides the parameters, which set_params does not replace
        def __init__(self, rngs):
            super().__init__(rngs)
            self.rngs = rngs

    class NeedsValues(Plain):
        def __init__(self, rngs):
            super().__init__(rngs)
            self.norm = float(self.linear.kernel.sum())  # concrete values: cannot be traced

    class Refuses(Plain):
        def __init__(self, rngs):
            raise ValueError("d_model must be even")

    def built(cls):
        return transforms.construct(lambda: cls(nnx.Rngs(0)), params_follow=True)

    assert isinstance(built(Plain).linear.kernel.get_value(), jax.ShapeDtypeStruct)
    for cls in (KeepsRngs, NeedsValues):
        assert isinstance(built(cls).linear.kernel.get_value(), jax.Array), cls.__name__
    assert isinstance(transforms.construct(lambda: Plain(nnx.Rngs(0))).linear.kernel.get_value(), jax.Array)
    with pytest.raises(ValueError, match="must be even"):  # the constructor's own error, raised for real
        built(Refuses)


def test_modules_of_one_structure_share_one_compiled_vjp():
    """Each case builds a fresh module: one of the same structure and shapes must not compile again."""
    from flax import nnx

    from graders.runtime import transforms

    class Mlp(nnx.Module):
        def __init__(self, width, rngs):
            self.hidden = nnx.Linear(3, width, rngs=rngs)

        def __call__(self, x):
            return self.hidden(x)

    x, ct = np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)
    programs = len(transforms._COMPILED)
    for seed in (0, 1):
        transforms.apply_module(Mlp(4, nnx.Rngs(seed)), "__call__", (x,), transform="vjp", cotangent=ct, compile=True)
    assert len(transforms._COMPILED) == programs + 1
    transforms.apply_module(Mlp(5, nnx.Rngs(0)), "__call__", (x,), transform="vjp", cotangent=np.ones((2, 5), np.float32),
                            compile=True)
    assert len(transforms._COMPILED) == programs + 2


def test_recorded_workers_are_killed_with_their_process_group(tmp_path):
    import subprocess
    import time

    import psutil

    # A stand-in worker that started a child of its own in its process group.
    worker = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    child = None
    for _ in range(100):
        children = psutil.Process(worker.pid).children()
        if children:
            child = children[0]
            break
        time.sleep(0.02)
    assert child is not None
    sandbox.record(tmp_path / "workers", psutil.Process(worker.pid))
    sandbox.kill_recorded(tmp_path / "workers")
    assert worker.wait(timeout=5) == -9
    child.wait(timeout=5)
    assert not child.is_running()
    sandbox.kill_recorded(tmp_path / "missing")  # nothing recorded: nothing to do


TRAINING = '''
import jax
import optax
from flax import nnx

import course


def sgd_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda m: ((m(x) - y) ** 2).mean())(model)
    optimizer.update(model, grads)
    return loss


def course_version():
    return course.__version__
'''


def test_objects_built_in_the_worker_can_be_passed_to_calls(tmp_path):
    """A train step takes a module and an optimizer built in the worker (handles); the course package is importable."""
    import importlib.util

    import optax
    from flax import nnx

    import course
    from course.params import param_arrays
    from graders.engine.client import Session, Student

    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.py").write_text(TOY + TRAINING)
    spec = importlib.util.spec_from_file_location("toy_here", tmp_path / "toy" / "toy.py")
    here = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(here)
    model = here.Mlp(3, rngs=nnx.Rngs(1))
    weights = param_arrays(model)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    session = Session(tmp_path, sandbox.Limits(call_seconds=60), traps=[])
    try:
        student = Student(session, "toy")
        assert student.course_version() == course.__version__
        remote = student.construct("Mlp", 3, rngs_seed=0)
        remote.set_params(weights)
        tx = student.construct("optax.sgd", kwargs={"learning_rate": 0.1})
        remote_optimizer = student.construct("flax.nnx.Optimizer", remote.ref, tx.ref, kwargs={"wrt": wire.Ref("flax.nnx.Param")})
        for _ in range(2):
            compare.check(student.sgd_step(remote.ref, remote_optimizer.ref, x, y), here.sgd_step(model, optimizer, x, y), what="loss")
        compare.check(remote.get_params(), param_arrays(model), what="parameters after two steps")
    finally:
        session.close()


def test_deeply_nested_answers_are_protocol_errors():
    deep: list = []
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    header = wire.encode(deep, {}, strict=False)
    with pytest.raises(wire.ProtocolError, match="nested more than"):
        wire.decode(header, {})
    many = [np.zeros(1)] * 1000
    assert len(compare.mismatch(many, [np.zeros(1)], what="out")) < 300


def _npz(members: dict[str, bytes], compression: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_wire_refuses_compressed_and_oversize_arrays_before_loading():
    assert wire.unpack(b"{}", _npz({"a0.npy": _npy(np.arange(3.0))}))[1]["a0"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(wire.ProtocolError, match="compressed"):  # a deflate bomb: small on the wire, huge once loaded
        wire.unpack(b"{}", _npz({"a0.npy": _npy(np.zeros(100_000))}, zipfile.ZIP_DEFLATED))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with pytest.raises(wire.ProtocolError, match="declares 8000000000000 bytes"):  # 8 TB declared, 8 bytes sent
        wire.unpack(b"{}", _npz({"a0.npy": header.getvalue() + bytes(8)}))


@pytest.mark.parametrize("seconds", [10**400, float("nan"), float("inf"), -1.0, True, "1"])
def test_a_worker_reporting_a_bad_compile_time_is_its_crash(tmp_path, seconds):
    (tmp_path / "code.py").write_text("")
    session = client.Session(tmp_path, sandbox.Limits(), traps=[])
    read, write = os.pipe()
    try:
        body = json.dumps({"id": 1, "ok": True, "result": None, "compile_seconds": seconds}).encode()
        os.write(write, wire._HEADER.pack(len(body), 0) + body)
        fake = types.SimpleNamespace(response_r=read, memory_mb=lambda: 0)
        with pytest.raises(WorkerCrash, match="malformed answer"):
            session._receive(fake, 1, started=time.monotonic(), timeout=5, what="a call")
        assert session.compile_before == 0.0
    finally:
        os.close(read), os.close(write)
        session.close()


def test_score_files_refuse_nan_and_reports_drop_it(tmp_path):
    with pytest.raises(ValueError, match="Out of range float"):
        scores.write_json(tmp_path / "score.json", {"seconds": float("nan")})
    assert not (tmp_path / "score.json").exists() and not list(tmp_path.iterdir())
    report = {"tests": [], "grader": {"timings": {"worker_compile": float("nan"), "total": 1.5}}}
    result = pytest_report.convert(report, submission="s", seed=0, exercises=[])
    assert result.timings == {"worker_compile": None, "total": 1.5}


def test_a_submission_through_a_link_or_inside_the_repository_is_refused(tmp_path):
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    assert grading.check_submission(real) == real.resolve()
    for path in (tmp_path / "link", tmp_path / "link" / "inner"):
        with pytest.raises(ValueError, match="submission: .* symbolic link"):
            grading.check_submission(path)
    repo = repo_root()
    assert grading.check_submission(repo / "reference") == repo / "reference"
    with pytest.raises(ValueError, match="submission: .* inside the course repository"):
        grading.check_submission(repo / "graders")
    with pytest.raises(ValueError, match="submission: .* symbolic link"):  # refused before any grading starts
        grading.grade(tmp_path / "link", exercises=["positional_encoding"], seed=1)


TOY_LIBRARY = """
def attend(q):
    return q + 1


class Layer:
    def __init__(self, n):
        self.n = n
"""


def test_traps_record_every_name_of_a_routine_and_see_each_way_of_undoing_them(monkeypatch):
    library = types.ModuleType("toy_library")
    exec(TOY_LIBRARY, library.__dict__)
    library.alias = library.attend  # one object, two names: one trap records both
    library.scale = functools.partial(pow, 2)  # neither a function nor a class: replaced by identity
    monkeypatch.setitem(sys.modules, "toy_library", library)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the traps' finder leaves with the test
    installed = traps.Traps([f"toy_library.{n}" for n in ("attend", "alias", "Layer", "scale", "missing")] + ["toy_later.thing"])
    installed.install()
    installed.reset()
    assert library.attend(1) == 2 and library.alias(1) == 2 and library.Layer(3).n == 3 and library.scale(3) == 8
    assert installed.called() == ["toy_library.Layer", "toy_library.alias", "toy_library.attend", "toy_library.scale"]
    assert installed.tampered() == []

    key = next(k for k in vars(library) if k.startswith("__course_trap_"))
    trap, entry = library.attend.__code__, vars(library)[key]
    library.attend.__code__ = entry[2].__code__  # the original code, from the trap's own globals
    assert installed.tampered() == ["toy_library.alias", "toy_library.attend"]
    library.attend.__code__ = trap
    with monkeypatch.context() as m:
        m.setitem(vars(library), key, (lambda name: None, *entry[1:]))  # a recorder that records nothing
        assert installed.tampered() == ["toy_library.alias", "toy_library.attend"]
    with monkeypatch.context() as m:
        m.setattr(library.Layer, "__init__", library.Layer.__init__.__closure__[1].cell_contents)
        assert installed.tampered() == ["toy_library.Layer"]
    with monkeypatch.context() as m:
        m.setattr(library, "scale", functools.partial(pow, 2))
        assert installed.tampered() == ["toy_library.scale"]
    with monkeypatch.context() as m:
        m.setattr(traps, "CALLED", set())
        assert installed.tampered() == sorted(installed.trapped + ["toy_later.thing"])
    with monkeypatch.context() as m:
        m.setattr(sys, "meta_path", [f for f in sys.meta_path if f is not installed])
        assert installed.tampered() == ["toy_later.thing"]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "toy_later", types.ModuleType("toy_later"))  # loaded past the finder
        assert installed.tampered() == ["toy_later.thing"]
    assert installed.tampered() == []


UNDOES_ITS_TRAP = """
import optax


def honest(x):
    return x + 1


def undo(x):
    routine = optax.softmax_cross_entropy
    for name, value in list(routine.__globals__.items()):
        if name.startswith("__course_trap_"):
            routine.__code__ = value[2].__code__
    return x
"""


def test_a_trap_undone_in_the_worker_fails_the_exercise_from_then_on(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.py").write_text(UNDOES_ITS_TRAP)
    session = client.Session(tmp_path, sandbox.Limits(call_seconds=60), traps=["optax.softmax_cross_entropy"])
    try:
        student = client.Student(session, "toy", ("optax.softmax_cross_entropy",))
        assert student.honest(np.float32(1)) == 2 and student.forbidden_called == []
        with pytest.raises(Tampering, match="the grader's trap on optax.softmax_cross_entropy was undone"):
            student.undo(np.float32(1))
        with pytest.raises(Tampering):
            student.honest(np.float32(1))
        assert student.forbidden_called == [Tampering.LABEL]
    finally:
        session.close()


def test_the_worker_s_tampered_list_must_be_names():
    assert client._well_formed({"ok": True, "tampered": ["jax.nn.dot_product_attention"]})
    assert not client._well_formed({"ok": True, "tampered": "jax.nn.dot_product_attention"})
    assert not client._well_formed({"ok": True, "tampered": [1]})


def test_the_plugin_and_client_import_no_jax():
    """The grader's pytest process starts the worker before it imports JAX, so both import at once."""
    import subprocess

    script = "import sys, graders.engine.plugin, graders.engine.client; print('jax' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], cwd=repo_root(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_exercises_to_grade_are_each_graded_once_in_catalogue_order():
    # A repeated -e counted the exercise twice (36/36 for an 18-point exercise); another order refused a re-run.
    assert grading.to_grade(["positional_encoding", "jax_basics", "positional_encoding"]) == ["jax_basics", "positional_encoding"]
    assert grading.to_grade(None) == grading.to_grade([]) == grading.graded_exercises()
    with pytest.raises(KeyError, match="nosuch"):
        grading.to_grade(["jax_basics", "nosuch"])


def test_limits_must_be_finite():
    for value in (float("nan"), float("inf"), 0, -1):
        with pytest.raises(ValueError, match="limits.call_seconds: expected a positive finite number"):
            sandbox.Limits(call_seconds=value)
