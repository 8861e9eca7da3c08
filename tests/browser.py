"""Headless Chromium for the tests that look at pages: how it starts, how they skip without it, where screenshots go.

Every browser test is marked :data:`needs_chromium`, so that without Chromium
it skips, with one reason, before its fixtures run; :func:`chromium` skips too
when called without it. Chromium runs with networking off (a proxy that
nothing listens on, and no name resolves), so a page that needs the network
shows it.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from course.submission import repo_root

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = "chromium not installed (Debian package chromium; .ci/run installs it)"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
# Screenshots and other files kept for a person to look at after the run.
ARTIFACTS = Path(os.environ.get("COURSE_TEST_ARTIFACTS", repo_root() / "out" / "test-artifacts"))
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
    "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: port 9 discards, no name resolves
)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Runs headless Chromium offline with ``args`` (``--dump-dom URL``, ``--screenshot=PATH URL``); fails on an error exit.

    Args:
      args: Chromium's arguments after the common flags.
      profile: a fresh folder for its user data (one per test).

    Returns:
      The finished process, its output as text.
    """
    if CHROMIUM is None:
        pytest.skip(MISSING)
    completed = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed


def screenshot(url: str, name: str, *, profile: Path, size: tuple[int, int] = (1280, 1600), wait_ms: int = 0) -> Path:
    """A screenshot of ``url``, kept as ``ARTIFACTS/name``.

    Args:
      size: the window, (width, height) in pixels.
      wait_ms: virtual time to let the page's scripts finish (typesetting, say) before the picture.

    Returns:
      The PNG file.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    wait = [f"--virtual-time-budget={wait_ms}"] if wait_ms else []
    chromium(*wait, f"--window-size={size[0]},{size[1]}", f"--screenshot={shot}", url, profile=profile)
    return shot
