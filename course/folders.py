"""Folders written whole: built beside their place, then swapped in, so that a run killed half-way loses nothing.

Used for every folder a tool replaces: a student's results and a merged or
reported class (``graders``), and a released student repository (``authoring``).
"""

from __future__ import annotations

import contextlib
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
