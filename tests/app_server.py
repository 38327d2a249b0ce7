"""The real app for end-to-end tests: `streamlit run Home.py` on a free loopback port, and the headless
Chromium (Debian's, never a downloaded one) that drives it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

HOME = Path(__file__).resolve().parents[1] / "Home.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update")
STARTUP_TIMEOUT_S = 120  # a cold start on the shared 2-core machine imports torch and diffusers
STOP_TIMEOUT_S = 15


@dataclass(frozen=True)
class AppServer:
    url: str
    process: subprocess.Popen
    environ: dict[str, str]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_environ(workdir: Path, env: Mapping[str, str | None]) -> dict[str, str]:
    # Every test server serves the repository's catalogue, never downloads, and starts with an empty cache.
    environ = {name: value for name, value in os.environ.items() if name != "STUDIO_MODELS_FILE"}
    environ.update(STUDIO_CACHE_DIR=str(workdir / "cache"), HF_HUB_OFFLINE="1")
    for name, value in env.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def _wait_healthy(server: AppServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        assert server.process.poll() is None, f"the server exited with {server.process.returncode}:\n{server.log_tail()}"
        assert time.monotonic() < deadline, f"the server did not start in {STARTUP_TIMEOUT_S} s:\n{server.log_tail()}"
        try:
            if httpx.get(f"{server.url}/_stcore/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _limit_address_space(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@contextmanager
def running_app(
    workdir: Path, env: Mapping[str, str | None] | None = None, *, address_space_limit: int | None = None
) -> Iterator[AppServer]:
    """`streamlit run Home.py` from the repository (so .streamlit/config.toml applies), healthy on entry,
    stopped on exit.

    The server gets this process's environment without STUDIO_MODELS_FILE, with HF_HUB_OFFLINE=1 and
    STUDIO_CACHE_DIR=`workdir`/cache, then `env` on top (a None value removes that variable). Its output
    goes to `workdir`/server.log, which `log_tail()` reads for failure messages. `address_space_limit`
    (bytes) is enforced by the kernel on the server and its children (RLIMIT_AS).
    """
    environ = _server_environ(workdir, env or {})
    port = _free_port()
    log = workdir / "server.log"
    command = [
        sys.executable, "-m", "streamlit", "run", HOME.name,
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with open(log, "wb") as output:  # the child keeps its own handle
        process = subprocess.Popen(
            command,
            cwd=HOME.parent,
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=None if address_space_limit is None else partial(_limit_address_space, address_space_limit),
        )
    server = AppServer(f"http://127.0.0.1:{port}", process, environ, log)
    try:
        _wait_healthy(server)
        yield server
    finally:
        _stop(process)


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, with no background traffic (the machine has no internet)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def settled(page) -> None:
    """Wait for the rerun the last input started to finish (the script state Streamlit's own browser tests
    wait on): a click that lands mid-rerun can hit a button that is being replaced and be lost."""
    page.wait_for_timeout(300)
    page.locator("[data-testid=stApp][data-test-script-state=notRunning]").wait_for(timeout=60_000)


def photo_on_inpaint(page, app_url: str, photo_path):
    """Open Inpaint, upload `photo_path` and return the mask editor's canvas once the photo is drawn in it."""
    page.goto(f"{app_url}/Inpaint")
    page.locator("input[type=file]").set_input_files(str(photo_path))
    canvas = page.locator("canvas.mask-canvas")
    canvas.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)  # the photo loads into the canvas
    return canvas


def canvas_pixel(canvas, x: float, y: float) -> tuple[int, int, int]:
    """The colour the mask editor shows at CSS pixel (x, y) of its canvas."""
    return tuple(
        canvas.evaluate(
            """(c, [x, y]) => { const r = c.width / c.getBoundingClientRect().width;
                return Array.from(c.getContext('2d').getImageData(Math.round(x * r), Math.round(y * r), 1, 1).data).slice(0, 3); }""",
            [x, y],
        )
    )
