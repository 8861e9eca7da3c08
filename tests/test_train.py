"""`course train` and `course generate`: learning, checkpoints, resuming, memory, caching, bad input."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import pytest
from click.testing import CliRunner
from flax import nnx

from course import checkpoint, submission
from course.params import param_arrays
from course.cli import main
from course.model import CONFIGS, TransformerLM
from course.train import RUNS, TrainConfig, train

ROOT = submission.repo_root()
QUICK = dataclasses.replace(RUNS["tiny"], steps=40, eval_every=20, checkpoint_every=20, log_every=10)


@pytest.fixture(autouse=True)
def reference():
    with submission.active(ROOT / "reference"):
        yield


def test_tiny_run_learns_to_reverse_and_writes_its_files(tmp_path):
    result = train(dataclasses.replace(RUNS["tiny"], steps=400, eval_every=200), tmp_path)
    assert result.step == 400 and result.val_accuracy >= 0.95, result
    assert {p.name for p in tmp_path.iterdir()} == {"checkpoint.npz", "model.npz", "loss.png", "metrics.json"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["summary"]["val_loss"] == pytest.approx(result.val_loss)
    assert [v[0] for v in metrics["history"]["val"]] == [200, 400]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, meta = checkpoint.load_checkpoint(tmp_path)
    assert meta["step"] == 400 and model.config == CONFIGS["tiny"]


def test_resume_after_a_crash_is_bit_for_bit(tmp_path):
    straight = tmp_path / "straight"
    train(QUICK, straight)

    class Crash(Exception):
        pass

    def crash_at_30(metrics):
        if metrics["step"] == 30:
            raise Crash  # after the checkpoint of step 20, before that of step 40

    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(QUICK, crashed, progress=crash_at_30)
    assert checkpoint.read(crashed / "checkpoint.npz")[1]["step"] == 20
    train(QUICK, crashed, resume=True)
    a, meta_a = checkpoint.read(straight / "checkpoint.npz")
    b, meta_b = checkpoint.read(crashed / "checkpoint.npz")
    assert a.keys() == b.keys() and any(k.startswith("optimizer/") for k in a)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert meta_a["rng_state"] == meta_b["rng_state"] and meta_a["history"] == meta_b["history"]


def test_a_crash_mid_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    train(QUICK, tmp_path)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    model, _ = checkpoint.load_checkpoint(tmp_path)

    def broken_savez(file, **arrays):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tmp_path / "checkpoint.npz", model, {"step": 99})
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "loss.png", "metrics.json", "model.npz"]


def test_memory_stays_flat_over_hundreds_of_steps(tmp_path):
    rss = {}

    def record(metrics):
        rss[metrics["step"]] = psutil.Process().memory_info().rss

    train(dataclasses.replace(RUNS["tiny"], steps=400, eval_every=100, checkpoint_every=400), tmp_path, progress=record)
    growth = (rss[400] - rss[100]) / 2**20
    assert growth < 8, f"resident memory grew by {growth:.1f} MiB between steps 100 and 400"


@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (0.7, 4)])
def test_cached_and_uncached_decoding_agree(temperature, top_k):
    from course.generate import generate_cached
    from exercises.generation.generation import generate

    model = TransformerLM(CONFIGS["tiny"], rngs=nnx.Rngs(3))
    prompt = jnp.asarray(np.random.default_rng(0).integers(0, 16, (3, 6)))
    uncached = np.asarray(generate(model, prompt, 24, jax.random.key(5), temperature, top_k))
    np.testing.assert_array_equal(generate_cached(model, prompt, 24, jax.random.key(5), temperature, top_k), uncached)


def test_cached_decoding_continues_past_the_context():
    from course.generate import generate_cached

    model = TransformerLM(CONFIGS["tiny"], rngs=nnx.Rngs(3))
    out = generate_cached(model, jnp.zeros((2, 4), jnp.int32), 70, jax.random.key(0), 1.0)
    assert out.shape == (2, 74) and ((0 <= out) & (out < 16)).all()


def test_bad_inputs_are_named_and_change_nothing(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="model"):
        TrainConfig(model="huge")
    empty, latin = tmp_path / "empty.txt", tmp_path / "latin.txt"
    empty.write_text("")
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    for corpus, problem in ((str(empty), "too few"), (str(latin), "not UTF-8"), (str(tmp_path / "missing.txt"), "not a file")):
        out = tmp_path / f"run-{problem.replace(' ', '-')}"
        with pytest.raises((ValueError, FileNotFoundError), match=problem):
            train(dataclasses.replace(QUICK, corpus=corpus, model="small"), out)
        assert not out.exists()
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        train(QUICK, tmp_path / "fresh", resume=True)


def test_resume_guards(tmp_path):
    train(QUICK, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(checkpoint.CheckpointError, match="pass --resume"):
        train(QUICK, tmp_path)
    with pytest.raises(ValueError, match="learning_rate"):
        train(dataclasses.replace(QUICK, learning_rate=1e-4), tmp_path, resume=True)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.npz").write_bytes(b"not a zip file")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        checkpoint.load_checkpoint(bad)
    train(QUICK, tmp_path / "run")
    other = TransformerLM(dataclasses.replace(CONFIGS["tiny"], d_model=64), rngs=nnx.Rngs(0))
    with pytest.raises(checkpoint.CheckpointError, match="was written for"):
        checkpoint.restore(tmp_path / "run" / "checkpoint.npz", other)


def test_checkpoint_names_are_parameter_paths_and_a_misfit_is_named(tmp_path):
    model, _ = checkpoint.load_checkpoint(checkpoint.DEMO_CHECKPOINT)  # the shipped file keeps loading
    arrays, meta = checkpoint.read(checkpoint.DEMO_CHECKPOINT / checkpoint.MODEL_FILE)
    assert set(arrays) == {f"model/{name}" for name in param_arrays(model)} and "model/blocks/0/attn/query/kernel" in arrays
    arrays["model/head/bias"] = arrays["model/head/bias"][:-1]
    del arrays["model/ln_f/scale"]
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(checkpoint.CheckpointError, match=r"does not fit this model .*missing \['ln_f/scale'\]"):
        checkpoint.restore(damaged, model)
    arrays["model/ln_f/scale"] = np.ones(model.config.d_model, np.float32)
    np.savez(damaged, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(checkpoint.CheckpointError, match=r"head/bias: \(255,\) given for a parameter of shape \(256,\)"):
        checkpoint.restore(damaged, model)


def test_cli_train_resume_and_generate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--config", "tiny", "--steps", "30", "--out", str(out), "--submission", str(ROOT / "reference")]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "run TrainConfig(model='tiny'" in first.output and "step 30: train loss" in first.output
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "pass --resume" in again.output
    longer = runner.invoke(main, [*args[:4], "40", *args[5:], "--resume"])
    assert longer.exit_code == 0 and "step 40" in longer.output
    bad = runner.invoke(main, ["train", "--config", "tiny", "--steps", "0", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--steps" in bad.output and not (tmp_path / "x").exists()
    text = runner.invoke(main, ["generate", "--checkpoint", str(out), "--prompt", "hello"])
    assert text.exit_code == 2 and "--prompt" in text.output and "16 token ids" in text.output


def test_cli_trains_data_parallel_on_virtual_devices(tmp_path):
    env = {**os.environ, "XLA_FLAGS": ""}
    command = [sys.executable, "-m", "course", "train", "--config", "tiny", "--steps", "20", "--devices", "8",
               "--out", str(tmp_path), "--submission", str(ROOT / "reference")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["summary"]["devices"] == 8
    uneven = subprocess.run([*command[:-4], "--batch-size", "12", "--out", str(tmp_path / "uneven")], env=env, capture_output=True, text=True, timeout=300)
    assert uneven.returncode == 1 and "batch_size: 12 does not split evenly over 8 devices" in uneven.stdout + uneven.stderr


PYTHON_WORDS = {"def", "return", "self", "if", "else", "import", "for", "in", "not", "None", "raise", "class", "is"}


def test_the_shipped_demo_writes_python_looking_text():
    result = CliRunner().invoke(main, ["generate", "--prompt", "def ", "--max-new-tokens", "400", "--seed", "1",
                                       "--submission", str(ROOT / "reference")])
    assert result.exit_code == 0, result.output
    words = set(result.output.replace("(", " ").replace(")", " ").replace(":", " ").replace(".", " ").split())
    assert len(words & PYTHON_WORDS) >= 4, result.output
    lines = result.output.splitlines()
    assert sum(line.startswith("    ") for line in lines) >= 3, result.output  # indented blocks
