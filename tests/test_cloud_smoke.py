"""Community Cloud smoke test: the app as `streamlit run Home.py` under a 2.7 GB memory limit.

The limit is enforced by the kernel: RLIMIT_AS (the address space of the server and its children)
set before the server starts. A cgroup would be closer to Community Cloud's, but here the memory
controller is only in the host's cgroup v1 hierarchy (cgroup v2 has none) and there is no systemd
to run `systemd-run --scope -p MemoryMax`; an rlimit needs no privilege, so any CI machine can set
it. The app reads the limit itself (core/memory.py), as it reads a cgroup's on Community Cloud.

Exercised over HTTP, as a browser's page or a client would: Remove (OpenCV), hosted Generate
against the local stand-in Inference Endpoint (tests/fake_inference_server.py), and the refusal
of a local model too big for the host (the built-in SD-Turbo), with the server still healthy and
its peak RSS far under the limit.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.app_server import running_app
from tests.fake_inference_server import FakeInferenceServer, gradient_png

LIMIT_BYTES = 2700 * 1024 * 1024  # Community Cloud's ~2.7 GB
TOKEN = "hf_cloud_smoke_test_token"
REPO = Path(__file__).resolve().parents[1]


def _b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_the_app_under_a_2_7_gb_limit_removes_generates_hosted_and_refuses_what_does_not_fit(tmp_path, astronaut):
    endpoint = FakeInferenceServer(token=TOKEN).start()
    try:
        models = tmp_path / "models.toml"  # the built-in hosted FLUX entry, pointed at the stand-in endpoint
        models.write_text(
            '[models.flux-schnell-hosted]\nname = "FLUX.1 [schnell] (hosted)"\ntasks = ["txt2img"]\nengine = "hosted"\n'
            'hub = "black-forest-labs/FLUX.1-schnell"\nworking_resolution = 512\nsize_multiple = 16\nmax_side = 1440\n'
            f"default_steps = 4\ndefault_guidance = 0.0\noptions = {{ endpoint = {json.dumps(endpoint.url())} }}\n",
            encoding="utf-8",
        )
        environment = {
            "PYTHONPATH": str(REPO),
            "STUDIO_MODELS_FILE": str(models),
            "HF_TOKEN": TOKEN,
            "HF_HUB_OFFLINE": None,  # hosted calls need the network (the endpoint is on loopback)
            "STUDIO_API_KEY": None,
            "STUDIO_MEMORY_LIMIT_MB": None,  # the kernel's limit is the one to find
            "STUDIO_DEVICE": "cpu",
        }
        with running_app(tmp_path, environment, address_space_limit=LIMIT_BYTES) as server:
            api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=120)
            # 1. The catalogue says what does not fit, in the host's own figures, before any load.
            listed = {model["id"]: model for model in api.get("/models").json()}
            assert not listed["sd-turbo"]["available"]
            assert listed["sd-turbo"]["detail"] == "needs ~6.7 GB, this host has 2.8 GB (its memory limit)"
            assert listed["flux-schnell-hosted"]["available"]
            # 2. Remove.
            mask = Image.new("L", astronaut.size, 0)
            mask.paste(255, (200, 150, 300, 250))
            removed = api.post(
                "/inpaint", json={"model": "opencv-telea", "image": _b64_png(astronaut), "mask": _b64_png(mask)}
            )
            assert removed.status_code == 200, removed.text
            out = np.asarray(Image.open(io.BytesIO(base64.b64decode(removed.json()["image"]))).convert("RGB"))
            assert out.shape == (512, 512, 3) and np.array_equal(out[:100], np.asarray(astronaut)[:100])
            # 3. Hosted Generate, made by the stand-in endpoint.
            made = api.post(
                "/generate",
                json={"model": "flux-schnell-hosted", "prompt": "a red fox", "seed": 5, "width": 256, "height": 128},
            )
            assert made.status_code == 200, made.text
            image = Image.open(io.BytesIO(base64.b64decode(made.json()["images"][0]))).convert("RGB")
            expected = Image.open(io.BytesIO(gradient_png("a red fox", 5, 256, 128))).convert("RGB")
            assert np.array_equal(np.asarray(image), np.asarray(expected))
            # 4. The model that does not fit is refused, not loaded; the app lives on.
            refused = api.post("/generate", json={"model": "sd-turbo", "prompt": "a red fox"})
            assert refused.status_code == 503
            assert "needs ~6.7 GB, this host has 2.8 GB" in refused.json()["error"]["message"]
            assert api.get("/health").json()["status"] == "ok"
            assert server.process.poll() is None
            assert _peak_rss_bytes(server.process.pid) < LIMIT_BYTES / 4, "the idle app and these runs fit comfortably"
    finally:
        endpoint.stop()
