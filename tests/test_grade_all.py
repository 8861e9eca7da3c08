"""``course grade-all`` and ``course report`` on a generated class of 20 submissions.

The class is graded once (module scope) on one small exercise under small
limits, so that hangs cost seconds: correct copies of reference/, wrong ones,
crashing and hanging ones, zips (good, unreadable, escaping, with a link),
a syntax error and a missing module.
"""

import csv
import io
import json
import shutil
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from course.cli import main
from course.submission import repo_root
from tests.browser import chromium, needs_chromium, screenshot
from tests.conftest import copy_with_edits

import graders
from graders import batch
from graders.results import layout, reports
from graders.results.scores import Case, ExerciseScore, GradingResult

ROOT = repo_root()
EXERCISE = "positional_encoding"
MODULE = "positional_encoding/positional_encoding.py"
LIMITS = graders.Limits(call_seconds=3, submission_seconds=60, memory_mb=1024, crashes=1)
SEED = 7

WRONG = ("jnp.arange(seq_len, dtype=jnp.float32)", "jnp.arange(1, seq_len + 1, dtype=jnp.float32)")  # a known mistake
CRASH = ("    if seq_len <= 0:\n", "    import os\n    os._exit(3)\n    if seq_len <= 0:\n")
HANG = ("    if seq_len <= 0:\n", "    while True:\n        pass\n    if seq_len <= 0:\n")
SYNTAX = ("    if seq_len <= 0:\n", "    if seq_len <= 0\n")


def _zip(folder: Path, archive: Path, extra: dict[str, bytes] | None = None, link: str | None = None) -> None:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zipped.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zipped.writestr(info, "/etc/passwd")
    shutil.rmtree(folder)


def make_class(root: Path) -> dict[str, str]:
    """Writes 20 submissions into ``root``; returns student -> what it is."""
    kinds = {}
    for i in range(6):
        copy_with_edits(root / f"correct{i}")
        kinds[f"correct{i}"] = "correct"
    for i in range(4):
        copy_with_edits(root / f"wrong{i}", {MODULE: WRONG})
        kinds[f"wrong{i}"] = "wrong"
    for i in range(2):
        copy_with_edits(root / f"crash{i}", {MODULE: CRASH})
        kinds[f"crash{i}"] = "crash"
    for i in range(2):
        copy_with_edits(root / f"hang{i}", {MODULE: HANG})
        kinds[f"hang{i}"] = "hang"
    copy_with_edits(root / "syntax", {MODULE: SYNTAX})
    kinds["syntax"] = "syntax"
    copy_with_edits(root / "missing")
    (root / "missing" / MODULE).unlink()
    kinds["missing"] = "missing"
    _zip(copy_with_edits(root / "zipped_tmp"), root / "zipped.zip")
    kinds["zipped"] = "correct"
    (root / "badzip.zip").write_bytes(b"this is not a zip")
    kinds["badzip"] = "rejected"
    _zip(copy_with_edits(root / "slip_tmp"), root / "slip.zip", extra={"../../escaped.py": b"print('out')"})
    kinds["slip"] = "rejected"
    _zip(copy_with_edits(root / "link_tmp"), root / "link.zip", link="positional_encoding/link.py")
    kinds["link"] = "rejected"
    assert len(kinds) == 20
    return kinds


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    kinds = make_class(base / "submissions")
    result = CliRunner().invoke(main, [
        "grade-all", str(base / "submissions"), "--out", str(base / "results"), "--jobs", "2", "--seed", str(SEED),
        "-e", EXERCISE, "--call-seconds", str(LIMITS.call_seconds), "--submission-seconds", str(LIMITS.submission_seconds),
    ])
    return base, kinds, result


def test_grade_all_grades_each_student_and_isolates_failures(graded_class):
    base, kinds, result = graded_class
    assert result.exit_code == 1, result.output  # three rejected zips: the instructor must look
    said = " ".join(result.output.split())  # rich wraps long lines at the terminal's width
    assert "20 submissions" in said and "3 rejected" in said and "17 graded" in said, said
    folders = sorted(p.name for p in (base / "results").iterdir() if p.is_dir())
    assert folders == sorted(kinds)
    meta = json.loads((base / "results" / layout.BATCH_FILE).read_text())
    assert meta["seed"] == SEED and meta["exercises"] == [EXERCISE] and meta["grader_version"] == batch.grader_version()
    for student, kind in kinds.items():
        record = json.loads((base / "results" / student / layout.STUDENT_FILE).read_text())
        assert record["seed"] == SEED, student
        if kind == "correct":
            assert record["status"] == "graded" and record["score"] == record["max_score"] > 0, record
            assert graders.load(base / "results" / student / "score.json").seed == SEED
        elif kind == "rejected":
            assert record["status"] == "rejected" and record["score"] == 0 and record["reason"], record
        else:  # wrong, crashing, hanging, broken: graded, and below full marks
            assert record["status"] == "graded" and record["score"] < record["max_score"], record
    assert not (base / "escaped.py").exists() and not (base.parent / "escaped.py").exists()
    reasons = {s: json.loads((base / "results" / s / layout.STUDENT_FILE).read_text())["reason"] for s in ("badzip", "slip", "link")}
    assert "not a readable zip" in reasons["badzip"] and "outside" in reasons["slip"] and "symbolic link" in reasons["link"]


def test_crash_and_hang_cost_only_their_own_cases(graded_class):
    base, _, _ = graded_class
    for student in ("crash0", "hang0"):
        score = graders.load(base / "results" / student / "score.json")
        assert score.status == "ok" and score.score < score.max_score
    hang = graders.load(base / "results" / "hang0" / "score.json")
    assert any("time" in c.message or "seconds" in c.message for c in hang.exercises[0].cases), hang


def test_rerun_skips_unchanged_and_force_regrades(graded_class, tmp_path):
    base, _, _ = graded_class
    results = base / "results"
    before = (results / "correct0" / "score.json").stat().st_mtime_ns
    rerun = batch.grade_all(base / "submissions", results, exercises=[EXERCISE], limits=LIMITS)
    assert rerun.seed == SEED and all(o.skipped for o in rerun.outcomes) and len(rerun.outcomes) == 20
    assert (results / "correct0" / "score.json").stat().st_mtime_ns == before
    # A changed submission is regraded alone (a copy of the class, so the other tests keep theirs).
    shutil.copytree(base / "submissions", tmp_path / "submissions")
    shutil.copytree(results, tmp_path / "results")
    shutil.rmtree(tmp_path / "submissions" / "wrong0")
    copy_with_edits(tmp_path / "submissions" / "wrong0")
    changed = batch.grade_all(tmp_path / "submissions", tmp_path / "results", exercises=[EXERCISE], limits=LIMITS)
    regraded = [o for o in changed.outcomes if not o.skipped]
    assert [o.student for o in regraded] == ["wrong0"] and regraded[0].score == regraded[0].max_score


def test_bad_batch_input_is_a_clear_error(graded_class, tmp_path):
    base, _, _ = graded_class
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["grade-all", str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    assert empty.exit_code == 2 and "holds no submission" in empty.output
    other = tmp_path / "other"
    shutil.copytree(base / "results", other)
    meta = json.loads((other / layout.BATCH_FILE).read_text())
    (other / layout.BATCH_FILE).write_text(json.dumps({**meta, "grader_version": "0" * 16}))
    stale = runner.invoke(main, ["grade-all", str(base / "submissions"), "--out", str(other), "-e", EXERCISE])
    assert stale.exit_code == 2 and "grader version" in stale.output and "--force" in stale.output
    (tmp_path / "notresults").mkdir()
    (tmp_path / "notresults" / "x.txt").write_text("x")
    foreign = runner.invoke(main, ["grade-all", str(base / "submissions"), "--out", str(tmp_path / "notresults")])
    assert foreign.exit_code == 2 and "not a results folder" in foreign.output
    report = runner.invoke(main, ["report", str(tmp_path / "notresults"), "--out", str(tmp_path / "rep")])
    assert report.exit_code == 2 and "RESULTS_DIR" in report.output


def test_report_csv_summary_and_feedback(graded_class):
    base, kinds, _ = graded_class
    out = base / "report"
    result = CliRunner().invoke(main, ["report", str(base / "results"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader((out / "grades.csv").open()))
    assert rows[0] == ["student", EXERCISE, "total", "percent", "status", "reason"]
    assert rows[1][0] == "max points" and float(rows[1][1]) == float(rows[1][2]) > 0 and rows[1][3] == "100"
    assert len(rows) == 2 + 20 and sorted(r[0] for r in rows[2:]) == sorted(kinds)
    by_student = {r[0]: r for r in rows[2:]}
    assert by_student["correct0"][3] == "100.0" and by_student["badzip"][2] == "0" and by_student["badzip"][4] == "rejected"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status_counts"] == {"graded": 17, "rejected": 3}
    totals = {s["student"]: s["total"] for s in summary["students"]}
    assert summary["average_total"] == pytest.approx(sum(totals.values()) / 20)
    assert all(float(by_student[s][2]) == totals[s] for s in totals)
    hardest = summary["hardest_cases"]
    assert hardest and hardest[0]["pass_rate"] < 1 and all(a["pass_rate"] <= b["pass_rate"] for a, b in zip(hardest, hardest[1:]))
    assert any(c["top_hint"] for c in hardest)  # positions from 1: a known mistake with a hint
    assert sorted(p.stem for p in (out / "feedback").iterdir()) == sorted(kinds)
    assert "not a readable zip" in (out / "feedback" / "badzip.md").read_text()
    assert "SyntaxError" in by_student["syntax"][5] or "syntax" in by_student["syntax"][5].lower(), by_student["syntax"]
    assert by_student["missing"][5].startswith("no case passed"), by_student["missing"]


def test_feedback_shows_hidden_cases_as_pass_fail_only(graded_class):
    base, _, _ = graded_class
    result = graders.load(base / "results" / "wrong0" / "score.json")
    case = next(c for c in result.exercises[0].cases if c.status == "failed" and c.message)
    exercise = result.exercises[0]
    hidden = replace(exercise, cases=tuple(replace(c, visibility="hidden") if c is case else c for c in exercise.cases))
    record = reports.StudentRecord("wrong0", "graded", "", replace(result, exercises=(hidden,)))
    text = reports.feedback(record)
    assert case.message.splitlines()[0] not in text and "hidden case: failed" in text
    assert case.message.splitlines()[0] in reports.feedback(reports.StudentRecord("wrong0", "graded", "", result))


def test_report_escapes_what_submissions_control(tmp_path):
    # A hand-made results folder (no grading): a hint and a reason carry markup, which the page must show as text.
    results = tmp_path / "results"
    (results / "alice").mkdir(parents=True)
    (results / layout.BATCH_FILE).write_text(json.dumps({"schema": layout.BATCH_SCHEMA, "grader_version": "v1", "seed": SEED,
                                                           "exercises": ["loss"]}))
    cases = (Case("loss", "test_a", 2, 2, "passed"), Case("loss", "test_b", 0, 2, "failed", "wrong", hint="<b>one</b> & two"))
    (results / "alice" / "score.json").write_text(json.dumps(GradingResult("alice", SEED, (ExerciseScore("loss", cases),)).to_json()))
    (results / "alice" / layout.STUDENT_FILE).write_text(json.dumps({"student": "alice", "status": "grader_error",
                                                                      "reason": "<script>alert(1)</script>"}))
    summary = reports.write_report(results, tmp_path / "report")
    assert summary.students[0].total == 2 and summary.hardest_cases[0].top_hint == "<b>one</b> & two"
    assert json.loads((tmp_path / "report" / "summary.json").read_text()) == json.loads(json.dumps(summary.to_json()))
    assert list(summary.to_json()) == ["schema", "seed", "grader_version", "exercises", "max_points", "total_max", "students",
                                       "exercise_averages", "average_total", "status_counts", "hardest_cases"]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;one&lt;/b&gt; &amp; two (1×)" in page and '<span class="bad">grader_error</span>' in page


@needs_chromium
def test_report_html_renders_in_chromium(graded_class, tmp_path):
    base, _, _ = graded_class
    out = base / "report_html"
    reports.write_report(base / "results", out)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "http" not in page.replace("http-equiv", "")
    profile = tmp_path / "profile"
    url = (out / "report.html").resolve().as_uri()
    dom = chromium("--dump-dom", url, profile=profile)
    assert "Class report" in dom.stdout and "correct0" in dom.stdout and dom.stdout.count("<img") == 2
    # The images decode in the browser: a script writes their natural sizes into the DOM it dumps.
    probe = out / "probe.html"
    probe.write_text(page.replace("</body>", "<script>window.onload=()=>{document.body.setAttribute('data-sizes',"
                                  "[...document.images].map(i=>i.naturalWidth+'x'+i.naturalHeight).join(','))}</script></body>"))
    sized = chromium("--virtual-time-budget=5000", "--dump-dom", probe.resolve().as_uri(), profile=profile)
    sizes = sized.stdout.split('data-sizes="')[1].split('"')[0].split(",")
    assert len(sizes) == 2 and all(int(s.split("x")[0]) > 100 for s in sizes), sizes
    shot = screenshot(url, "report.png", profile=profile, size=(1280, 1400))
    assert shot.stat().st_size > 10_000


def test_safe_extract_limits_and_top_folder(tmp_path):
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as zipped:
        zipped.writestr("exercises/loss/loss.py", "x = 1\n")
    assert batch.safe_extract(nested, tmp_path / "a") == tmp_path / "a" / "exercises"
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("loss/loss.py", b"0" * (8 * 2**20))
    with pytest.raises(batch.Rejected, match="compressed more than"):
        batch.safe_extract(bomb, tmp_path / "b")
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zipped:
        for i in range(batch.MAX_ZIP_FILES + 1):
            zipped.writestr(f"f{i}", "")
    with pytest.raises(batch.Rejected, match="entries"):
        batch.safe_extract(many, tmp_path / "c")
    absolute = tmp_path / "absolute.zip"
    with zipfile.ZipFile(absolute, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("/tmp/evil.py"), "x")
    with pytest.raises(batch.Rejected, match="outside"):
        batch.safe_extract(absolute, tmp_path / "d")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.py"))


def _damaged(blob: bytes, *edits: tuple[int, int]) -> bytes:
    """``blob`` with each ``(offset, byte)`` of ``edits`` written over it (negative offsets count from the end)."""
    data = bytearray(blob)
    for offset, value in edits:
        data[offset] = value
    return bytes(data)


def test_safe_extract_refuses_damaged_encrypted_and_unusual_zips(tmp_path):
    """A student's broken zip is the student's fault (rejected, one line), never a grader error or a traceback."""
    blobs = {}
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", method) as zipped:
            zipped.writestr("loss/loss.py", "print('hello')\n" * 200)
        blobs[method] = buffer.getvalue()
    good, stored = blobs[zipfile.ZIP_DEFLATED], blobs[zipfile.ZIP_STORED]
    header = 30 + len("loss/loss.py")  # the local header, then the compressed data
    central, stored_central = good.rfind(b"PK\x01\x02"), stored.rfind(b"PK\x01\x02")
    past_end = (len(stored) + 100).to_bytes(4, "little")  # sizes in the central directory that run past the file
    cases = {
        "damaged data": (_damaged(good, *((header + i, good[header + i] ^ 0xFF) for i in range(4, 24))),
                         "not a readable zip .*invalid"),
        "wrong checksum": (_damaged(good, (14, good[14] ^ 1), (central + 16, good[central + 16] ^ 1)), "Bad CRC"),
        "cut short": (_damaged(stored, *((stored_central + 20 + i, b) for i, b in enumerate(past_end + past_end))),
                      r"not a readable zip file \(it ends too early\)"),
        "encrypted": (_damaged(good, (6, good[6] | 1), (central + 8, good[central + 8] | 1)), "encrypted"),
        "bzip2": (_damaged(good, (8, 12), (central + 10, 12)), "method 12; use stored or deflate"),
    }
    for name, (blob, reason) in cases.items():
        archive = tmp_path / f"{name}.zip"
        archive.write_bytes(blob)
        with pytest.raises(batch.Rejected, match=reason):
            batch.safe_extract(archive, tmp_path / name)
    archive.write_bytes(good)
    assert (batch.safe_extract(archive, tmp_path / "good") / "loss.py").read_text().count("hello") == 200



def test_discover_rejects_ambiguous_students(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice.zip").write_bytes(b"")
    with pytest.raises(batch.BatchError, match="two submissions for student 'alice'"):
        batch.discover(tmp_path)
    (tmp_path / "alice.zip").unlink()
    (tmp_path / "bad name").mkdir()
    with pytest.raises(batch.BatchError, match="not a usable student id"):
        batch.discover(tmp_path)


def test_grader_faults_are_grader_errors_regraded_and_linked_entries_rejected(tmp_path, monkeypatch):
    submissions = tmp_path / "submissions"
    for student in ("alice", "bob"):
        (submissions / student / EXERCISE).mkdir(parents=True)
    (submissions / "mallory").symlink_to(ROOT / "reference")  # would grade the reference as mallory's work
    graded, failing = [], {"bob"}

    def fake_grade(folder, *, exercises, out, seed, limits, isolation, open_interpreter_path, cores, server):
        graded.append(Path(folder).name)
        if Path(folder).name in failing:
            failing.clear()
            raise PermissionError(13, "Permission denied", "/read-only/cache")  # the grader's machine, not bob's code
        return GradingResult(submission=str(folder), seed=seed, exercises=())

    monkeypatch.setattr(batch.grading, "grade", fake_grade)
    first = {o.student: o for o in batch.grade_all(submissions, tmp_path / "out", jobs=1, exercises=[EXERCISE]).outcomes}
    assert first["bob"].status == "grader_error" and "Permission denied" in first["bob"].reason
    assert first["mallory"].status == "rejected" and "symbolic link" in first["mallory"].reason
    assert first["alice"].status == "graded" and sorted(graded) == ["alice", "bob"]
    second = {o.student: o for o in batch.grade_all(submissions, tmp_path / "out", jobs=1, exercises=[EXERCISE]).outcomes}
    assert second["bob"].status == "graded" and not second["bob"].skipped
    assert second["alice"].skipped and second["mallory"].skipped and sorted(graded) == ["alice", "bob", "bob"]


def test_parallel_jobs_grade_on_disjoint_slices_of_the_cores(tmp_path, monkeypatch):
    """Two jobs on a four-core machine: every grading gets a slice of two cores, and no two at once share one."""
    import threading
    import time

    monkeypatch.setattr(batch.sandbox, "check_cores", lambda cores: [0, 1, 2, 3])
    lock, running, seen, servers = threading.Lock(), [], [], {}

    def grade(student, source, out, key, *, cores, server, stop):
        with lock:
            assert not any(set(cores) & set(other) for other in running), (cores, running)
            running.append(cores)
            seen.append(cores)
            servers.setdefault(tuple(cores), set()).add(id(server))  # each job keeps its own pytest server
        time.sleep(0.05)
        with lock:
            running.remove(cores)
        return batch.Outcome(student, batch.SubmissionStatus.GRADED, 1.0, 1.0)

    students = {f"s{i}": tmp_path / f"s{i}" for i in range(6)}
    outcomes = batch._grade_in_pool(students, tmp_path, {}, grade, jobs=2, on_done=None)
    assert sorted(o.student for o in outcomes) == sorted(students)
    assert {tuple(c) for c in seen} == {(0, 1), (2, 3)}
    assert [len(ids) for ids in servers.values()] == [1, 1] and len(set.union(*servers.values())) == 2, servers


def test_report_refuses_students_of_another_run_or_cut_short(graded_class, tmp_path):
    base, _, _ = graded_class
    runner = CliRunner()
    results = shutil.copytree(base / "results", tmp_path / "results")

    def report() -> str:
        done = runner.invoke(main, ["report", str(results), "--out", str(tmp_path / "rep")])
        assert done.exit_code == 2 and "Traceback" not in done.output, done.output
        return " ".join(done.output.split())

    record_file = results / "wrong0" / layout.STUDENT_FILE
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "seed": SEED + 1, "exercises": ["jax_basics"]}))
    assert "graded in another run than batch.json's (seed 7" in report() and f"wrong0 (seed {SEED + 1}, exercises ['jax_basics'])" in report()
    record_file.unlink()  # a grading cut short: the student must not vanish from the grade sheet
    assert "wrong0/submission.json" in report() and "grade-all" in report()
    for damaged in ("{oops", "[]"):
        (results / layout.BATCH_FILE).write_text(damaged)
        assert "batch.json" in report()
        refused = runner.invoke(main, ["grade-all", str(base / "submissions"), "--out", str(results), "-e", EXERCISE])
        assert refused.exit_code == 2 and "batch.json" in refused.output and "Traceback" not in refused.output
    assert not (tmp_path / "rep").exists()


def test_report_replaces_its_own_folder_and_no_other(graded_class, tmp_path):
    base, _, _ = graded_class
    results, out = shutil.copytree(base / "results", tmp_path / "results"), tmp_path / "report"
    reports.write_report(results, out)
    assert (out / "feedback" / "wrong0.md").is_file()
    shutil.rmtree(results / "wrong0")  # a student removed from the class: no feedback left behind for them
    reports.write_report(results, out)
    assert not (out / "feedback" / "wrong0.md").exists() and (out / "feedback" / "wrong1.md").is_file()
    assert "wrong0" not in (out / "grades.csv").read_text()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("mine")
    refused = CliRunner().invoke(main, ["report", str(results), "--out", str(foreign)])
    assert refused.exit_code == 2 and "--out" in refused.output and "not a report folder" in refused.output
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"]


def test_grade_all_refuses_results_inside_the_submissions_and_unusable_limits(tmp_path):
    runner = CliRunner()
    submissions = tmp_path / "submissions"
    copy_with_edits(submissions / "alice")

    def refused(*args: str) -> str:
        done = runner.invoke(main, ["grade-all", str(submissions), "-e", EXERCISE, *args])
        assert done.exit_code == 2 and "Traceback" not in done.output, done.output
        return " ".join(done.output.split())

    # Its folders would be graded as students by the next run.
    assert "inside SUBMISSIONS_DIR" in refused("--out", str(submissions / "results"))
    for option, value in (("--call-seconds", "nan"), ("--submission-seconds", "inf"), ("--call-seconds", "0")):
        assert option in refused("--out", str(tmp_path / "r"), option, value)
    copy_with_edits(submissions / layout.BATCH_FILE)  # a student id that is the results folder's own file
    assert "rename it" in refused("--out", str(tmp_path / "r"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submissions"]
    assert sorted(p.name for p in submissions.iterdir()) == ["alice", layout.BATCH_FILE]


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])  # Ctrl-C, and a scheduler's or CI's stop
def test_ctrl_c_stops_the_class_run_and_every_recorded_grade_stays(graded_class, tmp_path, stop):
    import signal
    import subprocess
    import sys
    import time

    import psutil

    base, _, _ = graded_class
    students = ("correct0", "wrong0", "correct1", "wrong1", "correct2", "wrong2")
    submissions, results = tmp_path / "submissions", tmp_path / "results"
    for student in students:
        shutil.copytree(base / "submissions" / student, submissions / student)
        shutil.copytree(base / "results" / student, results / student)
    shutil.copy(base / "results" / layout.BATCH_FILE, results)
    before = {s: (results / s / layout.STUDENT_FILE).read_bytes() for s in students}
    process = subprocess.Popen(
        [sys.executable, "-m", "course", "grade-all", str(submissions), "--out", str(results), "--force", "--jobs", "1",
         "-e", EXERCISE, "--seed", str(SEED), "--call-seconds", str(LIMITS.call_seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


    def regraded() -> list[str]:
        return [s for s in students if (results / s / layout.STUDENT_FILE).read_bytes() != before[s]]

    deadline = time.monotonic() + 240
    while not regraded() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    while not list(results.glob(".*.new-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the second grading is under way, in the job's pytest server
    helpers = psutil.Process(process.pid).children(recursive=True)  # that server, and the grading's worker
    assert regraded() and helpers and process.poll() is None, process.communicate()[0]
    process.send_signal(getattr(signal, stop))
    output, _ = process.communicate(timeout=240)
    assert process.returncode not in (0, None), output
    assert len(regraded()) <= 2, (regraded(), output)  # the queue was dropped, not graded to its end
    for student in students:  # each keeps a whole grade, this run's or the last
        assert json.loads((results / student / layout.STUDENT_FILE).read_text())["status"] == "graded", student
    assert not [p.name for p in results.iterdir() if p.name.startswith(".")]
    psutil.wait_procs(helpers, timeout=30)
    assert not [p for p in helpers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], helpers
