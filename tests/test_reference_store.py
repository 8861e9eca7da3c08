"""The reference's stored outputs (graders/engine/reference_store.py): found by what determines them, never mixed up."""

import numpy as np
import pytest

from graders.engine import reference_store
from graders.runtime import wire


@pytest.fixture
def store(tmp_path):
    store = reference_store.ReferenceStore(tmp_path / "seed-7")
    store.case = "test_x.py::test_case"
    reference_store.activate(store)
    yield store
    reference_store.activate(None)


def counted(value):
    """A computation that records how often it ran."""
    calls = []

    def compute():
        calls.append(1)
        return value
    return compute, calls


def test_a_second_call_with_the_same_inputs_reads_what_the_first_stored(store):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = (np.float32(2) * x, {"grads": (None, np.ones(3, np.int32))}, [1.5, "text"])
    compute, calls = counted(out)
    first = reference_store.outputs("f/vjp", (x, {"mask": None}), compute)
    again = reference_store.outputs("f/vjp", (x.copy(), {"mask": None}), compute)
    assert len(calls) == 1 and (store.misses, store.hits) == (1, 1)
    assert first is out  # a miss returns the computation's own outputs
    np.testing.assert_array_equal(again[0], out[0])
    assert again[0].dtype == np.float32 and again[1]["grads"][0] is None and again[2] == [1.5, "text"]
    np.testing.assert_array_equal(again[1]["grads"][1], out[1]["grads"][1])
    assert isinstance(again, tuple) and isinstance(again[2], list)


@pytest.mark.parametrize("change", ["value", "dtype", "shape", "label", "case", "scalar type"])
def test_anything_that_decides_the_outputs_is_part_of_their_key(store, change):
    x = np.zeros((2, 2), np.float32)
    compute, calls = counted(np.ones(1))
    reference_store.outputs("f", (x, 1), compute)
    other = {"value": ("f", (x + 1, 1)), "dtype": ("f", (x.astype(np.float64), 1)), "shape": ("f", (x.reshape(4), 1)),
             "label": ("g", (x, 1)), "scalar type": ("f", (x, 1.0)), "case": ("f", (x, 1))}[change]
    if change == "case":
        store.case = "test_x.py::test_other"
    reference_store.outputs(*other, compute)
    assert len(calls) == 2


def test_without_a_store_or_with_an_object_among_the_inputs_it_computes_every_time(store):
    compute, calls = counted(np.ones(2))
    reference_store.outputs("f", (object(),), compute)
    reference_store.outputs("f", (object(),), compute)
    reference_store.activate(None)
    reference_store.outputs("f", (1,), compute)
    reference_store.outputs("f", (1,), compute)
    assert len(calls) == 4 and store.hits == 0


def test_an_unreadable_entry_is_computed_again_and_rewritten(store):
    compute, calls = counted(np.full(3, 7.0))
    reference_store.outputs("f", (1,), compute)
    [entry] = list(store.root.glob("*.frame"))
    entry.write_bytes(entry.read_bytes()[:-5])  # cut short, as by a full disk
    np.testing.assert_array_equal(reference_store.outputs("f", (1,), compute), np.full(3, 7.0))
    np.testing.assert_array_equal(reference_store.outputs("f", (1,), compute), np.full(3, 7.0))
    assert len(calls) == 2 and store.hits == 1
    assert not list(store.root.glob(".*.tmp"))  # written under a temporary name, then renamed


def test_outputs_the_wire_cannot_carry_are_returned_but_not_stored(store):
    thing = object()
    compute, calls = counted((thing,))
    assert reference_store.outputs("f", (1,), compute)[0] is thing
    assert reference_store.outputs("f", (1,), compute)[0] is thing
    assert len(calls) == 2 and not list(store.root.glob("*.frame"))


def test_a_whole_frame_unpacks_and_a_cut_one_is_a_protocol_error():
    arrays = {}
    frame = wire.pack({"outputs": wire.encode((np.arange(3),), arrays)}, arrays)
    header, arrays = wire.unpack_frame(frame)
    np.testing.assert_array_equal(wire.decode(header["outputs"], arrays)[0], np.arange(3))
    with pytest.raises(wire.ProtocolError, match="size differs"):
        wire.unpack_frame(frame[:-1])


def test_prune_removes_seeds_unused_for_long_or_least_recently_used_past_the_bound(tmp_path, monkeypatch):
    import os
    import time

    monkeypatch.setattr(reference_store, "MAX_BYTES", 1500)
    stores, now = tmp_path / "reference-outputs", time.time()

    def seed(path: str, hours_ago: float, size: int = 600):
        folder = stores / path
        (folder / "cpu").mkdir(parents=True)
        (folder / "cpu" / "entry.frame").write_bytes(b"x" * size)
        os.utime(folder, (now - hours_ago * 3600,) * 2)
        return folder

    old = seed("code-a/seed-1", 24 * 40)  # unused for 40 days
    kept = seed("code-a/seed-2", 2)
    over = seed("code-b/seed-3", 3)  # the least recently used once the bound is passed
    in_use = seed("code-b/seed-4", 0.2)  # a concurrent grading's, perhaps: never removed for size
    (stores / "code-a" / ".removed-seed-9-123" / "cpu").mkdir(parents=True)  # an interrupted prune's
    (stores / "code-d").mkdir()
    os.utime(stores / "code-d", (now - 7200,) * 2)  # an empty grading code's folder
    used = stores / "code-c" / "seed-5"
    assert sorted(reference_store.prune(stores, used)) == [old, over]
    assert kept.exists() and in_use.exists() and used.is_dir() and now - 5 < used.stat().st_mtime
    assert sorted(p.name for p in stores.iterdir()) == [".pruned", "code-a", "code-b", "code-c"]
    assert sorted(p.name for p in (stores / "code-a").iterdir()) == ["seed-2"]
    # Once an hour: a second grading marks its seed used and prunes nothing, until the hour has passed.
    again = seed("code-a/seed-6", 24 * 40)
    assert reference_store.prune(stores, used) == []
    os.utime(stores / ".pruned", (now - 2 * 3600,) * 2)
    assert reference_store.prune(stores, used) == [again] and kept.exists()
