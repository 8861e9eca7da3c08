"""The course's sections, in teaching order, and where their notebooks live.

One list, read by every tool that handles the notebooks (building them from
their text sources, executing them, exporting the site), so adding a section
is one entry here and one source file in ``course/notebooks/src/``.

A section's notebook is ``course/notebooks/<NN>_<slug>.ipynb``, built from the
percent-format text source ``course/notebooks/src/<NN>_<slug>.py`` (see
:mod:`authoring.notebooks.build`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from course import catalog
from course.submission import repo_root

# The course's public git repository: the one place its address is written.
# The Colab setup cell of every notebook installs the course from it, and the
# "Open in Colab" links point into it. Change it here when publishing a fork,
# then run `course build-notebooks`.
REPOSITORY_URL = "https://github.com/jax-transformers-course/jax-transformers-course"
BRANCH = "main"
DISTRIBUTION = "jax-transformers-course"  # the project's name in pyproject.toml, what pip installs
LEVELS = ("beginner", "intermediate", "advanced")


@dataclass(frozen=True)
class Section:
    number: int  # its place in the course: 0 opens it
    slug: str  # file name stem after the number
    title: str
    level: str  # one of LEVELS
    builds: str  # what the student builds or does, one markdown sentence
    exercises: tuple[str, ...] = ()  # the exercises it teaches (the student writes them here), catalogue names
    # Earlier exercises whose code it runs too: imported, or the pieces of the
    # TransformerLM it builds. `course build-notebooks` checks the two lists
    # against the source's imports, so that together they are exactly what the
    # notebook runs of the student's code.
    uses: tuple[str, ...] = ()
    gpu: bool = False  # ask Colab for a GPU runtime (long training or a model to run)

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"level: expected one of {LEVELS}, got {self.level!r}")
        for name in (*self.exercises, *self.uses):
            catalog.get(name)  # an unknown exercise name fails here, with the known ones listed
        both = set(self.exercises) & set(self.uses)
        if both:
            raise ValueError(f"uses: {sorted(both)} are already among the section's exercises")

    @property
    def runs(self) -> tuple[str, ...]:
        """Every exercise whose code the notebook runs (its own and those it uses), in the catalogue's order."""
        return tuple(e.name for e in catalog.EXERCISES if e.name in (*self.exercises, *self.uses))

    @property
    def name(self) -> str:
        """``01_jax``: the notebook's file stem."""
        return f"{self.number:02d}_{self.slug}"

    @property
    def notebook(self) -> Path:
        """The built notebook, ``course/notebooks/<name>.ipynb``."""
        return NOTEBOOK_DIR / f"{self.name}.ipynb"

    @property
    def source(self) -> Path:
        """The notebook's text source, ``course/notebooks/src/<name>.py``."""
        return NOTEBOOK_DIR / "src" / f"{self.name}.py"


NOTEBOOK_DIR = repo_root() / "course" / "notebooks"

SECTIONS: tuple[Section, ...] = (
    Section(
        0, "llm_demo", "A language model at work", "beginner",
        "nothing yet: you run the course's compiled demo model, see what temperature and top-k change, and what the course will build",
    ),
    Section(
        1, "jax", "Introduction to JAX", "beginner",
        "a small neural network in plain JAX: its prediction, loss, jit-compiled gradient and per-example gradients",
        ("jax_basics",),
    ),
    Section(
        2, "flax_nnx", "Introduction to Flax NNX", "beginner",
        "a classifier as an `nnx.Module` with `Linear`, `BatchNorm` and `Dropout`, trained by an `nnx.jit` step with an optax optimizer",
    ),
    Section(
        3, "text_to_embeddings", "From text to embeddings", "beginner",
        "the path from text to vectors: tokens, ids, the course's byte tokenizer on real text, and an embedding table",
    ),
    Section(
        4, "positional_encoding", "Positional encodings", "beginner",
        "the sinusoidal positional encoding, drawn as a heat map, and what it says about the distance between positions",
        ("positional_encoding",),
    ),
    Section(
        5, "attention", "Understanding attention", "intermediate",
        "scaled dot-product attention and the causal mask, with attention weights drawn over real text",
        ("attention",),
        uses=("positional_encoding",),
    ),
    Section(
        6, "transformer", "Transformer architecture", "intermediate",
        "multi-head attention, the feed-forward network and the pre-norm decoder block as Flax NNX modules",
        ("transformer",),
        uses=("positional_encoding", "attention"),
    ),
    Section(
        7, "loss", "Training objective", "intermediate",
        "the cross-entropy loss and the next-token loss of a language model, checked against worked examples",
        ("loss",),
        uses=("positional_encoding", "attention", "transformer"),  # the model whose loss it computes
    ),
    # The encoder-decoder of the tutorial's recap trains with your cross-entropy loss, so it follows the objective.
    Section(
        8, "encoder_decoder", "Encoder-decoder transformers", "advanced",
        "an encoder block, a decoder block with cross-attention and a sequence-to-sequence model, trained to reverse digits and decoded greedily",
        ("encoder_decoder",),
        uses=("positional_encoding", "attention", "loss", "transformer"),
    ),
    Section(
        9, "training", "Training a model from scratch", "advanced",
        "the train step (and its data-parallel version) and text generation, then a language model trained on Python's own source code",
        ("training", "generation"),
        uses=("positional_encoding", "attention", "loss", "transformer"),
        gpu=True,
    ),
    Section(
        10, "your_model", "Your model", "intermediate",
        "text from the model you trained and from the course's pretrained weights in your own modules, sampled by your `generate`, and a look inside",
        ("generation",),
        uses=("positional_encoding", "attention", "transformer"),  # the pretrained model, built from your modules
        gpu=True,
    ),
)


def get(number: int) -> Section:
    """The section numbered ``number``.

    Raises:
      KeyError: no section has that number; the message lists those that do.
    """
    for section in SECTIONS:
        if section.number == number:
            return section
    raise KeyError(f"section: no section numbered {number} (known: {', '.join(str(s.number) for s in SECTIONS)})")


def github_path() -> str | None:
    """``owner/repo`` of :data:`REPOSITORY_URL` when it is on GitHub (Colab opens notebooks from there), else None."""
    prefix = "https://github.com/"
    if not REPOSITORY_URL.startswith(prefix):
        return None
    return REPOSITORY_URL[len(prefix):].removesuffix(".git").strip("/")


def colab_url(section: Section) -> str | None:
    """The address that opens the section's notebook on Google Colab, or None off GitHub."""
    path = github_path()
    if path is None:
        return None
    return f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/course/notebooks/{section.name}.ipynb"
