"""Starting and stopping the untrusted worker process, isolated from everything but its own copy.

The worker runs ``graders/runtime`` (copied into a scratch folder as the
package ``grader_runtime``) on a copy of the submission. Three isolation
levels exist; :func:`choose_isolation` picks the strongest the machine allows:

``bubblewrap``
  The worker runs under bubblewrap (``bwrap``) in new mount, PID, IPC, UTS,
  network (and, unprivileged, user) namespaces. Its filesystem is a read-only
  view of the system folders and the Python environment, its own copy of the
  submission and the runtime (read-only), a size-limited ``tmpfs`` as its
  working folder and another as ``/tmp``; nothing else of the machine (the
  repository, other scratch folders, results) exists there. It has no network
  and sees no process but its own. ``--die-with-parent`` and the PID namespace
  end the whole tree with the worker. As root, the worker drops to its job
  slot's own unprivileged uid (``setpriv``) once the namespaces are set up.
``user``
  The fallback as root where bubblewrap cannot run (no namespaces in a
  container): the worker runs as its job slot's own unprivileged uid
  (:func:`slot_uid`), the repository is closed to other users, and every
  process of that uid is killed when the grading ends.
``none``
  The fallback of a grader that is neither root nor able to run bubblewrap:
  the worker is the grader's own user, held only by resource limits.

In every level: ``python -I -B``, a minimal environment (``PATH``, ``HOME``
and ``TMPDIR`` in the working folder, locale, JAX/CUDA device variables), a
session of its own, and limits the worker sets on itself before any
submission code runs (no core files, ``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, and
on CPU ``RLIMIT_DATA``; XLA reserves far more address space than it uses, so
``RLIMIT_AS`` would break it). The grader watches the resident memory of the
worker's whole tree while it waits for an answer and kills the tree past the
limit.

Concurrent gradings on one machine (``grade-all`` jobs, several ``course
grade`` processes) each hold a job slot (:func:`claim_slot`, a lock file), so
no two live workers share a uid.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from course.compile_flags import with_fast_compilation
from course.host_devices import VIRTUAL_CPU_DEVICES, with_device_count
from course.submission import SKIPPED_FOLDERS, is_skipped

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
COURSE = Path(__file__).resolve().parents[2] / "course"  # public (released to students): the worker may import it
REPOSITORY = Path(__file__).resolve().parents[2]  # holds reference/ and graders/: never visible to a worker
_PR_SET_CHILD_SUBREAPER = 36
# Variables the worker inherits: which device JAX uses, never paths into the grader.
_PASSED_ENV = ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")  # and XLA_FLAGS: xla_flags



def xla_flags(environ: Mapping[str, str]) -> str:
    """``XLA_FLAGS`` for the grader's pytest process and its workers: ``environ``'s, with ``VIRTUAL_CPU_DEVICES`` CPU
    devices and fast compilation (:mod:`course.compile_flags`: most of a grading is compiling small programs).

    Every grading run then has the same CPU devices whatever its caller set: the training suite lays batches
    over meshes of them. The flag splits only the CPU, so a GPU worker keeps its GPUs and exercises run as before.
    """
    return with_fast_compilation(with_device_count(environ.get("XLA_FLAGS", ""), VIRTUAL_CPU_DEVICES, replace=True))


ISOLATIONS = ("auto", "bubblewrap", "fallback")  # what a caller may ask for
LEVELS = ("bubblewrap", "user", "none")  # what a grading gets, strongest first (see the module docstring)
# Job slot k's worker runs as uid WORKER_UID_BASE + k: ids no account uses, so nothing on the machine is theirs.
WORKER_UID_BASE = 2_000_000_000
MAX_SLOTS = 1024
SANDBOX = Path("/sandbox")  # where the worker's folders appear under bubblewrap
_SCRATCH_PREFIX = "course-worker-"
_OWNER_FILE = "owner.json"  # in a scratch folder: the grading process that made it (stale once that process is gone)


class SandboxUnavailable(RuntimeError):
    """The isolation asked for cannot be had on this machine (the message says what to change)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission's worker; the defaults are ``course grade``'s."""

    call_seconds: float = 60.0  # one call, compilation included (small inputs: seconds at most)
    submission_seconds: float = 900.0  # all the calls of one grading run together
    startup_seconds: float = 120.0  # starting the worker and importing jax
    memory_mb: int = 4096  # resident memory of the worker's whole process tree
    processes: int = 512  # processes and threads the worker's user may have (XLA starts a pool per core)
    file_mb: int = 64  # largest file the worker may write
    scratch_mb: int = 256  # its working folder and its /tmp, each (bubblewrap's tmpfs)
    message_mb: int = 256  # largest answer read back
    crashes: int = 2  # crashes or timeouts per exercise before its other cases are not run

    def __post_init__(self):
        for name, value in vars(self).items():
            if not 0 < value < math.inf:
                raise ValueError(f"limits.{name}: expected a positive finite number, got {value!r}")


# -- choosing the isolation -------------------------------------------------------------------------

def _namespace_flags() -> list[str]:
    """bubblewrap's namespaces: as root, all but the user namespace (the worker drops to a real uid instead)."""
    if os.geteuid() == 0:
        return ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all"]


@functools.cache
def bubblewrap_problem() -> str | None:
    """Why bubblewrap cannot isolate a worker on this machine, or ``None`` when it can (tried once per process)."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux), which drops the worker's privileges inside the sandbox, is not installed"
    # The options a worker's command line uses (an old bwrap lacks --size or --perms), and the drop to a plain user.
    command = ["bwrap", *_namespace_flags(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
               "--perms", "1777", "--size", str(1 << 20), "--tmpfs", "/tmp"]
    if os.geteuid() == 0:
        command += _drop_to(WORKER_UID_BASE)
    probe = subprocess.run([*command, "true"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        lines = (probe.stderr or "").strip().splitlines()
        return f"bwrap failed: {lines[-1] if lines else f'exit status {probe.returncode}'}"
    return None


def choose_isolation(requested: str = "auto") -> str:
    """The isolation level of a grading: one of :data:`LEVELS`.

    Args:
      requested: ``"auto"`` (bubblewrap where it runs, else the fallback),
        ``"bubblewrap"`` (refuse without it: ``--require-sandbox``) or
        ``"fallback"`` (the unprivileged-uid sandbox even where bubblewrap runs).

    Raises:
      ValueError: ``requested`` is not one of :data:`ISOLATIONS`.
      SandboxUnavailable: bubblewrap was required and cannot run here.
    """
    if requested not in ISOLATIONS:
        raise ValueError(f"isolation: expected one of {', '.join(ISOLATIONS)}, got {requested!r}")
    if requested != "fallback":
        problem = bubblewrap_problem()
        if problem is None:
            return "bubblewrap"
        if requested == "bubblewrap":
            raise SandboxUnavailable(f"isolation: bubblewrap was required but cannot run here ({problem}); "
                                     "install it (apt install bubblewrap) and allow namespaces, or grade without --require-sandbox")
    return "user" if os.geteuid() == 0 else "none"


def check_cores(cores: Sequence[int] | None) -> list[int]:
    """``cores`` sorted, or all of this process's cores when ``None``.

    Raises:
      ValueError: ``cores`` is empty or names a core this process may not run on.
    """
    available = sorted(os.sched_getaffinity(0))
    if cores is None:
        return available
    chosen = sorted(set(cores))
    if not chosen or any(not isinstance(c, int) or c not in available for c in chosen):
        raise ValueError(f"cores: expected a non-empty subset of this process's cores {available}, got {list(cores)!r}")
    return chosen


def core_slices(jobs: int, cores: Sequence[int]) -> list[list[int]]:
    """``jobs`` slices of ``cores`` (for instance ``check_cores(None)``), one per parallel grading.

    With at least as many cores as jobs the slices are disjoint and differ in
    size by at most one; with fewer, jobs share cores round robin (one each).
    """
    cores = sorted(cores)
    if jobs >= len(cores):
        return [[cores[j % len(cores)]] for j in range(jobs)]
    bounds = [j * len(cores) // jobs for j in range(jobs + 1)]
    return [cores[bounds[j]:bounds[j + 1]] for j in range(jobs)]


def pin(cores: Sequence[int]) -> None:
    """Runs this process, and every process it starts from now on, on ``cores``.

    Called by the grader's pytest process before it starts a worker or imports
    JAX: XLA and OpenBLAS size their thread pools to the cores a process may
    use. Not a security boundary: a process may widen its own set again
    (within the machine's), which gains it a share of other cores' time and
    nothing else (its CPU time is limited either way).
    """
    os.sched_setaffinity(0, cores)


def interpreter_folders() -> list[Path]:
    """What the worker's Python needs: the interpreter, its standard library and the environment's packages."""
    needed = {Path(sys.executable), Path(sys.executable).resolve(), Path(sys.base_prefix)}
    if (Path(sys.prefix) / "pyvenv.cfg").is_file():  # a virtual environment: how its Python finds its packages
        needed.add(Path(sys.prefix) / "pyvenv.cfg")
    # The installation's folders and the package folders on the import path (a .pth file may add one), never the
    # rest of sys.path: it also holds the repository and the caller's own folders.
    installed = sysconfig.get_paths()
    needed |= {Path(installed[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib") if os.path.isdir(installed[k])}
    needed |= {Path(p) for p in sys.path if os.path.isdir(p) and {"site-packages", "dist-packages"} & set(Path(p).parts)}
    return sorted(p for p in needed if not REPOSITORY.is_relative_to(p))


def closed_folders(paths: list[Path]) -> list[Path]:
    """The folders on the way to ``paths`` that other users cannot search (no ``o+x``)."""
    closed = []
    for path in paths:
        for folder in reversed(path.parents):
            if not folder.stat().st_mode & 0o001 and folder not in closed:
                closed.append(folder)
    return closed


def open_interpreter(*, allowed: bool) -> list[str]:
    """Checks that an unprivileged worker user can reach this Python (the ``user`` level); opens the way if ``allowed``.

    Returns:
      The folders given search permission for others (``o+x``, never read), when ``allowed``.

    Raises:
      SandboxUnavailable: a folder on the way is closed and ``allowed`` is false; the message names it and what to do.
    """
    closed = closed_folders(interpreter_folders())
    if closed and not allowed:
        names = ", ".join(str(f) for f in closed)
        raise SandboxUnavailable(
            f"isolation: without bubblewrap the worker runs as an unprivileged user, who cannot reach this Python "
            f"({sys.executable}) because {names} cannot be searched by other users; install bubblewrap, move the environment "
            "to a folder others can search (e.g. /opt), or pass --open-interpreter-path to add o+x to those folders")
    for folder in closed:
        folder.chmod(folder.stat().st_mode | 0o001)
    return [str(f) for f in closed]


def lock_repository(root: Path = REPOSITORY) -> None:
    """As root, removes other users' access to the repository that holds ``reference/`` and ``graders/``."""
    if os.geteuid() == 0:
        mode = root.stat().st_mode
        if mode & 0o007:
            root.chmod(mode & ~0o007)


# -- job slots and their users ----------------------------------------------------------------------

def _private_folder(name: str) -> Path:
    """``/tmp/<name>-<euid>``, created 0700; refused when it exists but is not this user's own private folder.

    Always under ``/tmp``, whatever ``TMPDIR`` says: every grading process of the machine must find the same folder.
    """
    folder = Path("/tmp") / f"{name}-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{folder} is not a private folder of this user (a link, another owner or open to others); remove it")
    return folder


@contextlib.contextmanager
def claim_slot() -> Iterator[int]:
    """Holds a job slot for a ``with`` block: its number, free again afterwards (or when this process ends).

    Slots are lock files shared by every grading process of this user on the
    machine, so concurrent gradings never share a slot, hence a worker uid.

    Raises:
      RuntimeError: all :data:`MAX_SLOTS` slots are taken.
    """
    folder = _private_folder("course-grader-slots")
    for slot in range(MAX_SLOTS):
        fd = os.open(folder / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield slot
        finally:
            os.close(fd)
        return
    raise RuntimeError(f"all {MAX_SLOTS} grading slots of this machine are taken")


def slot_uid(slot: int) -> int | None:
    """The uid slot ``slot``'s worker runs as: its own when the grader is root, else ``None`` (the grader's user)."""
    return WORKER_UID_BASE + slot if os.geteuid() == 0 else None


def _processes_of(uid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["uids", "status"]):
        uids = p.info["uids"]
        if uids and uid in (uids.real, uids.effective) and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p)
    return found


def kill_user(uid: int | None) -> None:
    """Stops, then kills, every process of ``uid`` until none is left (a worker's slot, whatever it started)."""
    if uid is None:
        return
    for _ in range(100):
        victims = _processes_of(uid)
        if not victims:
            return
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # stopped first: a stopped process cannot fork
            for p in victims:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(sig)
        psutil.wait_procs(victims, timeout=0.5)


# Code the static scan cannot read (bytecode imports without its source; extension modules): never copied.
COMPILED = frozenset({".pyc", ".pyo", ".so", ".pyd", ".dylib"})
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")  # where any user may leave files


def remove_files_of(uid: int | None) -> None:
    """Removes what ``uid`` left in the machine's shared writable folders (on the ``user`` fallback; bubblewrap's are private)."""
    if uid is None:
        return
    for folder in sorted({tempfile.gettempdir(), *SHARED_WRITABLE}):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid != uid:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)


# -- scratch folders ---------------------------------------------------------------------------------

def _files(root: Path):
    """Every regular file under ``root`` but tools' leftovers; symbolic links are neither followed nor listed."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d)) and d not in SKIPPED_FOLDERS]
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink() and path.is_file() and not is_skipped(Path(name)):
                yield path


def make_scratch(submission: Path, *, uid: int | None = None, max_mb: int = 64) -> Path:
    """A private scratch folder holding the runtime and the course's modules (``lib/``) and a copy of the submission.

    The folder is 0700 (0710 with the worker's group as root, so that only
    ``uid`` may enter it); inside, everything is readable, not writable, by
    the worker. Only regular files are copied: a symbolic link (which could
    point the worker at any file of the grader's) is left out, and so is what
    tools leave beside the code (:data:`course.submission.SKIPPED_FOLDERS`)
    and compiled code (:data:`COMPILED`: only source is graded).

    Raises:
      ValueError: the submission holds more than ``max_mb`` MiB.
    """
    files = [f for f in _files(submission) if f.suffix not in COMPILED]
    size = sum(f.stat().st_size for f in files)
    if size > max_mb << 20:
        raise ValueError(f"submission: {size >> 20} MiB is more than the {max_mb} MiB a submission may hold")
    scratch = Path(tempfile.mkdtemp(prefix=_SCRATCH_PREFIX))
    me = psutil.Process()
    # Written whole, then renamed: a concurrent grading's remove_stale_scratch must never read half a file.
    partial = scratch / f".{_OWNER_FILE}.partial"
    partial.write_text(json.dumps({"pid": me.pid, "created": me.create_time()}))
    partial.replace(scratch / _OWNER_FILE)
    copies = ((RUNTIME, scratch / "lib" / "grader_runtime", _files(RUNTIME)),
              (COURSE, scratch / "lib" / "course", (f for f in _files(COURSE) if f.suffix == ".py")),
              (submission, scratch / "submission", files))
    for source_root, target_root, sources in copies:
        for source in sources:
            target = target_root / source.relative_to(source_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.chmod(0o644)
    (scratch / "submission").mkdir(exist_ok=True)
    for folder in (p for p in scratch.rglob("*") if p.is_dir()):
        folder.chmod(0o755)
    if uid is not None:
        os.chown(scratch, 0, uid)
        scratch.chmod(0o710)
    return scratch


def remove_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)


def remove_stale_scratch() -> list[Path]:
    """Removes this user's scratch folders whose grading process is gone (killed before it cleaned up); returns them."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{_SCRATCH_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_symlink() or folder.lstat().st_uid != os.geteuid() or _owner_alive(folder):
                continue
            remove_scratch(folder)
            removed.append(folder)
    return removed


def _owner_alive(scratch: Path) -> bool:
    """Whether the grading that made ``scratch`` may still be running (without a readable owner file: made less than a
    day ago)."""
    try:
        owner = json.loads((scratch / _OWNER_FILE).read_text())
    except (OSError, ValueError):  # one still being made, an older grader's folder
        return time.time() - scratch.lstat().st_mtime < 86400
    try:
        return psutil.Process(int(owner["pid"])).create_time() == float(owner["created"])
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False


# -- the worker process ------------------------------------------------------------------------------

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


def bubblewrap_command(scratch: Path, *, uid: int | None, limits: Limits) -> list[str]:
    """The ``bwrap`` command line that runs a worker on ``scratch`` (see the module docstring), up to the program.

    The sandbox's folders: the system's (``/usr`` and the ``/lib*``, ``/bin``
    links, the dynamic loader's files of ``/etc``), the Python environment
    (:func:`interpreter_folders`) at their own paths, read-only; ``/proc`` of
    its PID namespace; a minimal ``/dev`` (and the GPUs' devices); tmpfs
    ``/tmp`` and ``/sandbox/work``; ``/sandbox/lib`` and ``/sandbox/submission``
    read-only. The repository is hidden even where it lies in a shown folder.
    """
    args = ["bwrap", *_namespace_flags(), "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    shown: list[Path] = []

    def bind(source: Path, target: Path, option: str = "--ro-bind") -> None:
        for folder in reversed(target.parents):  # made 0755: bubblewrap would copy a private host folder's mode
            if folder != Path("/") and folder not in made and not any(folder.is_relative_to(s) for s in shown):
                args.extend(["--perms", "0755", "--dir", str(folder)])
                made.add(folder)
        args.extend([option, str(source), str(target)])
        shown.append(target)

    made: set[Path] = set()
    size = str(limits.scratch_mb << 20)
    args.extend(["--perms", "1777", "--size", size, "--tmpfs", "/tmp"])  # first: an environment under /tmp is bound on top
    for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args.extend(["--symlink", os.readlink(path), str(path)])
        elif path.is_dir():
            bind(path, path)
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives"):
        if (Path("/etc") / name).exists():
            bind(Path("/etc") / name, Path("/etc") / name)
    for path in interpreter_folders():
        if not any(path.is_relative_to(s) for s in shown):
            bind(path, path)
    if any(REPOSITORY.is_relative_to(s) for s in shown):
        args.extend(["--tmpfs", str(REPOSITORY)])
    args.extend(["--proc", "/proc", "--dev", "/dev"])
    gpus = sorted(Path("/dev").glob("nvidia*"))
    for device in gpus:
        args.extend(["--dev-bind", str(device), str(device)])
    if gpus:  # the CUDA driver reads the devices' PCI details there
        args.extend(["--ro-bind", "/sys", "/sys"])
    bind(scratch / "lib", SANDBOX / "lib")
    bind(scratch / "submission", SANDBOX / "submission")
    args.extend(["--perms", "0777", "--size", size, "--tmpfs", str(SANDBOX / "work"), "--chdir", str(SANDBOX / "work")])
    if uid is not None:  # root: namespaces are set up; the worker is a plain unprivileged user from here on
        args.extend(_drop_to(uid))
    return args


def _drop_to(uid: int) -> list[str]:
    """``setpriv``'s command line that runs the rest as ``uid`` (group ``uid``), without groups or capabilities."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
            "--no-new-privs"]


class Process:
    """One running worker: its pipes, its output tail and how to stop it.

    Args:
      scratch: from :func:`make_scratch`.
      isolation: one of :data:`LEVELS` (from :func:`choose_isolation`).
      uid: the worker's uid (:func:`slot_uid`), or ``None`` for the grader's own user.
    """

    def __init__(self, scratch: Path, *, limits: Limits, traps: list[str], isolation: str, uid: int | None):
        self.limits, self.isolation, self.uid = limits, isolation, uid
        sandboxed = isolation == "bubblewrap"
        root = SANDBOX if sandboxed else scratch
        work = root / "work"
        if not sandboxed:
            work.mkdir(mode=0o700, exist_ok=True)
            if uid is not None:
                os.chown(work, uid, uid)
        request_r, self.request_w = os.pipe()
        self.response_r, response_w = os.pipe()
        output_r, output_w = os.pipe()
        os.set_blocking(self.request_w, False)  # writes wait with a deadline (wire.write_frame): a worker may stop reading
        config = {
            "submission": str(root / "submission"), "course": str(root / "lib" / "course"), "traps": traps,
            "request_fd": request_r, "response_fd": response_w,
            "memory_bytes": limits.memory_mb << 20, "file_bytes": limits.file_mb << 20,
            "processes": _process_limit(uid, limits.processes), "message_bytes": limits.message_mb << 20,
        }
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
               "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONDONTWRITEBYTECODE": "1",
               **{k: os.environ[k] for k in _PASSED_ENV if k in os.environ}, "XLA_FLAGS": xla_flags(os.environ)}
        code = f"import sys; sys.path.insert(0, {str(root / 'lib')!r}); from grader_runtime.worker import main; main()"
        command = [sys.executable, "-I", "-B", "-c", code, json.dumps(config)]
        as_user = {}
        if sandboxed:
            command = bubblewrap_command(scratch, uid=uid, limits=limits) + command
        elif uid is not None:
            as_user = {"user": uid, "group": uid, "extra_groups": []}
        _become_subreaper()
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            command, cwd=scratch if sandboxed else work, env=env, stdin=subprocess.DEVNULL, stdout=output_w, stderr=output_w,
            pass_fds=(request_r, response_w), start_new_session=True, **as_user,
        )
        for fd in (request_r, response_w, output_w):
            os.close(fd)
        self.output = _Tail(output_r)
        self.process = psutil.Process(self.popen.pid)

    def tree(self) -> list[psutil.Process]:
        """Every process of the worker: its descendants (in bubblewrap, all of its PID namespace) and its uid's."""
        found = {self.process.pid: self.process}
        with contextlib.suppress(psutil.Error):
            found |= {p.pid: p for p in self.process.children(recursive=True)}
        if self.isolation == "user":  # orphans of another session are found by their uid
            found |= {p.pid: p for p in _processes_of(self.uid)}
        return list(found.values())

    def memory_mb(self) -> float:
        """Resident memory of the worker's whole tree, in MiB."""
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        """Kills the worker's whole tree: its process group, every descendant and every process of its uid."""
        for fd in (self.request_w, self.response_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        descendants = self.tree()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        kill_user(self.uid)
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
            with contextlib.suppress(psutil.Error):
                p.kill()
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


def _process_limit(uid: int | None, allowed: int) -> int:
    """``RLIMIT_NPROC`` for the worker: the tasks its user already has, plus ``allowed``."""
    uid = os.getuid() if uid is None else uid
    tasks = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        try:
            if p.info["uids"] and p.info["uids"].real == uid:
                tasks += p.info["num_threads"] or 1
        except psutil.Error:
            pass
    return tasks + allowed
