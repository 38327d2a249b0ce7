"""The job store with real processes: an app restarted with jobs queued, a worker killed with -9
mid-job, and two front-ends with two workers on one Redis. Small OpenCV jobs and a one-second
lease keep this quick; the processes share STUDIO_CACHE_DIR (one machine, or a shared folder)."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.app_server import running_app
from tests.redis_server import redis_server

ROOT = Path(__file__).resolve().parents[1]
LEASE_S = "1"
PATIENCE_S = 120  # the machine is shared: a deadline here only bounds a hang


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def removal_body(side: int, radius: int, seed: int = 0) -> dict:
    """An OpenCV removal; a large mask over the whole image takes a second or two of CPU."""
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).ellipse(
        (side // 2 - radius, side // 2 - radius, side // 2 + radius, side // 2 + radius), fill=255
    )
    return {"model": "opencv-ns", "image": _png(Image.fromarray(pixels)), "mask": _png(mask), "whole_image": True}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environ(cache: Path, **extra: str) -> dict[str, str]:
    environ = {name: value for name, value in os.environ.items() if name != "STUDIO_MODELS_FILE"}
    environ.update(
        STUDIO_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", STUDIO_LEASE_S=LEASE_S, OMP_NUM_THREADS="1", **extra
    )
    return environ


@contextmanager
def process(command: list[str], environ: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as output:
        child = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextmanager
def api_front_end(environ: dict[str, str], log: Path) -> Iterator[str]:
    """The REST API alone (what `streamlit run Home.py` serves under /api/v1), with no worker."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "core.api:create_api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with process(command, {**environ, "STUDIO_WORKERS": "0"}, log) as child:
        url = f"http://127.0.0.1:{port}"
        until(lambda: child.poll() is None and _healthy(url), what=f"the front-end to start ({log.read_text()[-500:]})")
        yield url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def until(condition, *, what: str, timeout: float = PATIENCE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/jobs/{job_id}", timeout=10).json()


def test_two_front_ends_and_two_workers_on_one_redis_and_a_killed_worker_is_retried(tmp_path):
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp_path))
        environ = _environ(tmp_path / "cache", STUDIO_QUEUE_URL=redis_url)
        workers = [
            stack.enter_context(process([sys.executable, "-m", "core", "worker"], environ, tmp_path / f"worker{n}.log"))
            for n in (1, 2)
        ]
        front_a = stack.enter_context(api_front_end(environ, tmp_path / "front-a.log"))
        front_b = stack.enter_context(api_front_end(environ, tmp_path / "front-b.log"))
        health = until(
            lambda: (body := httpx.get(f"{front_b}/health", timeout=10).json())["workers_alive"] == 2 and body,
            what="both workers to beat",
        )
        assert health["queue_backend"] == "redis"

        # Submitted on A, seen on B with the same id; every result readable from B.
        ids = [
            httpx.post(f"{front_a}/jobs", json={"task": "inpaint", **removal_body(256, 60, seed)}, timeout=30).json()[
                "id"
            ]
            for seed in range(3)
        ]
        for job_id in ids:
            assert job(front_b, job_id)["id"] == job_id
        done = [
            until(lambda job_id=job_id: (body := job(front_b, job_id))["status"] == "done" and body, what="a job")
            for job_id in ids
        ]
        names = {f"{socket.gethostname()}:{worker.pid}" for worker in workers}
        assert {body["worker"] for body in done} <= names and all(body["attempts"] == 1 for body in done)
        result = httpx.get(f"{front_b}/jobs/{ids[0]}/result", timeout=30).json()
        assert Image.open(io.BytesIO(base64.b64decode(result["image"]))).size == (256, 256)

        # kill -9 the worker running a job: after its lease, the other worker runs it again.
        long_job = httpx.post(
            f"{front_b}/jobs", json={"task": "inpaint", **removal_body(1500, 400)}, timeout=60
        ).json()["id"]
        running = until(
            lambda: (body := job(front_a, long_job))["status"] == "running" and body, what="the job to start"
        )
        victim = next(worker for worker in workers if running["worker"].endswith(f":{worker.pid}"))
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        final = until(
            lambda: (body := job(front_a, long_job))["status"] in ("done", "failed") and body, what="the retry"
        )
        assert final["status"] == "done", final
        assert final["attempts"] == 2 and final["worker"] != running["worker"]
        assert time.monotonic() - killed_at < PATIENCE_S
        # The dead one stops counting once its last beat is older than the liveness horizon (3 s here) and
        # /health's snapshot (up to 1 s old) is taken again; on a quiet machine the retry finishes sooner.
        until(
            lambda: httpx.get(f"{front_a}/health", timeout=10).json()["workers_alive"] == 1,
            what="the killed worker to stop counting as alive",
            timeout=10,
        )


@pytest.mark.slow
def test_the_app_restarted_with_queued_jobs_runs_them_with_the_same_ids(tmp_path):
    env = {"STUDIO_LEASE_S": LEASE_S}
    with running_app(tmp_path, {**env, "STUDIO_WORKERS": "0"}) as app:  # a front-end only: the jobs wait
        api = f"{app.url}/api/v1"
        ids = [
            httpx.post(f"{api}/jobs", json={"task": "inpaint", **removal_body(128, 30, seed)}, timeout=60).json()["id"]
            for seed in range(2)
        ]
        assert [job(api, job_id)["status"] for job_id in ids] == ["queued", "queued"]
    with running_app(tmp_path, env) as app:  # the same STUDIO_CACHE_DIR: the same SQLite job store
        api = f"{app.url}/api/v1"
        finished = [
            until(lambda job_id=job_id: (body := job(api, job_id))["status"] == "done" and body, what="a job")
            for job_id in ids
        ]
        assert [body["id"] for body in finished] == ids
        assert httpx.get(f"{api}/jobs/{ids[1]}/result", timeout=30).status_code == 200


@pytest.mark.slow
def test_a_job_running_when_the_app_stops_goes_back_to_the_queue_and_runs_after_the_restart(tmp_path):
    env = {"STUDIO_LEASE_S": "600"}  # only the app's own stop can put the job back within this test
    with running_app(tmp_path, env) as app:
        api = f"{app.url}/api/v1"
        body = {"task": "inpaint", **removal_body(1000, 400)}  # a few seconds of OpenCV
        job_id = httpx.post(f"{api}/jobs", json=body, timeout=60).json()["id"]
        until(lambda: job(api, job_id)["status"] == "running", what="the job to start")
    with running_app(tmp_path, env) as app:  # stopped with SIGTERM, started again on the same store
        api = f"{app.url}/api/v1"
        finished = until(lambda: (status := job(api, job_id))["status"] == "done" and status, what="the job")
        assert finished["attempts"] == 1  # the stop gave it back without counting an attempt
