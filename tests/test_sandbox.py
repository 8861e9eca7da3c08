"""The worker's sandbox, on both isolation paths: bubblewrap, and the fallback where bubblewrap cannot run.

Each attack is graded through ``graders.grade`` (or ``grade_all``) on one
exercise, under small limits. A test parametrised by ``isolation`` runs once
with bubblewrap (skipped where it cannot run) and once on the fallback; an
attack that only bubblewrap stops says so and is skipped on the fallback.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from course.cli import main
from course.compile_flags import FAST_COMPILATION
from course.host_devices import DEVICE_COUNT_FLAG, VIRTUAL_CPU_DEVICES
from course.submission import repo_root
from graders.batch import grade_all
from graders.engine import sandbox
from graders.runtime import wire
from tests.conftest import BUBBLEWRAP_PROBLEM, ISOLATIONS, assert_valid_score_files, copy_with_edits, grade_beside_classmate, sandbox_options

import graders

ROOT = repo_root()
LIMITS = graders.Limits(call_seconds=20, submission_seconds=300, memory_mb=1024, crashes=2)
AS_ROOT = os.geteuid() == 0
FALLBACK_LEVEL = "user" if AS_ROOT else "none"


def _level(isolation: str) -> str:
    return "bubblewrap" if isolation == "bubblewrap" else FALLBACK_LEVEL


def _attention(prelude: str, body: str) -> str:
    """An attention module: ``prelude`` runs when it is imported, ``body`` is both functions' body."""
    return (f"import jax.numpy as jnp\n{prelude}\n\n"
            f"def causal_mask(seq_len):\n{body}\n    return jnp.zeros((seq_len, seq_len), bool)\n\n"
            f"def scaled_dot_product_attention(query, key, value, mask=None):\n{body}\n"
            "    return jnp.zeros(query.shape[:-1] + value.shape[-1:], query.dtype), "
            "jnp.zeros(query.shape[:-1] + key.shape[-2:-1], query.dtype)\n")


def _alive_with(token: str) -> list[psutil.Process]:
    """Processes whose command line holds ``token``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(token in part for part in p.info["cmdline"] or ()):
            found.append(p)
    return found


# A daemon the submission leaves behind: double-forked, its own session, holding memory, writing files, never ending.
DAEMON = """
import os, sys, time
token = sys.argv[1]
for folder in ("/tmp", "/var/tmp", "/dev/shm", os.environ.get("HOME", "/tmp")):
    try:
        with open(os.path.join(folder, token), "w") as f:
            f.write("left behind")
    except OSError:
        pass
if os.fork() == 0:
    os.fork()  # two hoarders, each under the per-process data limit, together over the tree's memory limit
hoard = bytearray(400 << 20)
for i in range(0, len(hoard), 4096):
    hoard[i] = 1
while True:
    time.sleep(1)
"""


def _daemon_prelude(token: str) -> str:
    return (f"import os, sys\nDAEMON = {DAEMON!r}\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execv(sys.executable, [sys.executable, '-c', DAEMON, {token!r}])\n    os._exit(0)\n")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_nothing_outlives_a_grading_and_the_tree_is_held_to_its_memory(tmp_path, isolation):
    if isolation == "fallback" and not AS_ROOT:
        pytest.skip("the fallback's own user is the grader's when it is not root: its leftovers cannot be told apart")
    token = f"course-hostile-{uuid.uuid4().hex}"
    submission = copy_with_edits(tmp_path / "daemon", {
        "attention/attention.py": _attention(_daemon_prelude(token), "    import time\n    time.sleep(1.5)"),
    })
    out = tmp_path / "out"
    result = grade_beside_classmate(submission, exercises=["attention"], out=out, seed=3, limits=LIMITS, **sandbox_options(isolation))
    assert result.status == "ok", result.errors
    score = assert_valid_score_files(out, seed=3)
    assert score.isolation == _level(isolation) == result.worker["isolation"]
    assert f"Sandbox: {_level(isolation)}" in json.loads((out / "results.json").read_text())["output"]
    assert result.score == 0
    messages = [c.message for c in result.exercises[0].cases]
    assert any("more than 1024 MiB" in m for m in messages), messages  # the orphans' memory counted with the worker's
    assert _alive_with(token) == []
    left = [p for p in (Path(f, token) for f in ("/tmp", "/var/tmp", "/dev/shm")) if p.exists()]
    assert left == []
    assert not list(Path(tempfile.gettempdir()).glob("course-worker-*/work/" + token))
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    honest = graders.grade(ROOT / "reference", exercises=["attention"], seed=3, limits=LIMITS, **sandbox_options(isolation))
    assert honest.score == honest.max_score > 0, honest.errors  # and the next student is unharmed


THIEF = """
import os, signal, sys, time
# Reads every other process it can see, and kills it; copies a classmate's exercise if it finds one.
spared = {os.getpid(), int(sys.argv[1])}
deadline = time.time() + 120
while time.time() < deadline:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in spared:
            continue
        for name in ("cmdline", "environ", "mem"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    data = f.read(1 << 16)
            except OSError:
                continue
            for part in data.split(b"\\0"):
                try:
                    path = __import__("json").loads(part)["submission"] + "/attention/attention.py"
                    if not path.startswith(sys.argv[2]):  # the classmate's scratch copy, not another grader's on this machine
                        continue
                    with open(path) as source, open(os.path.join(os.environ["HOME"], "stolen.py"), "w") as copy:
                        copy.write(source.read())
                except Exception:
                    pass
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.01)
"""

# Uses the classmate's code once the thief has copied it; zeros until then.
MALLORY = """
import os, sys
import jax.numpy as jnp

if os.fork() == 0:
    os.setsid()
    os.execv(sys.executable, [sys.executable, "-c", THIEF, str(os.getppid()), SCRATCH])


def _stolen():
    import time
    time.sleep(0.5)
    path = os.path.join(os.environ["HOME"], "stolen.py")
    if not os.path.exists(path):
        return None
    namespace = {}
    exec(open(path).read(), namespace)
    return namespace


def causal_mask(seq_len):
    stolen = _stolen()
    return stolen["causal_mask"](seq_len) if stolen else jnp.zeros((seq_len, seq_len), bool)


def scaled_dot_product_attention(query, key, value, mask=None):
    stolen = _stolen()
    if stolen:
        return stolen["scaled_dot_product_attention"](query, key, value, mask)
    return jnp.zeros(query.shape[:-1] + value.shape[-1:], query.dtype), jnp.zeros(query.shape[:-1] + key.shape[-2:-1], query.dtype)
"""


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_classmate_graded_in_parallel_gets_the_grade_it_gets_alone(tmp_path, isolation, monkeypatch, request):
    if isolation == "fallback" and not AS_ROOT:
        pytest.skip("on the fallback without root every worker is the grader's user: only bubblewrap or root's "
                    "per-slot users keep classmates apart")
    # The scratch folders in a folder anyone may search, as /tmp is: only their own modes keep mallory out.
    scratch = Path(tempfile.mkdtemp(prefix="course-class-", dir="/var/tmp"))
    scratch.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    submissions = tmp_path / "submissions"
    copy_with_edits(submissions / "alice")
    copy_with_edits(submissions / "mallory", {"attention/attention.py": f"THIEF = {THIEF!r}\nSCRATCH = {str(scratch)!r}\n{MALLORY}"})
    results = tmp_path / "results"
    batch = grade_all(submissions, results, jobs=2, seed=4, exercises=["attention"], limits=LIMITS, **sandbox_options(isolation))
    outcomes = {o.student: o for o in batch.outcomes}
    assert outcomes["alice"].status == "graded" and outcomes["alice"].score == outcomes["alice"].max_score > 0, outcomes["alice"]
    assert outcomes["mallory"].status == "graded" and outcomes["mallory"].score == 0, outcomes["mallory"]
    for folder in (results, results / "alice", results / "mallory"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    alice = graders.load(results / "alice" / "score.json")
    assert alice.worker["starts"] == 1  # never killed by the classmate
    assert list(scratch.iterdir()) == []  # both scratch folders removed


def _listener() -> tuple[socket.socket, list[bytes]]:
    """A TCP listener on 127.0.0.1 that keeps whatever it receives."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                received.append(connection.recv(1024))

    threading.Thread(target=serve, daemon=True).start()
    return server, received


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_world_readable_files_and_the_network_are_out_of_reach(tmp_path, isolation):
    if isolation == "fallback":
        pytest.skip("only bubblewrap stops this: on the fallback the worker's user may read any world-readable file "
                    "and reach the network")
    clone = Path(tempfile.mkdtemp(prefix="course-clone-", dir="/var/tmp"))
    try:
        clone.chmod(0o755)
        copy = clone / "attention.py"
        shutil.copyfile(ROOT / "reference" / "attention" / "attention.py", copy)
        copy.chmod(0o644)
        server, received = _listener()
        port = server.getsockname()[1]
        reader = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hidden inputs')\n"
                  f"except OSError:\n    pass\ntry:\n    exec(open({str(copy)!r}).read())\nexcept OSError:\n"
                  "    causal_mask = scaled_dot_product_attention = None\n")
        submission = copy_with_edits(tmp_path / "reader", {"attention/attention.py": reader})
        result = graders.grade(submission, exercises=["attention"], seed=5, limits=LIMITS, **sandbox_options(isolation))
        server.close()
    finally:
        shutil.rmtree(clone)
    assert result.status == "ok" and result.isolation == "bubblewrap", result.errors
    assert result.score == 0
    assert received == []


def test_an_environment_in_a_private_folder_runs_under_bubblewrap(tmp_path):
    if BUBBLEWRAP_PROBLEM is not None:
        pytest.skip(f"bubblewrap cannot run here: {BUBBLEWRAP_PROBLEM}")
    private = tmp_path / "private"  # like `mktemp -d` or /root: no one else may enter
    private.mkdir(mode=0o700)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(private / "venv")], check=True)
    site = next((private / "venv" / "lib").glob("python*/site-packages"))
    (site / "course-test.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this environment's packages
    code = ("import graders; r = graders.grade('reference', exercises=['positional_encoding'], seed=6, isolation='bubblewrap'); "
            "print(r.isolation, r.score, r.max_score, r.errors)")
    done = subprocess.run([str(private / "venv" / "bin" / "python"), "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    level, score, max_score, errors = done.stdout.split(" ", 3)
    assert level == "bubblewrap" and score == max_score and float(max_score) > 0, done.stdout
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # nothing opened


def test_a_worker_that_stops_reading_cannot_hold_the_grader(tmp_path):
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        import fcntl

        fcntl.fcntl(write, 1031, 4096)  # F_SETPIPE_SZ: the smallest pipe, which a submission can ask for its own
        started = psutil.Process().cpu_times()
        with pytest.raises(TimeoutError):
            wire.write_frame(write, b"x" * (1 << 20), deadline=__import__("time").monotonic() + 0.5)
        assert psutil.Process().cpu_times().user - started.user < 0.5  # it waited, it did not spin
    finally:
        os.close(read)
        os.close(write)


def test_require_sandbox_refuses_where_bubblewrap_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "bubblewrap_problem", lambda: "bwrap is not installed")
    result = CliRunner().invoke(main, ["grade", str(ROOT / "reference"), "-e", "loss", "--out", str(tmp_path / "out"),
                                       "--require-sandbox"])
    assert result.exit_code == 1, result.output
    assert "bubblewrap was required" in result.output and "bwrap is not installed" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert sandbox.choose_isolation("auto") in ("user", "none")
    with pytest.raises(ValueError, match="isolation"):
        sandbox.choose_isolation("chroot")


def test_the_fallback_names_closed_folders_and_opens_them_only_when_asked(tmp_path, monkeypatch):
    closed = tmp_path / "private"
    python = closed / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    closed.chmod(0o700)
    tmp_path.chmod(0o755)
    assert closed in sandbox.closed_folders([python])
    monkeypatch.setattr(sandbox, "interpreter_folders", lambda: [python])
    monkeypatch.setattr(sandbox, "closed_folders", lambda paths: [closed])  # not the machine's folders above tmp_path
    with pytest.raises(sandbox.SandboxUnavailable, match=f"{closed}.*--open-interpreter-path"):
        sandbox.open_interpreter(allowed=False)
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700  # nothing changed silently
    assert sandbox.open_interpreter(allowed=True) == [str(closed)]
    assert stat.S_IMODE(closed.stat().st_mode) == 0o701  # search, never read


def test_stale_scratch_folders_are_removed_and_live_ones_kept(tmp_path):
    stale = Path(tempfile.mkdtemp(prefix="course-worker-"))
    (stale / "owner.json").write_text(json.dumps({"pid": 2**22 + 1, "created": 0.0}))
    live = sandbox.make_scratch(copy_with_edits(tmp_path / "s"))
    # Being made by a concurrent grading: no owner file yet, or (an older grader's) one not written whole.
    young, old = (Path(tempfile.mkdtemp(prefix="course-worker-")) for _ in range(2))
    for folder in (young, old):
        (folder / "owner.json").write_text('{"pid": ')
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    try:
        assert stat.S_IMODE(live.stat().st_mode) == 0o700
        assert sorted(p.name for p in live.iterdir()) == ["lib", "owner.json", "submission"]  # no partial owner file
        removed = sandbox.remove_stale_scratch()
        assert stale in removed and not stale.exists() and old in removed
        assert live.exists() and young.exists() and not {live, young} & set(removed)
    finally:
        for folder in (live, stale, young, old):
            sandbox.remove_scratch(folder)


def test_concurrent_gradings_hold_different_slots():
    with sandbox.claim_slot() as first, sandbox.claim_slot() as second:
        assert first != second
    with sandbox.claim_slot() as again:
        assert again == min(first, second)


def test_every_grading_gets_the_virtual_cpu_devices_and_fast_compilation_whatever_the_caller_asked():
    # The training suite lays batches over meshes of VIRTUAL_CPU_DEVICES CPU devices; other flags are kept.
    count = f"{DEVICE_COUNT_FLAG}={VIRTUAL_CPU_DEVICES}"
    fast = " ".join(FAST_COMPILATION)
    assert sandbox.xla_flags({}) == f"{count} {fast}"
    assert sandbox.xla_flags({"XLA_FLAGS": f"--xla_dump_to=/tmp/x {DEVICE_COUNT_FLAG}=2"}) == f"--xla_dump_to=/tmp/x {count} {fast}"
    # A compilation flag the caller set keeps the caller's value.
    mine = "--xla_backend_optimization_level=2"
    assert sandbox.xla_flags({"XLA_FLAGS": mine}).split() == [mine, count, *FAST_COMPILATION[1:]]


def test_core_slices_split_the_cores_among_jobs():
    assert sandbox.core_slices(2, [0, 1, 2, 3, 4]) == [[0, 1], [2, 3, 4]]
    assert sandbox.core_slices(1, [3, 1]) == [[1, 3]]
    assert sandbox.core_slices(3, [0, 1]) == [[0], [1], [0]]  # more jobs than cores: one core each, shared
    with pytest.raises(ValueError, match="cores: expected a non-empty subset"):
        sandbox.check_cores([])
    with pytest.raises(ValueError, match="cores: expected a non-empty subset"):
        sandbox.check_cores([max(os.sched_getaffinity(0)) + 1])


def test_a_grading_runs_its_worker_on_its_own_cores(tmp_path):
    """A job's slice of cores holds for its worker too, so XLA sizes the worker's thread pools to it."""
    core = max(os.sched_getaffinity(0))
    reporter = ("import os\n\ndef _report(*args, **kwargs):\n"
                "    raise ValueError(f'cores {sorted(os.sched_getaffinity(0))}')\n\n"
                "predict = mse_loss = loss_and_grad = per_example_grads = _report\n")
    submission = copy_with_edits(tmp_path / "reporter", {"jax_basics/jax_basics.py": reporter})
    result = graders.grade(submission, exercises=["jax_basics"], seed=3, limits=LIMITS, cores=[core])
    assert result.status == "ok", result.errors
    messages = [c.message for e in result.exercises for c in e.cases if "cores [" in c.message]
    assert messages and all(f"cores [{core}]" in m for m in messages), [c.message for e in result.exercises for c in e.cases]
