"""``course grade-all`` beyond one machine: ``--scheduler`` on a Dask LocalCluster of two worker processes, and
``--shard I/N`` with ``course merge-results``, each against a local run of the same small class.

One class of three (a correct and a wrong submission of one small exercise, and an unreadable zip) is graded
four ways; the results folders must hold the same files with the same bytes, timings and the job slot's uid
(which depends on what ran at the same time) aside.
"""

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from course.cli import main
from tests.conftest import copy_with_edits

import graders
from graders import batch, cluster
from graders.results import layout

EXERCISE = "positional_encoding"
MODULE = "positional_encoding/positional_encoding.py"
WRONG = ("jnp.arange(seq_len, dtype=jnp.float32)", "jnp.arange(1, seq_len + 1, dtype=jnp.float32)")  # a known mistake
SEED = 11
GRADE = ["-e", EXERCISE, "--seed", str(SEED), "--call-seconds", "3", "--submission-seconds", "60"]
# What differs between two gradings of the same submission: the clocks, the uid of the job slot a worker got, and
# whether the reference's outputs came from the store (graders/engine/reference_store.py).
RUN_DEPENDENT = re.compile(rb'"(created|duration|seconds|execution_time|started|uid)": [^,\n}]+|"(timings|reference_store)": \{[^}]*\}')


def make_class(root: Path) -> None:
    """alice (correct), bob (a known mistake) and carol.zip (not a zip) in ``root``."""
    copy_with_edits(root / "alice")
    copy_with_edits(root / "bob", {MODULE: WRONG})
    (root / "carol.zip").write_bytes(b"this is not a zip")


def contents(results: Path) -> dict[str, bytes]:
    """Every file of a results folder (relative path -> bytes), run-dependent values masked."""
    return {p.relative_to(results).as_posix(): RUN_DEPENDENT.sub(rb'"\1": _', p.read_bytes())
            for p in sorted(results.rglob("*")) if p.is_file()}


def grade_all(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["grade-all", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines at the terminal's width


def test_cluster_and_merged_shards_equal_a_local_run(tmp_path):
    # The cluster extra, which the README's test command installs; skipped with that reason elsewhere.
    distributed = pytest.importorskip("distributed", reason='Dask is the cluster extra: pip install -e ".[cluster]"')
    submissions, results = tmp_path / "submissions", tmp_path / "results"
    make_class(submissions)
    code, said = grade_all(str(submissions), "--out", str(results / "local"), "--jobs", "2", *GRADE)
    assert code == 1 and "3 submissions" in said and "2 graded, 1 rejected" in said, said  # the zip is rejected
    local = contents(results / "local")
    assert {name.split("/")[0] for name in local} == {"alice", "bob", "carol", layout.BATCH_FILE}
    assert json.loads((results / "local" / "bob" / layout.STUDENT_FILE).read_text())["score"] < json.loads(
        (results / "local" / "alice" / layout.STUDENT_FILE).read_text())["score"]

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code, said = grade_all(str(submissions), "--out", str(results / "cluster"), "--scheduler", cluster.scheduler_address, *GRADE)
        assert code == 1 and "2 graded, 1 rejected" in said and "3/3" in said and "carol rejected: not a readable zip" in said, said
        assert contents(results / "cluster") == local
        # The local run stored the reference's outputs for this seed: the cluster's gradings only read them.
        store = json.loads((results / "cluster" / "alice" / "report.json").read_text())["grader"]["reference_store"]
        assert store["used"] and store["hits"] > 0 and store["misses"] == 0, store
        # A re-run skips every unchanged submission, as a local one does: nothing is sent to the workers.
        before = (results / "cluster" / "alice" / "score.json").stat().st_mtime_ns
        code, said = grade_all(str(submissions), "--out", str(results / "cluster"), "--scheduler", cluster.scheduler_address, *GRADE)
        assert "3 unchanged (skipped)" in said and (results / "cluster" / "alice" / "score.json").stat().st_mtime_ns == before, said

    shards = [batch.shard_of(s, 2) for s in ("alice", "bob", "carol")]
    assert sorted(set(shards)) == [0, 1], shards  # each shard grades someone
    with ThreadPoolExecutor(1) as pool:  # the two shards at once, as two machines would run them
        other = pool.submit(batch.grade_all, submissions, results / "shard1", shard=(1, 2), seed=SEED, exercises=[EXERCISE],
                            limits=graders.Limits(call_seconds=3, submission_seconds=60))
        code, said = grade_all(str(submissions), "--out", str(results / "shard0"), "--shard", "0/2", *GRADE)
        assert f"{shards.count(0)} submissions" in said, said
        assert len(other.result().outcomes) == shards.count(1)
    merged = CliRunner().invoke(main, ["merge-results", str(results / "shard1"), str(results / "shard0"), "--out", str(results / "merged")])
    assert merged.exit_code == 0 and "2 graded, 1 rejected" in " ".join(merged.output.split()), merged.output
    assert contents(results / "merged") == local
    # A re-run of the merged folder as one unsharded run skips everyone.
    code, said = grade_all(str(submissions), "--out", str(results / "merged"), *GRADE)
    assert "3 unchanged (skipped)" in said, said


def shard_folder(path: Path, index: int, count: int, *, seed: int = SEED, students: tuple[str, ...] = ()) -> Path:
    """A hand-made shard results folder (no grading) holding ``students``' records."""
    path.mkdir(parents=True)
    record = batch.batch_record(grader_version="v1", seed=seed, exercises=[EXERCISE], started="2026-01-01T00:00:00Z",
                                shard=(index, count))
    (path / layout.BATCH_FILE).write_text(json.dumps(record))
    for student in students:
        (path / student).mkdir()
        (path / student / layout.STUDENT_FILE).write_text(json.dumps({"student": student, "status": "graded", "score": 1,
                                                                       "max_score": 2, "reason": ""}))
    return path


def test_shards_and_merges_that_cannot_work_are_refused(tmp_path, monkeypatch):
    one, two = shard_folder(tmp_path / "a", 0, 2, students=("alice",)), shard_folder(tmp_path / "b", 1, 2, students=("bob",))
    merged = batch.merge_results([one, two], tmp_path / "merged")
    assert [o.student for o in merged.outcomes] == ["alice", "bob"] and merged.seed == SEED
    assert json.loads((tmp_path / "merged" / layout.BATCH_FILE).read_text()) == {
        "schema": layout.BATCH_SCHEMA, "grader_version": "v1", "seed": SEED, "exercises": [EXERCISE], "started": "2026-01-01T00:00:00Z"}
    with pytest.raises(batch.BatchError, match="not an empty folder"):
        batch.merge_results([one, two], tmp_path / "merged")
    with pytest.raises(batch.BatchError, match="shard 1/2 missing"):
        batch.merge_results([one], tmp_path / "m1")
    with pytest.raises(batch.BatchError, match="seed 12"):
        batch.merge_results([one, shard_folder(tmp_path / "c", 1, 2, seed=12)], tmp_path / "m2")
    with pytest.raises(batch.BatchError, match="student 'alice' is in both"):
        batch.merge_results([one, shard_folder(tmp_path / "d", 1, 2, students=("alice",))], tmp_path / "m3")
    with pytest.raises(batch.BatchError, match="both shard 0/2"):
        batch.merge_results([one, shutil.copytree(one, tmp_path / "e")], tmp_path / "m4")
    with pytest.raises(batch.BatchError, match="holds no batch.json of a shard"):
        batch.merge_results([one, tmp_path / "merged"], tmp_path / "m5")
    # A student's folder without its record (a grading cut short) or a stray folder: refused, nothing written.
    cut = shard_folder(tmp_path / "f", 1, 2, students=("bob", "carol"))
    (cut / "carol" / layout.STUDENT_FILE).unlink()
    with pytest.raises(batch.BatchError, match=r"f/carol holds no readable submission.json"):
        batch.merge_results([one, cut], tmp_path / "m6")
    (tmp_path / "m7").mkdir()
    (cut / "carol" / layout.STUDENT_FILE).write_text("{cut sho")
    with pytest.raises(batch.BatchError, match="grade it again"):
        batch.merge_results([one, cut], tmp_path / "m7")
    assert not (tmp_path / "m6").exists() and list((tmp_path / "m7").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    copy_with_edits(tmp_path / "submissions" / "alice")
    runner = CliRunner()
    for args, message in ((["--shard", "2/2", "--seed", "1"], "0 <= I < N"), (["--shard", "0/2"], "give --seed too"),
                          (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "leave it out with --scheduler")):
        refused = runner.invoke(main, ["grade-all", str(tmp_path / "submissions"), "--out", str(tmp_path / "r"), *args])
        assert refused.exit_code == 2 and message in " ".join(refused.output.split()), refused.output
    assert not (tmp_path / "r").exists()
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)  # nothing listens on port 1
    code, output = grade_all(str(tmp_path / "submissions"), "--out", str(tmp_path / "r"), "-e", EXERCISE,
                             "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "--scheduler: cannot reach a Dask scheduler at 'tcp://127.0.0.1:1'" in output, output
    assert "after 1 s" in output and "Traceback" not in output
    assert not (tmp_path / "r").exists()  # no batch.json with a seed that a next run would have to --force
    # What each worker is checked for, before the run and in every task: this grader version and the submissions.
    assert cluster.worker_problem(str(tmp_path / "submissions"), batch.grader_version()) is None
    assert "runs grader version" in cluster.worker_problem(str(tmp_path / "submissions"), "0" * 16)
    assert "cannot see SUBMISSIONS_DIR" in cluster.worker_problem(str(tmp_path / "nowhere"), batch.grader_version())
