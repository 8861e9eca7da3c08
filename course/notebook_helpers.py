"""What the course's notebooks import: their setup, the quick setting, and plotting helpers.

``setup_notebook()`` (the last line of every notebook's setup cell) does three
things before any JAX code runs:

- it asks XLA for 8 virtual CPU devices, so that sections 1 and 9 can show
  sharding over several devices on any machine;
- it lets XLA on CPU reuse its scratch memory across steps
  (``course.host_memory``), which makes the training cells faster;
- it teaches IPython to show a stub's ``NotImplementedError("not implemented
  yet: implement <function> in exercises/...")`` as that one message plus what
  to do next, instead of a traceback through the course's code. The cell still
  fails, so "Run all" stops there, and so does ``course notebooks --execute``.

``quick()`` reads ``COURSE_QUICK``: ``1`` selects the small setting of long
cells (fewer training steps), which tests and ``course notebooks --quick`` use.
The code that runs is the same in both settings.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from course import submission
from course.host_memory import keep_freed_memory

QUICK_ENV = "COURSE_QUICK"
NOT_IMPLEMENTED = "not implemented yet"  # how every stub's message starts (authoring.stubs.not_implemented_message)
EXERCISE_TAG = "exercise"  # a notebook cell that runs the student's code
SETUP_TAG = "setup"  # the generated cell that prepares a kernel
RED, RESET = "\x1b[31m", "\x1b[0m"


def quick() -> bool:
    """Whether the notebook runs in its small setting (``COURSE_QUICK=1``).

    Raises:
      ValueError: ``COURSE_QUICK`` is set to something other than ``0`` or ``1``.
    """
    value = os.environ.get(QUICK_ENV, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{QUICK_ENV}: expected 0 or 1, got {value!r}")
    return value == "1"


def setup_notebook() -> None:
    """Readies a notebook: virtual CPU devices, reused host memory, the not-implemented message, and a line on what runs."""
    from course.sharding import VIRTUAL_CPU_DEVICES, request_host_devices  # imports JAX: only in a kernel

    keep_freed_memory()
    request_host_devices(VIRTUAL_CPU_DEVICES)  # in time: no cell has run a computation yet
    shell = _ipython()
    if shell is not None:
        shell.set_custom_exc((NotImplementedError,), show_not_implemented)
    setting = " (quick setting: long cells run a few steps)" if quick() else ""
    print(f"Your exercises are loaded from {submission.active_submission()}{setting}")


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: nothing to configure
        return None
    return get_ipython()


def not_implemented_lines(message: str) -> list[str]:
    """What a notebook shows for a stub's message: the message, the file, what to do next."""
    lines = [f"{RED}{message}{RESET}"]
    found = re.search(r"exercises/(?P<name>\w+)/(?P<file>\w+\.py)", message)
    if found:
        path = submission.active_submission() / found["name"] / found["file"]
        lines.append(f"Your file: {path}")
        lines.append(f"Write it, save the file and run this cell again. Check it with: pytest exercises/{found['name']}")
    return lines


def show_not_implemented(shell, etype, evalue, tb, tb_offset=None):
    """IPython's handler for ``NotImplementedError``: a stub's message alone, anything else as usual."""
    if str(evalue).startswith(NOT_IMPLEMENTED):
        # IPython prints what _render_traceback_ returns in place of the traceback.
        evalue._render_traceback_ = lambda: not_implemented_lines(str(evalue))
    shell.showtraceback((etype, evalue, tb), tb_offset=tb_offset)


class WorkedExampleError(AssertionError):
    """A result differs from a worked example; shown as its message alone."""

    def _render_traceback_(self) -> list[str]:
        return [f"{RED}{self}{RESET}"]


def check_close(what: str, got, expected, atol: float = 1e-4) -> None:
    """Compares a result with a worked example's value and prints that they agree.

    Raises:
      WorkedExampleError: the shapes differ or an element is further than ``atol`` away;
        the message shows both values.
    """
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape or not np.allclose(got, expected, atol=atol, rtol=0):
        raise WorkedExampleError(
            f"{what}: expected {np.array2string(expected, precision=4)} (shape {expected.shape}), "
            f"got {np.array2string(got, precision=4)} (shape {got.shape})"
        )
    print(f"✓ {what} matches the worked example")


def token_label(token: int) -> str:
    """A short readable label for a byte token: the character, or a symbol for space and control bytes."""
    special = {32: "␣", 10: "⏎", 9: "⇥"}
    if token in special:
        return special[token]
    if 33 <= token < 127:
        return chr(token)
    return f"\\x{token:02x}"


def token_labels(tokens) -> list[str]:
    """:func:`token_label` of every token id in ``tokens``."""
    return [token_label(int(t)) for t in np.asarray(tokens).reshape(-1)]


def attention_heatmap(ax, weights, labels: list[str], title: str = "") -> None:
    """Draws attention weights ``[T_q, T_k]`` on ``ax``: a row per query token, a column per key token."""
    image = ax.imshow(np.asarray(weights, dtype=np.float32), cmap="viridis", vmin=0.0)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


class LiveLossPlot:
    """A loss curve that redraws in place while a training loop runs.

    The figure is shown once, with a display id, and each redraw replaces that
    output (Jupyter's ``update_display``), so the notebook keeps one picture:
    the final curve once training ends.

    Args:
      title: the plot's title.
      every: redraw every ``every`` calls of :meth:`add` (drawing costs time).
      reference: an optional ``(label, value)`` drawn as a horizontal line.
    """

    def __init__(self, title: str = "", every: int = 10, reference: tuple[str, float] | None = None):
        import matplotlib.pyplot as plt
        from IPython.display import display

        if every < 1:
            raise ValueError(f"every: expected at least 1, got {every}")
        self.title, self.every, self.reference = title, every, reference
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.fig, self.ax = plt.subplots(figsize=(8, 3.5))
        plt.close(self.fig)  # shown through the display handle only, not again at the end of the cell
        self.handle = display(self.fig, display_id=True)

    def add(self, step: int, loss: float | None = None, val_loss: float | None = None) -> None:
        """Records the training and/or validation loss at ``step``; redraws every ``every`` training points."""
        if loss is not None:
            self.train.append((step, float(loss)))
        if val_loss is not None:
            self.val.append((step, float(val_loss)))
        if loss is not None and len(self.train) % self.every == 0:
            self.draw()

    def draw(self) -> None:
        """Redraws the curve now (call it once after the loop for the final picture)."""
        ax = self.ax
        ax.clear()
        if self.train:
            ax.plot(*zip(*self.train), label="training loss", color="tab:blue", alpha=0.8)
        if self.val:
            ax.plot(*zip(*self.val), "o-", label="validation loss", color="tab:orange")
        if self.reference:
            label, value = self.reference
            ax.axhline(value, color="gray", linestyle="--", label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats per token)")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        self.handle.update(self.fig)


@dataclass(frozen=True)
class AttentionCall:
    query: np.ndarray  # [..., H, T_q, d_head]
    key: np.ndarray  # [..., H, T_k, d_head]
    value: np.ndarray  # [..., H, T_k, d_head]
    weights: np.ndarray  # [..., H, T_q, T_k]


@contextlib.contextmanager
def recording_attention() -> Iterator[list[AttentionCall]]:
    """Records every call that the transformer exercise makes to ``scaled_dot_product_attention``.

    Inside the ``with`` block, the name ``scaled_dot_product_attention`` in
    ``exercises.transformer.transformer`` (what ``MultiHeadAttention`` calls)
    is a wrapper that calls the real function and appends its inputs and
    weights to the yielded list, so a notebook can look inside a model without
    re-implementing it. Run the model eagerly (not under ``jit``) inside the block.
    """
    module = importlib.import_module("exercises.transformer.transformer")
    original = module.scaled_dot_product_attention
    calls: list[AttentionCall] = []

    def recording(query, key, value, mask=None):
        output, weights = original(query, key, value, mask)
        calls.append(AttentionCall(*(np.asarray(a) for a in (query, key, value, weights))))
        return output, weights

    module.scaled_dot_product_attention = recording
    try:
        yield calls
    finally:
        module.scaled_dot_product_attention = original


_DIAGRAM_COLORS = {"attn": "#f6c9a8", "ffn": "#b9d7f0", "norm": "#f3e6a1", "embed": "#d5e8c8", "out": "#e2d4f0"}


def transformer_diagram():
    """A figure of the two transformer families: the original encoder-decoder, and the decoder-only language model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 7.5), gridspec_kw={"width_ratios": [1.6, 1]})
    _draw_encoder_decoder(axes[0])
    _draw_decoder_only(axes[1])
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _draw_encoder_decoder(ax) -> None:
    """The original transformer: an encoder stack whose output every decoder layer cross-attends to."""
    encoder = [("source tokens", "embed"), ("embedding + positions", "embed"), ("self-attention (no mask)", "attn"),
               ("add & LayerNorm", "norm"), ("feed-forward", "ffn"), ("add & LayerNorm", "norm")]
    decoder = [("target tokens (shifted)", "embed"), ("embedding + positions", "embed"), ("masked self-attention", "attn"),
               ("add & LayerNorm", "norm"), ("cross-attention", "attn"), ("add & LayerNorm", "norm"),
               ("feed-forward", "ffn"), ("add & LayerNorm", "norm"), ("linear + softmax", "out")]
    _stack(ax, 0, encoder, (2, 5))
    _stack(ax, 4.2, decoder, (2, 7))
    # the encoder's output is the keys and values of every decoder layer's cross-attention
    ax.plot([0, 0, 2.1, 2.1], [5.3, 6.4, 6.4, 4], color="tab:red", lw=1.6)
    _arrow(ax, (2.1, 4), (4.2 - 1.12, 4), color="tab:red", lw=1.6)
    ax.text(1.05, 6.55, "keys and values from the encoder", color="tab:red", fontsize=9, ha="center")
    ax.set_title("encoder-decoder (\"Attention Is All You Need\", translation)")
    ax.set_xlim(-1.8, 6.2)
    ax.set_ylim(-0.7, 9)


def _draw_decoder_only(ax) -> None:
    """The course's TransformerLM: one pre-norm decoder stack around a residual stream."""
    lm = [("tokens [B, T]", "embed"), ("embed · √d + PE  [B, T, d]", "embed"), ("LayerNorm (ln1)", "norm"),
          ("masked multi-head attention", "attn"), ("+ residual", "norm"), ("LayerNorm (ln2)", "norm"),
          ("feed-forward (up, gelu, down)", "ffn"), ("+ residual", "norm"), ("LayerNorm (ln_f)", "norm"),
          ("linear → logits [B, T, V]", "out")]
    _stack(ax, 0, lm, (2, 7))
    for start, end in ((1.3, 4), (4.3, 7)):  # the residual stream skips each sublayer
        ax.annotate("", xy=(-1.1, end), xytext=(-1.1, start),
                    arrowprops=dict(arrowstyle="->", color="tab:green", lw=1.4, connectionstyle="bar,fraction=-0.15"))
    ax.text(-2.2, 5.5, "residual\nstream", color="tab:green", fontsize=9, ha="center")
    ax.set_title("decoder-only, pre-norm (GPT; this course's TransformerLM)")
    ax.set_xlim(-2.9, 2.2)
    ax.set_ylim(-0.7, 10)


def _box(ax, x, y, text, kind, width=2.2) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.28), width, 0.56, boxstyle="round,pad=0.04",
                                facecolor=_DIAGRAM_COLORS[kind], edgecolor="#555"))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, **style) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "#333", "lw": 1.2, **style})


def _stack(ax, x, rows, repeat) -> None:
    """Draws rows bottom to top with arrows between them; brackets the rows in `repeat` with "x N"."""
    from matplotlib.patches import FancyBboxPatch

    for i, (text, kind) in enumerate(rows):
        _box(ax, x, i, text, kind)
        if i:
            _arrow(ax, (x, i - 1 + 0.3), (x, i - 0.3))
    first, last = repeat
    ax.add_patch(FancyBboxPatch((x - 1.35, first - 0.45), 2.7, last - first + 0.9, boxstyle="round,pad=0.05",
                                facecolor="none", edgecolor="#888", linestyle="--"))
    ax.text(x + 1.45, (first + last) / 2, "× N", fontsize=11, va="center")
