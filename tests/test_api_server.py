"""`streamlit run Home.py` serves the pages and the REST API from one process that shares one cache.

Starts the real server on a free loopback port, opens the Home page in headless Chromium, and while
it is open calls the API over HTTP; then checks from this test process, through core and the same
STUDIO_CACHE_DIR, that what the API made is a cache hit for core (and the other way round).
"""

from __future__ import annotations

import base64
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from core.images import load_image
from core.masks import mask_from_image
from core.requests import InpaintRequest
from core.runner import Studio
from core.settings import Settings
from tests.app_server import AppServer, headless_chromium, running_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server(tmp_path) -> Iterator[AppServer]:
    with running_app(tmp_path, {"STUDIO_MAX_BODY_MB": "2", "PYTHONPATH": str(REPO), "STUDIO_API_KEY": None}) as started:
        yield started


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _core_request(image_png: bytes, mask_png: bytes, seed: int) -> InpaintRequest:
    """The request the API builds from the same bytes, built here through core."""
    image = load_image(image_png)
    return InpaintRequest(model="opencv-ns", image=image, mask=mask_from_image(mask_png, image.size), seed=seed)


@pytest.mark.slow
@pytest.mark.browser
def test_one_process_serves_pages_and_api_and_they_share_the_cache(server, astronaut):
    photo = astronaut
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (220, 120, 300, 200))
    image_png, mask_png = _png(photo), _png(mask)
    body = {"model": "opencv-ns", "image": base64.b64encode(image_png).decode(), "mask": base64.b64encode(mask_png).decode()}
    # The test process's own view of the same store, through core.
    studio = Studio.from_settings(Settings.from_env(server.environ))

    with headless_chromium() as browser, httpx.Client(base_url=server.url, timeout=60) as http:
        # 1. A page is open: the Home script ran in the server and rendered.
        assert http.get("/").status_code == 200
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector('[data-testid="stMainBlockContainer"]', timeout=60_000)
        page.wait_for_function(
            "document.querySelector('[data-testid=\"stMainBlockContainer\"]').innerText.trim().length > 0",
            timeout=60_000,
        )

        # 2. The API answers from the very process that serves the page.
        health = http.get("/api/v1/health")
        assert health.headers.get("content-type") == "application/json", (
            "no API at /api/v1: Home.py must define `app = st.App('Home.py', routes=api_routes())`"
        )
        assert health.status_code == 200, server.log_tail()
        assert health.json()["pid"] == server.process.pid
        assert {model["id"] for model in http.get("/api/v1/models").json()} >= {"opencv-telea", "opencv-ns"}

        # 3. An inpaint through the API is a cache hit for the same request made through core.
        made = http.post("/api/v1/inpaint", json={**body, "seed": 11})
        assert made.status_code == 200, made.text
        assert made.json()["cached"] is False
        api_png = base64.b64decode(made.json()["image"])
        hit = studio.cached(studio.prepare(_core_request(image_png, mask_png, seed=11)))
        assert hit is not None and hit.pngs == (api_png,)
        before, after = np.asarray(photo), np.asarray(Image.open(io.BytesIO(api_png)))
        assert np.array_equal(after[:100], before[:100])  # far from the mask: untouched

        # 4. ...and the other way round: what core made here, the API serves from the store.
        core_result = studio.run(studio.prepare(_core_request(image_png, mask_png, seed=12)))
        served = http.post("/api/v1/inpaint", json={**body, "seed": 12}).json()
        assert served["cached"] is True
        assert base64.b64decode(served["image"]) == core_result.pngs[0]

        # 5. An asynchronous job through the same server.
        job = http.post("/api/v1/jobs", json={"task": "inpaint", **body, "padding": 48})
        assert job.status_code == 202
        deadline = time.monotonic() + 30
        while (status := http.get(f"/api/v1/jobs/{job.json()['id']}").json())["status"] != "done":
            assert status["status"] in ("queued", "running") and time.monotonic() < deadline, status
            time.sleep(0.05)
        finished = http.get(f"/api/v1/jobs/{job.json()['id']}/result").json()
        assert finished["parameters"]["padding"] == 48 and finished["seed"] == 0  # OpenCV ignores seeds: 0

        # 6. The body cap holds over real HTTP, declared or streamed (STUDIO_MAX_BODY_MB=2).
        too_big = http.post("/api/v1/inpaint", content=b"x" * (3 * 1024 * 1024), headers={"content-type": "application/json"})
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "body_too_large"
        streamed = http.post(
            "/api/v1/inpaint",
            content=(b"x" * 65536 for _ in range(48)),  # 3 MB, chunked: no Content-Length
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413

        # 7. After all that, the page and the server are still fine.
        assert page.locator('[data-testid="stException"]').count() == 0
        assert http.get("/_stcore/health").status_code == 200
        assert http.get("/api/v1/health").json()["queue_length"] == 0


@pytest.mark.slow
def test_an_idle_connection_outlives_the_clients_reuse(server):
    """uvicorn's own keep-alive is 5 s: a client reusing its pooled connection at that instant got no answer
    at all. The server keeps idle connections 120 s (core/ui/server.py): one idle 6.5 s still answers."""
    port = int(server.url.rsplit(":", 1)[1])
    request = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        assert _one_response(connection).startswith(b"HTTP/1.1 200")
        time.sleep(6.5)
        connection.sendall(request)
        assert _one_response(connection).startswith(b"HTTP/1.1 200")  # b"" when the server had closed it


def _one_response(connection: socket.socket) -> bytes:
    """One whole HTTP response (headers and Content-Length body), however many TCP reads it takes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
