"""Folders and files written whole: built beside their place, then swapped in, so that a run killed half-way loses nothing.

Used for every folder a tool replaces: a student's results and a merged or
reported class (``graders``), and a released student repository (``authoring``);
and for large files: a checkpoint, an autograder bundle.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

# replacing()'s hidden folders beside FOLDER: the new one being written, and the old one while it is swapped out.
LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<kind>new|old)-[a-z0-9_]{8}")


@contextlib.contextmanager
def replacing(folder: Path, *, keep: Sequence[str] = ()) -> Iterator[Path]:
    """A new hidden folder beside ``folder`` to write into, which takes ``folder``'s place when the ``with`` block
    ends without an error, and is removed otherwise; ``folder`` is never half-written.

    Args:
      keep: names of ``folder``'s entries moved into the new folder when it takes over (a ``.git``).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))  # 0700
    try:
        yield new
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    for name in keep:
        if (folder / name).exists() and not (new / name).exists():
            (folder / name).rename(new / name)
    old = folder.parent / f".{folder.name}.old-{new.name.rsplit('.new-', 1)[1]}"
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replacing_file(path: Path) -> Iterator[Path]:
    """A new hidden file beside ``path`` to write, which takes ``path``'s place (an ordinary file: the umask's
    permissions) when the ``with`` block ends without an error, and is removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    os.close(handle)
    new = Path(name)
    try:
        yield new
        umask = os.umask(0)
        os.umask(umask)
        new.chmod(0o666 & ~umask)
        os.replace(new, path)
    finally:
        new.unlink(missing_ok=True)


def tidy(parent: Path) -> None:
    """Removes what a killed run left of :func:`replacing` in ``parent``: unfinished new folders, and old ones (put
    back where the run was killed between its two renames). Only one run may write in ``parent`` at a time."""
    for leftover in sorted(parent.iterdir(), key=lambda p: ".new-" not in p.name):  # the new ones first
        match = LEFTOVER.fullmatch(leftover.name)
        if match is None:
            continue
        if match["kind"] == "old" and not (parent / match["name"]).exists():
            leftover.rename(parent / match["name"])
        else:
            shutil.rmtree(leftover, ignore_errors=True)
