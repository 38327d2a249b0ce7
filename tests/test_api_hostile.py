"""The REST API against hostile clients and a failing host: limits checked before decoding, an unwritable
store that degrades instead of failing, bodies that cannot be read answered as documented."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.testclient import TestClient

from core import clients, images, services
from core.api import API_PREFIX, api_routes
from core.errors import BusyError
from core.masks import files as mask_files
from core.requests import InpaintRequest

ROOT = Path(__file__).resolve().parents[1]



def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _inpaint_body(size: tuple[int, int], box: tuple[int, int, int, int], seed: int = 0) -> dict:
    width, height = size
    photo = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return {"model": "opencv-telea", "image": _png(photo), "mask": _png(mask), "seed": 0}


def test_a_burst_over_the_clients_limit_is_refused_before_its_images_are_decoded(make_api, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_JOBS_PER_SESSION", "2")
    decoded = []
    lock, release = threading.Lock(), threading.Event()
    real_load = images.load_image

    def counting_load(source, *limits):  # the real decode, counted and held a moment
        with lock:
            decoded.append(1)
        release.wait(2)
        return real_load(source, *limits)

    monkeypatch.setattr(images, "load_image", counting_load)
    monkeypatch.setattr(mask_files, "load_image", counting_load)
    client = make_api()
    bodies = [_inpaint_body((96, 64), (20 + number, 10, 40 + number, 30), seed=number) for number in range(6)]

    def send(body: dict) -> int:
        return client.post(f"{API_PREFIX}/jobs", json={"task": "inpaint", **body}).status_code

    with ThreadPoolExecutor(6) as pool:
        answers = [pool.submit(send, body) for body in bodies]
        threading.Timer(0.5, release.set).start()
        statuses = sorted(answer.result() for answer in answers)
    assert statuses == [202, 202, 429, 429, 429, 429]
    assert len(decoded) == 2 * 2  # an image and a mask for each accepted request; none for the refused


def test_an_unwritable_store_degrades_to_results_not_kept_and_jobs_still_answer(make_api, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "results").write_text("")  # a file where the result store's folder goes: unwritable, even for root
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(cache))
    client = make_api()
    health = client.get(f"{API_PREFIX}/health")
    assert health.status_code == 200
    assert health.json()["store"].startswith("results are not kept: the result store cannot be written (")
    assert str(tmp_path) not in health.text
    done = client.post(f"{API_PREFIX}/inpaint", json=_inpaint_body((96, 64), (20, 10, 40, 30)))
    assert done.status_code == 200, done.text
    assert done.json()["cached"] is False and done.json()["image"]


def test_an_unwritable_cache_folder_degrades_the_job_store_too_and_jobs_still_answer(make_api, tmp_path, monkeypatch):
    """The SQLite job store lives in STUDIO_CACHE_DIR too: when it cannot be opened the queue runs on a temporary
    one, /health says jobs do not survive a restart, and jobs (sync and async) still answer."""
    cache = tmp_path / "cache"
    cache.write_text("")  # a file where the folder goes: nothing under it can be created, even by root
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(cache))
    client = make_api()
    health = client.get(f"{API_PREFIX}/health")
    assert health.status_code == 200, health.text
    assert health.json()["jobs"].startswith("jobs do not survive a restart: the job store cannot be written (")
    assert health.json()["store"].startswith("results are not kept: ")
    assert str(tmp_path) not in health.text
    done = client.post(f"{API_PREFIX}/inpaint", json=_inpaint_body((96, 64), (20, 10, 40, 30)))
    assert done.status_code == 200, done.text
    queued = client.post(f"{API_PREFIX}/jobs", json={"task": "inpaint", **_inpaint_body((96, 64), (20, 10, 40, 30), 1)})
    assert queued.status_code == 202, queued.text
    job = queued.json()["id"]
    assert services.queue().wait(job, timeout=60).state.value == "done"
    assert client.get(f"{API_PREFIX}/jobs/{job}/result").status_code == 200


def test_the_pages_work_with_an_unwritable_cache_folder(tmp_path, monkeypatch):
    """Results, jobs and the pages' saved work all live in STUDIO_CACHE_DIR: none of them stops a page."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    cache = tmp_path / "cache"
    cache.write_text("")
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(cache))
    services.reset()
    st.cache_resource.clear()
    try:
        for page in ("Home.py", "pages/2_Inpaint.py"):
            shown = AppTest.from_file(str(ROOT / page), default_timeout=120).run()
            assert not shown.exception, [exception.value for exception in shown.exception]
        warnings = [warning.value for warning in AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120).run().warning]
        assert any(warning.startswith("Results are not kept: ") for warning in warnings), warnings  # not "all is well"
        assert any(warning.startswith("Jobs do not survive a restart: ") for warning in warnings), warnings
    finally:
        services.reset()
        st.cache_resource.clear()


def test_a_writable_store_says_ok(make_api):
    health = make_api().get(f"{API_PREFIX}/health").json()
    assert health["store"] == health["jobs"] == "ok"


def test_a_body_that_is_not_utf8_is_the_documented_422(make_api):
    client = make_api()
    response = client.post(
        f"{API_PREFIX}/generate",
        content=b'{"model": "sd-turbo", "prompt": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_a_result_is_serialised_off_the_event_loop(make_api, monkeypatch):
    """The response body is built and encoded in a worker thread, never on the loop the pages share."""
    from core.api import offload

    on_the_loop = []
    real = offload.json_bytes

    def spy(content):
        try:
            asyncio.get_running_loop()
            on_the_loop.append(True)
        except RuntimeError:  # no loop runs in this thread: a worker thread
            on_the_loop.append(False)
        return real(content)

    monkeypatch.setattr(offload, "json_bytes", spy)
    done = make_api().post(f"{API_PREFIX}/inpaint", json=_inpaint_body((96, 64), (20, 10, 40, 30)))
    assert done.status_code == 200
    assert on_the_loop == [False]


def test_health_answers_from_a_snapshot_until_a_job_changes_or_it_ages(make_api, monkeypatch):
    """Under load a hop to a thread alone costs /health tens of milliseconds: while nothing changed, it is
    answered on the event loop, from what the last read saw; any job change, or age, makes it read again."""
    from core.api import health

    monkeypatch.setenv("STUDIO_WORKERS", "0")  # a pure front-end: what is queued stays queued
    reads = []
    real_take = health._take
    monkeypatch.setattr(health, "_take", lambda: reads.append(1) or real_take())
    client = make_api()
    first, second = (client.get(f"{API_PREFIX}/health").json() for _ in range(2))
    assert first == second and first["queue_length"] == 0
    assert len(reads) == 1  # the second from the snapshot: no thread, no store read
    queued = client.post(f"{API_PREFIX}/jobs", json={"task": "inpaint", **_inpaint_body((96, 64), (20, 10, 40, 30))})
    assert queued.status_code == 202
    assert client.get(f"{API_PREFIX}/health").json()["queue_length"] == 1  # the submit changed the store
    assert len(reads) == 2
    monkeypatch.setattr(health, "MAX_AGE_S", 0.0)  # what only the store shows (other processes): read when old
    client.get(f"{API_PREFIX}/health")
    assert len(reads) == 3


def test_heavy_api_threads_yield_the_cores_to_the_event_loop(monkeypatch):
    """In the server (priority enabled at start-up) the threads decoding and encoding run niced; the loop not."""
    from core import priority
    from core.api import offload

    if sys.platform != "linux":
        pytest.skip("thread priorities are per thread only on Linux")
    monkeypatch.setattr(priority, "_enabled", True)

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def both() -> tuple[int, int]:
        return nice(), await offload.heavy(nice)

    with ThreadPoolExecutor(1, initializer=priority.lower_this_thread) as pool:  # new threads: enabled from the start
        monkeypatch.setattr(offload, "_HEAVY_POOL", pool)
        loop_nice, heavy_nice = asyncio.run(both())
    assert heavy_nice == min(19, loop_nice + priority.BACKGROUND_NICE)


def _removal(seed: int) -> InpaintRequest:
    photo = Image.fromarray(np.random.default_rng(100 + seed).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (20, 10, 40, 30))
    return InpaintRequest(model="opencv-telea", image=photo, mask=mask, seed=0)


def test_one_address_has_one_limit_across_its_page_tabs_and_its_api_calls(make_api, monkeypatch):
    monkeypatch.setenv("STUDIO_MAX_JOBS_PER_SESSION", "3")
    monkeypatch.setenv("STUDIO_WORKERS", "0")  # nothing runs: what is queued stays unfinished
    api = make_api(client=("10.0.0.1", 50000))
    queue = services.queue()
    for seed, tab in enumerate(["tab-one-00000000", "tab-two-00000000"]):  # two tabs of one browser, 10.0.0.1
        queue.submit(_removal(seed), session=clients.page_session(tab, "10.0.0.1"), heartbeat=True)
    body = {"task": "inpaint", **_inpaint_body((96, 64), (20, 10, 40, 30), seed=10)}
    assert api.post(f"{API_PREFIX}/jobs", json=body).status_code == 202  # the third job of 10.0.0.1
    refused = api.post(f"{API_PREFIX}/jobs", json={**body, **_inpaint_body((96, 64), (20, 10, 40, 30), seed=11)})
    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert message.startswith("you already have 3 jobs waiting or running from your address") and "\n" not in message
    with pytest.raises(BusyError, match="you already have 3 jobs"):  # a third tab is refused as well
        queue.submit(_removal(3), session=clients.page_session("tab-three-000000", "10.0.0.1"), heartbeat=True)
    # Another address is not affected, through the API or a page.
    other = TestClient(Starlette(routes=api_routes()), client=("10.0.0.2", 50000))
    assert other.post(f"{API_PREFIX}/jobs", json={**body, **_inpaint_body((96, 64), (20, 10, 40, 30), seed=12)}).status_code == 202
    queue.submit(_removal(4), session=clients.page_session("tab-four-0000000", "10.0.0.2"), heartbeat=True)
    # A job cancelled frees its place for the address.
    queue.cancel(queue.jobs(session=clients.page_session("tab-one-00000000", "10.0.0.1"))[0].id)
    queue.submit(_removal(5), session=clients.page_session("tab-three-000000", "10.0.0.1"), heartbeat=True)


def test_an_address_is_spelled_one_way_for_pages_and_the_api():
    assert clients.address(None) == clients.address("127.0.0.1") == clients.address("::1") == clients.LOCAL
    assert clients.address("::ffff:10.0.0.1") == "10.0.0.1"
    page, api = clients.page_session("abcdefgh12345678", None), "api:127.0.0.1"  # a local tab, a local API call
    assert clients.client_of(page) == clients.client_of(api) != clients.client_of("api:10.0.0.1")
    assert clients.client_of("cli") == "cli"  # no address: counted on its own


def test_large_bodies_are_encoded_and_sent_in_slices_that_make_the_same_json(make_api, monkeypatch):
    """base64 and JSON of a 100 MB result in one call each hold the GIL for over a second: the body is
    built a slice at a time instead, and sent part by part; it is the very JSON the one-call way writes."""
    from core.api import offload

    data = np.random.default_rng(0).integers(0, 256, 3 * offload._SLICE + 7, dtype=np.uint8).tobytes()
    content = {"image": offload.Base64(data), "images": [offload.Base64(b"ab")], "prompt": 'a "cat" \u00e9'}
    parts = offload.json_parts(content)
    whole = {**content, "image": base64.b64encode(data).decode(), "images": [base64.b64encode(b"ab").decode()]}
    assert b"".join(parts) == offload.json_bytes(whole)
    assert max(map(len, parts)) <= 4 * offload._SLICE // 3  # no part is the whole image's text

    monkeypatch.setattr(offload, "_STREAMED_OVER", 1000)  # a small result takes the large bodies' way
    client = make_api()
    job = client.post(f"{API_PREFIX}/jobs", json={"task": "inpaint", **_inpaint_body((96, 64), (20, 10, 40, 30))})
    assert services.queue().wait(job.json()["id"], timeout=60).state.value == "done"
    for answer in (
        client.get(f"{API_PREFIX}/jobs/{job.json()['id']}/result"),
        client.post(f"{API_PREFIX}/inpaint", json=_inpaint_body((96, 64), (20, 10, 40, 30))),
    ):
        assert answer.status_code == 200 and int(answer.headers["content-length"]) == len(answer.content) > 1000
        assert Image.open(io.BytesIO(base64.b64decode(answer.json()["image"]))).size == (96, 64)


def test_a_lone_surrogate_in_a_prompt_is_a_400_before_anything_runs(make_api):
    response = make_api().post(
        f"{API_PREFIX}/generate",
        content=b'{"model": "sd-turbo", "prompt": "a fox \\ud800"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "bad_parameter",
        "message": "prompt is not valid text: it holds a lone surrogate (broken UTF-16)",
    }
    assert services.queue().jobs() == []


def test_a_lone_surrogate_on_the_command_line_exits_2(tmp_path):
    prompt = b"a fox \xed\xa0\x80"  # UTF-8 of a surrogate: Python's argv decodes it to lone surrogates
    command = [sys.executable.encode(), b"-m", b"core", b"generate", prompt, b"--model", b"sd-turbo", b"-o", b"out.png"]
    completed = subprocess.run(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert completed.returncode == 2, completed.stderr
    assert b"prompt is not valid text" in completed.stderr and b"Traceback" not in completed.stderr
