"""Starting and stopping the untrusted worker process.

The worker runs ``graders/runtime`` (copied into a scratch directory as the
package ``grader_runtime``) on a copy of the submission, with:

- ``python -I -B``: no ``PYTHONPATH``, no user site, no bytecode written;
- a minimal environment (``PATH``, ``HOME`` and ``TMPDIR`` in the scratch
  directory, locale, and the JAX/CUDA device variables);
- its own session (process group), so that one signal reaches everything it starts;
- when the grader runs as root: the unprivileged ``worker_user`` (``nobody``),
  no supplementary groups, and the repository made unreadable to other users
  (``chmod o-rwx`` on its folder) so the worker can read neither ``reference/``
  nor ``graders/``; the output folder is root's, so it cannot write scores.
  For ``nobody`` to run Python, the folders above the interpreter get search
  permission for others (``o+x``, e.g. on ``/root`` for a pyenv Python),
  recorded in the score file;
- limits set by the worker on itself before any submission code runs: no core
  files, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC`` (processes and threads of its user;
  root ignores it, hence the user switch), and on CPU ``RLIMIT_DATA``
  (XLA reserves far more address space than it uses, so ``RLIMIT_AS`` would
  break it; on GPUs only the resident-memory watch below applies).

The grader watches the worker's resident memory (with its children) while it
waits for an answer, and kills the worker past the limit. Stopping kills the
worker's process group and then every remaining descendant: the process that
runs the sandbox makes itself a child subreaper, so that processes the worker
orphaned (or moved to another session) are re-parented to it and found.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from course.submission import SKIPPED_FOLDERS, is_skipped

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
COURSE = Path(__file__).resolve().parents[2] / "course"  # public (released to students): the worker may import it
_PR_SET_CHILD_SUBREAPER = 36
# Variables the worker inherits: which device JAX uses, never paths into the grader.
_PASSED_ENV = ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "XLA_FLAGS")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission's worker; the defaults are ``course grade``'s."""

    call_seconds: float = 60.0  # one call, compilation included (small inputs: seconds at most)
    submission_seconds: float = 900.0  # all the calls of one grading run together
    startup_seconds: float = 120.0  # starting the worker and importing jax
    memory_mb: int = 4096  # resident memory of the worker and its children
    processes: int = 512  # processes and threads the worker's user may have (XLA starts a pool per core)
    file_mb: int = 64  # largest file the worker may write
    message_mb: int = 256  # largest answer read back
    crashes: int = 2  # crashes or timeouts per exercise before its other cases are not run

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"limits.{name}: expected a positive number, got {value!r}")


WORKER_USER = "nobody"


def worker_user() -> pwd.struct_passwd | None:
    """The user the worker runs as: :data:`WORKER_USER` when the grader is root, else ``None`` (the grader's own).

    Raises:
      RuntimeError: the grader is root and the machine has no such user.
    """
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(WORKER_USER)
    except KeyError:
        raise RuntimeError(f"grading as root needs the unprivileged user {WORKER_USER!r} to run submissions; this machine has none") from None


def make_interpreter_reachable(user: pwd.struct_passwd | None) -> list[str]:
    """Lets ``user`` run this Python: adds search permission for others (``o+x``, never read) on the folders above it.

    A Python installed under ``/root`` (pyenv, conda) is out of ``nobody``'s
    reach; only root grading runs as another user, so only then is anything changed.

    Returns:
      The folders whose mode changed (recorded in the score file).
    """
    if user is None:
        return []
    changed = []
    for folder in reversed(Path(sys.executable).resolve().parents):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)
            changed.append(str(folder))
    return changed


def lock_repository(root: Path) -> None:
    """As root, removes other users' access to the repository that holds ``reference/`` and ``graders/``."""
    if os.geteuid() == 0:
        mode = root.stat().st_mode
        if mode & 0o007:
            root.chmod(mode & ~0o007)


def _become_subreaper() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: orphans go to init; the process group kill still applies
        pass


class _Tail:
    """Drains a pipe in a thread, keeping the byte count and the last ``size`` bytes."""

    def __init__(self, fd: int, size: int = 8192):
        self.fd, self.size, self.total, self.data = fd, size, 0, b""
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while chunk := os.read(self.fd, 1 << 16):
            self.total += len(chunk)
            self.data = (self.data + chunk)[-self.size:]
        os.close(self.fd)

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class Process:
    """One running worker: its pipes, its output tail and how to stop it."""

    def __init__(self, submission: Path, scratch: Path, *, limits: Limits, traps: list[str]):
        self.limits = limits
        user = worker_user()
        self.made_reachable = make_interpreter_reachable(user)
        work = scratch / "work"
        work.mkdir(exist_ok=True)
        if user is not None:
            os.chown(work, user.pw_uid, user.pw_gid)
        request_r, self.request_w = os.pipe()
        self.response_r, response_w = os.pipe()
        output_r, output_w = os.pipe()
        config = {
            "submission": str(submission), "course": str(scratch / "lib" / "course"), "traps": traps,
            "request_fd": request_r, "response_fd": response_w,
            "memory_bytes": limits.memory_mb << 20, "file_bytes": limits.file_mb << 20,
            "processes": _process_limit(user, limits.processes), "message_bytes": limits.message_mb << 20,
        }
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
               "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONDONTWRITEBYTECODE": "1",
               **{k: os.environ[k] for k in _PASSED_ENV if k in os.environ}}
        code = f"import sys; sys.path.insert(0, {str(scratch / 'lib')!r}); from grader_runtime.worker import main; main()"
        _become_subreaper()
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", code, json.dumps(config)],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w,
            pass_fds=(request_r, response_w), start_new_session=True,
            **({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user is not None else {}),
        )
        for fd in (request_r, response_w, output_w):
            os.close(fd)
        self.output = _Tail(output_r)
        self.process = psutil.Process(self.popen.pid)

    def memory_mb(self) -> float:
        """Resident memory of the worker and its descendants, in MiB."""
        total = 0
        try:
            for p in [self.process, *self.process.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        return total / 2**20

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        """Kills the worker, everything in its process group and every descendant left."""
        for fd in (self.request_w, self.response_r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            descendants = self.process.children(recursive=True)
        except psutil.Error:
            descendants = []
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        kill_descendants(descendants)
        self.popen.wait()
        self.output.thread.join(timeout=5)


def kill_descendants(known: list[psutil.Process] = ()) -> None:
    """Kills ``known`` and every descendant of this process, until none is left (fork bombs included)."""
    me = psutil.Process()
    for _ in range(100):
        try:
            victims = [p for p in [*known, *me.children(recursive=True)] if p.is_running()]
        except psutil.Error:
            victims = []
        victims = [p for p in victims if p.pid != os.getpid()]
        if not victims:
            return
        for p in victims:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(victims, timeout=1)
        known = []


def record(pid_file: Path, process: psutil.Process) -> None:
    """Notes a worker in ``pid_file``, so that the process that started the grading can kill it if needed."""
    with open(pid_file, "a") as f:
        f.write(f"{process.pid} {process.create_time()}\n")


def kill_recorded(pid_file: Path) -> None:
    """Kills the process groups of the workers noted in ``pid_file`` (after the grader's pytest process ended).

    A group is killed only while a member created at or after its worker still
    exists, so a recycled process id is never hit.
    """
    try:
        lines = pid_file.read_text().split("\n")
    except OSError:
        return
    for line in filter(None, lines):
        pid, created = int(line.split()[0]), float(line.split()[1])
        for p in psutil.process_iter(["create_time"]):
            try:
                if os.getpgid(p.pid) == pid and p.info["create_time"] >= created:
                    os.killpg(pid, signal.SIGKILL)
                    break
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue


def _process_limit(user, allowed: int) -> int:
    """``RLIMIT_NPROC`` for the worker: the tasks its user already has, plus ``allowed``."""
    uid = os.getuid() if user is None else user.pw_uid
    tasks = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        try:
            if p.info["uids"] and p.info["uids"].real == uid:
                tasks += p.info["num_threads"] or 1
        except psutil.Error:
            pass
    return tasks + allowed


def _files(root: Path):
    """Every regular file under ``root`` but tools' leftovers; symbolic links are neither followed nor listed."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d)) and d not in SKIPPED_FOLDERS]
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink() and path.is_file() and not is_skipped(Path(name)):
                yield path


def make_scratch(submission: Path, *, max_mb: int = 64) -> Path:
    """A scratch directory holding the worker runtime and the course's modules (``lib/``) and a copy of the submission.

    Both are readable, not writable, by the worker user. Only regular files are
    copied: a symbolic link (which could point the worker, through the root
    grader's copy, at ``reference/``) is left out, and so is what tools leave
    beside the code (:data:`course.submission.SKIPPED_FOLDERS`).

    Raises:
      ValueError: the submission holds more than ``max_mb`` MiB.
    """
    files = list(_files(submission))
    size = sum(f.stat().st_size for f in files)
    if size > max_mb << 20:
        raise ValueError(f"submission: {size >> 20} MiB is more than the {max_mb} MiB a submission may hold")
    scratch = Path(tempfile.mkdtemp(prefix="course-worker-"))
    scratch.chmod(0o755)
    copies = ((RUNTIME, scratch / "lib" / "grader_runtime", _files(RUNTIME)),
              (COURSE, scratch / "lib" / "course", (f for f in _files(COURSE) if f.suffix == ".py")),
              (submission, scratch / "submission", files))
    for source_root, target_root, sources in copies:
        for source in sources:
            target = target_root / source.relative_to(source_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.chmod(0o644)
    for folder in [scratch / "lib", *(p for p in scratch.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    (scratch / "submission").mkdir(exist_ok=True)
    return scratch


def remove_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
