"""Run the real app (``streamlit run``) on a loopback port and drive it with Debian's Chromium.

Shared by the browser tests and ``bench/bench_app.py``. Nothing here reaches the internet: the app is
pointed at loopback tiles and local weights through environment variables (docs/app.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("SAT2SOUND_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
MAP_IFRAME = 'iframe[title="streamlit_folium.st_folium"]'


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found: `apt-get install chromium` (the Makefile does this in CI)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -r requirements-dev.txt"
    return None


class StreamlitServer:
    """``streamlit run app/main.py`` in a child process; ``url`` once :meth:`start` returned."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, timeout: float = 120.0) -> float:
        """Start the server and wait for its health check; returns seconds until healthy."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
        cmd = [
            streamlit, "run", str(REPO / "app" / "main.py"),
            "--server.port", str(self.port), "--server.address", "127.0.0.1", "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ]
        self.started_at = time.perf_counter()
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started_at
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"streamlit did not become healthy in {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def __enter__(self) -> StreamlitServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """A Playwright Chromium browser (Debian's binary, headless, no network services)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def map_frame(page: Any) -> Any:
    """The Leaflet map's iframe (streamlit-folium renders the map in a component iframe)."""
    return page.frame_locator(MAP_IFRAME).first


def wait_map_painted(page: Any, timeout_ms: float = 60_000) -> None:
    """Wait until at least one basemap tile is drawn."""
    map_frame(page).locator(".leaflet-tile-loaded").first.wait_for(timeout=timeout_ms)


def overlay_srcs(page: Any) -> list[str]:
    """``src`` of every heatmap ImageOverlay currently on the map (empty list when none/unmounted)."""
    try:
        frame = map_frame(page)
        return [str(s) for s in frame.locator("img.leaflet-image-layer").evaluate_all("els => els.map(e => e.src)")]
    except Exception:
        return []


def click_map(page: Any, dx: float = 0.0, dy: float = 0.0) -> None:
    """Click the map at an offset (pixels) from its centre."""
    container = map_frame(page).locator("#map_div")
    box = container.bounding_box()
    assert box is not None, "map not visible"
    container.click(position={"x": box["width"] / 2 + dx, "y": box["height"] / 2 + dy})


def wait_new_overlay(page: Any, previous: list[str], timeout_s: float = 120.0) -> list[str]:
    """Wait until the overlay differs from ``previous`` (a new result was drawn); return it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = overlay_srcs(page)
        if now and now != previous:
            return now
        page.wait_for_timeout(50)
    raise TimeoutError("no new heatmap overlay appeared")


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
