"""Training the course's language model from scratch: ``course train``.

The loop uses the *active submission's* ``train_step`` and ``shard_batch``, so
a student trains with their own code (the reference's with ``--submission
reference``). It is data-parallel over every local device: the batch is split
along a ``data`` mesh axis and the model and optimizer are replicated, and
XLA's SPMD partitioner does the rest. For several hosts, call JAX's own
``jax.distributed.initialize()`` before training; nothing here changes.

A run directory holds ``checkpoint.npz`` (everything needed to resume
bit-for-bit: weights, optimizer state, step, the numpy generator's state and
the metrics so far), ``model.npz`` (the weights alone, for generation),
``metrics.json`` and ``loss.png``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from course import checkpoint, data
from course.model import CONFIGS, TransformerLM
from course.seeds import check_seed
from course.sharding import data_mesh, replicate, request_host_devices
from course.submission import exercise_module

SYNTHETIC = tuple(data.TASKS)  # corpora that are tasks: "reverse", "sort"


class ConfigError(ValueError):
    """A training setting is out of range; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class TrainConfig:
    model: str = "small"  # a name in course.model.CONFIGS
    corpus: str = "stdlib"  # "stdlib", a UTF-8 text file, or a synthetic task ("reverse", "sort")
    steps: int = 2000  # optimizer steps in all (a resumed run continues up to this)
    batch_size: int = 32  # sequences per step, split across the devices
    learning_rate: float = 3e-3  # AdamW peak rate; small models tolerate a high one
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10% of the peak
    weight_decay: float = 0.01
    eval_every: int = 100  # steps between validation losses
    eval_batches: int = 8  # validation batches per evaluation (the same ones every time)
    checkpoint_every: int = 500  # steps between checkpoints (and one at the end)
    log_every: int = 10  # steps between reading the loss back from the device
    task_length: int = 8  # synthetic tasks: symbols before the separator
    seed: int = 0  # initial weights and data order

    def __post_init__(self):
        if self.model not in CONFIGS:
            raise ConfigError("model", f"expected one of {sorted(CONFIGS)}, got {self.model!r}")
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every", "log_every", "task_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(name, f"expected a positive int, got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate", f"expected a positive number, got {self.learning_rate!r}")
        try:
            check_seed(self.seed)
        except ValueError as error:
            raise ConfigError("seed", str(error).removeprefix("seed: ")) from None
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", f"expected an int >= 0, got {self.warmup_steps!r}")


# Named runs. `tiny` learns to reverse sequences in about a minute on a 2-core CPU;
# `demo` is the recipe of the shipped demo checkpoint (course/demo/).
RUNS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(model="tiny", corpus="reverse", steps=600, learning_rate=3e-3, warmup_steps=50, eval_every=100, checkpoint_every=300),
    "small": TrainConfig(),
    "demo": TrainConfig(model="demo", steps=3000, batch_size=32, learning_rate=2e-3, eval_every=200, checkpoint_every=250),
}


def set_host_device_count(count: int) -> None:
    """Asks XLA for ``count`` virtual CPU devices; must run before JAX's first computation.

    Raises:
      ValueError: ``count`` is not a positive int.
      RuntimeError: JAX had already started with another device count.
    """
    request_host_devices(count, replace=True)
    cpus = jax.devices("cpu")
    if len(cpus) != count:
        raise RuntimeError(f"devices: JAX already started with {len(cpus)} CPU devices; set --devices before any computation")


def optimizer_for(config: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warm-up and cosine decay, gradients clipped at norm 1."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, max(config.warmup_steps, 1), max(config.steps, config.warmup_steps + 1),
        end_value=config.learning_rate / 10,
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=config.weight_decay))


def _batches(config: TrainConfig, tokens: np.ndarray | None, seq_len: int, vocab: int, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    if config.corpus in SYNTHETIC:
        return lambda: data.synthetic_batch(config.corpus, rng, config.batch_size, config.task_length, vocab)
    return lambda: data.sample_batch(tokens, rng, config.batch_size, seq_len)


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    train_loss: float | None  # the mean loss of the last logged interval
    val_loss: float | None  # the last validation loss
    val_accuracy: float | None  # synthetic tasks: answer accuracy on the validation batches
    seconds: float  # training time of this call (not counting earlier runs resumed from)
    tokens_per_second: float


def _history_path(out_dir: Path) -> Path:
    return out_dir / "metrics.json"


@dataclass
class _Run:
    """A training run in progress: what the loop reads and updates, and what a checkpoint saves of it."""

    config: TrainConfig
    mesh: Mesh
    model: TransformerLM
    optimizer: nnx.Optimizer
    rng: np.random.Generator  # the training batches' stream, saved with every checkpoint
    seq_len: int  # tokens per sequence
    step: int = 0
    history: dict[str, list] = field(default_factory=lambda: {"train": [], "val": []})
    train_loss: float | None = None  # the mean loss of the last logged interval
    val_loss: float | None = None
    val_accuracy: float | None = None


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Trains :class:`TransformerLM` with the active submission's ``train_step``.

    Args:
      config: what to train, on what, for how long.
      out_dir: the run directory (created if missing).
      resume: continue from ``out_dir/checkpoint.npz``; without it an existing
        checkpoint there is an error, never overwritten.
      progress: called after every logged interval with the current metrics
        (``step``, ``steps``, ``loss``, ``tokens_per_second``, ``val_loss`` ...).

    Returns:
      The final :class:`TrainResult`.

    Raises:
      ValueError: the batch size does not split over the devices, the corpus is
        unusable, or ``resume`` meets a checkpoint of another configuration.
      checkpoint.CheckpointError: ``resume`` without a readable checkpoint, or
        a checkpoint in the way without ``resume``.
    """
    out_dir = Path(out_dir)
    ckpt_path = out_dir / checkpoint.CHECKPOINT_FILE
    mesh = _check_run(config, ckpt_path, resume)
    tokens, val_batches, seq_len = _load_data(config)
    training, loss_module = exercise_module("training"), exercise_module("loss")
    run = _init_or_resume(config, mesh, seq_len, ckpt_path if resume else None)
    next_batch = _batches(config, tokens, seq_len, CONFIGS[config.model].vocab_size, run.rng)
    validation = _validation(run, training, loss_module, val_batches)
    start, start_step = time.perf_counter(), run.step
    _loop(run, training, next_batch, validation, ckpt_path, progress)
    seconds = time.perf_counter() - start
    result = TrainResult(out_dir, run.step, run.train_loss, run.val_loss, run.val_accuracy, seconds,
                         (run.step - start_step) * config.batch_size * seq_len / max(seconds, 1e-9))
    if run.step > start_step:
        _write_run(run, out_dir, seconds)
    return result


def _check_run(config: TrainConfig, ckpt_path: Path, resume: bool) -> Mesh:
    """The data mesh over every local device, once the run folder and the batch size suit the run."""
    if ckpt_path.exists() and not resume:
        raise checkpoint.CheckpointError(f"out: {ckpt_path} exists; pass --resume to continue it or choose another --out")
    if resume and not ckpt_path.exists():
        raise checkpoint.CheckpointError(f"resume: {ckpt_path} does not exist")
    mesh = data_mesh()
    devices = mesh.devices.size
    if config.batch_size % devices:
        raise ValueError(f"batch_size: {config.batch_size} does not split evenly over {devices} devices")
    return mesh


def _load_data(config: TrainConfig) -> tuple[np.ndarray | None, list[np.ndarray], int]:
    """The training tokens (``None`` for a synthetic task), the fixed validation batches and the sequence length.

    The validation batches (``int[batch_size, seq_len]`` each) come from a
    stream of their own, so the validation set never moves, resumed or not.
    """
    model_config = CONFIGS[config.model]
    if config.corpus in SYNTHETIC:
        tokens, val_tokens, seq_len = None, None, 2 * config.task_length + 1
        if seq_len > model_config.max_seq_len:
            raise ValueError(f"task_length: sequences of {seq_len} exceed the model's max_seq_len={model_config.max_seq_len}")
    else:
        corpus = data.load_corpus(config.corpus)
        tokens, val_tokens, seq_len = corpus.train, corpus.val, model_config.max_seq_len
        if corpus.train.max(initial=0) >= model_config.vocab_size:
            raise ValueError(f"model: vocab_size={model_config.vocab_size} is too small for the byte tokenizer's ids")
    val_batch = _batches(config, val_tokens, seq_len, model_config.vocab_size, np.random.default_rng([config.seed, 1]))
    return tokens, [val_batch() for _ in range(config.eval_batches)], seq_len


def _init_or_resume(config: TrainConfig, mesh: Mesh, seq_len: int, resume_from: Path | None) -> _Run:
    """A run at step 0 from ``config.seed``, or the run saved at ``resume_from``; its state replicated over ``mesh``.

    Raises:
      ValueError: the checkpoint was trained with other settings than ``config`` (``steps`` aside).
    """
    model = TransformerLM(CONFIGS[config.model], rngs=nnx.Rngs(config.seed))
    optimizer = nnx.Optimizer(model, optimizer_for(config), wrt=nnx.Param)
    run = _Run(config, mesh, model, optimizer, np.random.default_rng(config.seed), seq_len)
    if resume_from is not None:
        meta = checkpoint.restore(resume_from, model, optimizer)
        saved = meta["train_config"]
        mismatched = {k: (saved.get(k), v) for k, v in dataclasses.asdict(config).items() if k != "steps" and saved.get(k) != v}
        if mismatched:
            raise ValueError(f"resume: the checkpoint was trained with other settings (saved, given): {mismatched}")
        run.rng.bit_generator.state = meta["rng_state"]
        run.step, run.history = meta["step"], meta["history"]
    replicate(mesh, model, optimizer)
    return run


def _validation(run: _Run, training: ModuleType, loss_module: ModuleType,
                val_batches: list[np.ndarray]) -> Callable[[], tuple[float, float | None]]:
    """A function giving the model's mean validation loss and, for a synthetic task, its answer accuracy (else ``None``)."""

    @nnx.jit  # one function per run, so its compilations are reused at every evaluation
    def evaluate(model, batch):
        logits = model(batch)
        return loss_module.next_token_loss(logits, batch), logits

    def validation() -> tuple[float, float | None]:
        losses, accuracies = [], []
        for batch in val_batches:
            loss, logits = evaluate(run.model, training.shard_batch(jnp.asarray(batch), run.mesh))
            losses.append(float(loss))
            if run.config.corpus in SYNTHETIC:
                accuracies.append(data.synthetic_accuracy(np.asarray(logits), batch))
        return float(np.mean(losses)), (float(np.mean(accuracies)) if accuracies else None)

    return validation


def _loop(run: _Run, training: ModuleType, next_batch: Callable[[], np.ndarray],
          validation: Callable[[], tuple[float, float | None]], ckpt_path: Path,
          progress: Callable[[dict[str, Any]], None] | None) -> None:
    """Trains ``run`` up to ``config.steps``: logs, validates and checkpoints on the config's schedule."""
    config = run.config
    pending: list[jax.Array] = []  # device scalars, read back every log_every steps (memory stays flat)
    interval_start = time.perf_counter()
    while run.step < config.steps:
        batch = training.shard_batch(jnp.asarray(next_batch()), run.mesh)
        pending.append(training.train_step(run.model, run.optimizer, batch))
        run.step += 1
        if run.step % config.log_every == 0 or run.step == config.steps:
            interval_start = _end_interval(run, pending, interval_start, validation, progress)
            pending = []
        if run.step % config.checkpoint_every == 0 or run.step == config.steps:
            meta = {"train_config": dataclasses.asdict(config), "step": run.step, "rng_state": run.rng.bit_generator.state,
                    "history": run.history}
            checkpoint.save(ckpt_path, run.model, meta, run.optimizer)


def _end_interval(run: _Run, pending: list[jax.Array], interval_start: float,
                  validation: Callable[[], tuple[float, float | None]],
                  progress: Callable[[dict[str, Any]], None] | None) -> float:
    """Records the interval's mean loss, validates when due and reports; returns when the next interval starts."""
    config = run.config
    run.train_loss = float(np.mean(jax.device_get(pending)))
    now = time.perf_counter()
    rate = len(pending) * config.batch_size * run.seq_len / (now - interval_start)
    run.history["train"].append([run.step, run.train_loss])
    if run.step % config.eval_every == 0 or run.step == config.steps:
        run.val_loss, run.val_accuracy = validation()
        run.history["val"].append([run.step, run.val_loss] + ([run.val_accuracy] if run.val_accuracy is not None else []))
        now = time.perf_counter()  # evaluation time is not training time
    if progress is not None:
        progress({"step": run.step, "steps": config.steps, "loss": run.train_loss, "tokens_per_second": rate,
                  "val_loss": run.val_loss, "val_accuracy": run.val_accuracy})
    return now


def _write_run(run: _Run, out_dir: Path, seconds: float) -> None:
    """Writes the run's results: ``model.npz`` (weights and summary), ``metrics.json`` and ``loss.png``."""
    config = run.config
    summary = {"train_config": dataclasses.asdict(config), "step": run.step, "val_loss": run.val_loss,
               "val_accuracy": run.val_accuracy, "train_seconds": seconds, "devices": run.mesh.devices.size,
               "platform": jax.devices()[0].platform}
    checkpoint.save(out_dir / checkpoint.MODEL_FILE, run.model, summary)
    _history_path(out_dir).write_text(json.dumps({"summary": summary, "history": run.history}, indent=1))
    plot_losses(run.history, out_dir / "loss.png", title=f"{config.model} on {config.corpus}")


def plot_losses(history: dict[str, list], path: Path, title: str = "") -> None:
    """Draws the training and validation losses against the step into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if history["train"]:
        steps, losses = zip(*[(s, loss) for s, loss in history["train"]])
        ax.plot(steps, losses, label="training loss", lw=1)
    if history["val"]:
        ax.plot([v[0] for v in history["val"]], [v[1] for v in history["val"]], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
