"""Tokenizer, corpora, batches and synthetic tasks."""

import numpy as np
import pytest

from course import data, tokenizer


@pytest.mark.parametrize("text", ["", "def f(x):\n    return x\n", "héllo wörld ∑ 🙂", "\x00\xff"])
def test_tokenizer_round_trips_any_text(text):
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int32 and ((0 <= ids) & (ids < tokenizer.VOCAB_SIZE)).all()
    assert tokenizer.decode(ids) == text


def test_tokenizer_bad_input():
    with pytest.raises(TypeError, match="text"):
        tokenizer.encode(b"bytes")
    with pytest.raises(ValueError, match="ids"):
        tokenizer.decode([1, 256])
    assert tokenizer.decode([0xE2, 0x82]) == "\ufffd"  # a cut multi-byte character decodes, it does not raise


def test_stdlib_files_are_sorted_and_skip_tests_and_gui():
    files = data.stdlib_files()
    assert files == sorted(files) and len(files) > 100
    assert not any(set(f.parts) & data.STDLIB_SKIP for f in files)
    assert any(f.name == "functools.py" for f in files)


def test_stdlib_corpus_split_is_deterministic_and_disjoint():
    first, second = data.stdlib_corpus(), data.stdlib_corpus()
    np.testing.assert_array_equal(first.train, second.train)
    np.testing.assert_array_equal(first.val, second.val)
    assert 0.03 < len(first.val) / (len(first.train) + len(first.val)) < 0.3
    assert "def " in tokenizer.decode(first.val[:20000])


def test_text_corpus(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("roses are red\n" * 20)
    corpus = data.text_corpus(path)
    assert tokenizer.decode(np.concatenate([corpus.train, corpus.val])) == path.read_text()
    assert len(corpus.val) == len(corpus.train) // 9 + 1 or 0.05 < len(corpus.val) / len(corpus.train) < 0.15


@pytest.mark.parametrize(("content", "problem"), [(b"", "too few"), (b"\xff\xfe bad", "not UTF-8")])
def test_bad_text_corpora_are_named(tmp_path, content, problem):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=problem):
        data.text_corpus(path)
    with pytest.raises(FileNotFoundError, match="corpus"):
        data.load_corpus(str(tmp_path / "missing.txt"))


def test_sample_batch_draws_windows_of_the_corpus():
    tokens = np.arange(100, dtype=np.int32)
    batch = data.sample_batch(tokens, np.random.default_rng(0), 8, 10)
    assert batch.shape == (8, 10) and batch.dtype == np.int32
    assert (np.diff(batch, axis=1) == 1).all()  # consecutive tokens
    np.testing.assert_array_equal(batch, data.sample_batch(tokens, np.random.default_rng(0), 8, 10))
    with pytest.raises(ValueError, match="seq_len"):
        data.sample_batch(tokens, np.random.default_rng(0), 8, 101)


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_synthetic_tasks(task):
    batch = data.synthetic_batch(task, np.random.default_rng(0), 4, 6, 10)
    assert batch.shape == (4, 13) and (batch[:, 6] == data.SEPARATOR).all()
    x, y = batch[:, :6], batch[:, 7:]
    np.testing.assert_array_equal(y, x[:, ::-1] if task == "reverse" else np.sort(x, axis=1))
    # Perfect logits (one-hot of the next token) score 1; logits that always say 0 score 0.
    perfect = np.eye(10)[np.roll(batch, -1, axis=1)]
    assert data.synthetic_accuracy(perfect, batch) == 1.0
    assert data.synthetic_accuracy(np.eye(10)[np.zeros_like(batch)], batch) == 0.0


def test_synthetic_bad_input():
    with pytest.raises(ValueError, match="task"):
        data.synthetic_batch("copy", np.random.default_rng(0), 4, 6, 10)
    with pytest.raises(ValueError, match="vocab_size"):
        data.synthetic_batch("sort", np.random.default_rng(0), 4, 6, 3)
