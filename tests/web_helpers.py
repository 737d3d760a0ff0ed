"""Helpers for the progress page's tests: a free port in our range, headless Chromium."""

import shutil
import socket
import subprocess
from pathlib import Path

# The web service's tests use 127.0.0.1:37100-37999 only, so concurrent runs never collide.
WEB_PORTS = range(37100, 38000)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Paint everything before the screenshot is taken, not what the first frame had.
    "--run-all-compositor-stages-before-draw",
)


def free_port(ports: range = WEB_PORTS) -> int:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("no chromium on PATH: run infra/chromium.sh install (make test does)")
    return path


def _run(args: list[str], profile: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, (
        f"chromium {args} failed ({done.returncode}):\n{done.stderr[-2000:]}"
    )
    return done


def dump_dom(url: str, profile: Path, timeout_s: float = 90.0) -> str:
    """The page's DOM after Chromium loaded and rendered it."""
    return _run(["--dump-dom", url], profile, timeout_s).stdout


def screenshot(url: str, path: Path, profile: Path, timeout_s: float = 90.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # A second of virtual time lets a loaded machine finish layout (shorter than any reload).
    args = [f"--screenshot={path}", "--window-size=1280,900", "--virtual-time-budget=1000", url]
    _run(args, profile, timeout_s)
    assert path.exists() and path.stat().st_size > 10_000, f"no screenshot at {path}"
    return path
