"""Hostile load on the real server (`streamlit run Home.py`, loopback only), the figures of issue 13.

    python -m bench.hostile                  # all scenarios against this checkout (~2-3 minutes)
    python -m bench.hostile --repo DIR       # the same against another checkout (a "before" figure)
    python -m bench.hostile --only flood     # flood | cancel | cancel_early

- **flood**: one client sends 12 concurrent sync inpaints, each a 125 KB PNG that decodes to 48 MP
  (8000x6000 of zeros) with a tiny mask. Figures: the server's peak RSS (VmHWM) and its RSS after,
  the answers by status, and `/api/v1/health` latency (p50/p99/max) polled every 50 ms meanwhile.
  Goals: peak RSS under 2 GB with the default limits; health p99 <= 100 ms.
- **cancel**: a 139 KB request (8000x6000 zeros, every other row masked: minutes of cv2.inpaint) with
  the cost limit off, cancelled (DELETE) 3 s after it starts running. Figure: seconds from the DELETE
  until the job reads cancelled. Goal: <= 1 s.
- **cancel_early**: the same job cancelled 0.2 s after it starts running, while its 48 MP mask and crop
  are still being prepared. Goal: <= 1 s.

Writes bench/results/hostile.json (or `--out`). Take `flock /work/coord/heavy.lock` around it: the
"before" flood takes ~6 GB.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

REPOSITORY = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH, HEIGHT = 8000, 6000
FLOOD_REQUESTS = 12


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def grey_png(width: int, height: int, row: bytes | None = None, every_other: bytes | None = None) -> bytes:
    """A genuine 8-bit greyscale PNG compressed row by row: tiny on the wire, `width` x `height` decoded."""
    zero = b"\x00" + (row or bytes(width))
    other = b"\x00" + every_other if every_other is not None else zero
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(other if y % 2 == 0 else zero) for y in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def small_mask(box: tuple[int, int, int, int]) -> bytes:
    mask = Image.new("L", (80, 60), 0)
    mask.paste(255, box)
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- the server ----------------------------------------------------------------------------------------------


class Server:
    def __init__(self, repo: Path, workdir: Path, env: dict[str, str]):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {name: value for name, value in os.environ.items() if not name.startswith("STUDIO_")}
        environ.update({"STUDIO_CACHE_DIR": str(workdir / "cache"), "HF_HUB_OFFLINE": "1", **env})
        self.log = workdir / "server.log"
        command = [
            sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(self.port),
            "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(command, cwd=repo, env=environ, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start:\n" + self.log.read_text(errors="replace")[-2000:])
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)

    def memory(self) -> dict[str, float]:
        """The server's resident memory now and its peak so far, in MB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
        return {"rss_mb": round(fields["VmRSS"]), "peak_rss_mb": round(fields["VmHWM"])}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class HealthProbe:
    """Polls /api/v1/health every 50 ms on its own connection; latencies in ms."""

    def __init__(self, url: str):
        self.url, self.latencies, self.failures = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/api/v1/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies.append((time.perf_counter() - started) * 1000)
                else:
                    self.failures += 1
                self._stop.wait(0.05)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        ordered = sorted(self.latencies) or [float("nan")]
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return {
            "health_samples": len(self.latencies),
            "health_failures": self.failures,
            "health_p50_ms": round(statistics.median(ordered), 1),
            "health_p99_ms": round(p99, 1),
            "health_max_ms": round(ordered[-1], 1),
        }


# -- scenarios -----------------------------------------------------------------------------------------------


def flood(server: Server) -> dict:
    image = b64(grey_png(WIDTH, HEIGHT))
    bodies = [
        {"model": "opencv-telea", "image": image, "mask": b64(small_mask((4 + n, 4, 10 + n, 10))), "seed": 0}
        for n in range(FLOOD_REQUESTS)
    ]
    before = server.memory()
    probe = HealthProbe(server.url)
    time.sleep(0.5)

    def send(body: dict) -> str:
        try:
            with httpx.Client(timeout=300) as client:
                response = client.post(f"{server.url}/api/v1/inpaint", json=body)
            return str(response.status_code)
        except httpx.HTTPError as error:
            return type(error).__name__

    started = time.monotonic()
    with ThreadPoolExecutor(FLOOD_REQUESTS) as pool:
        answers = list(pool.map(send, bodies))
    elapsed = time.monotonic() - started
    health = probe.stop()
    time.sleep(1)
    after = server.memory()
    counts = {status: answers.count(status) for status in sorted(set(answers))}
    return {
        "request_bytes": len(json.dumps(bodies[0])),
        "answers": counts,
        "seconds": round(elapsed, 1),
        "rss_before_mb": before["rss_mb"],
        "peak_rss_mb": after["peak_rss_mb"],
        "rss_after_mb": after["rss_mb"],
        **health,
    }


def cancel(server: Server, after_s: float = 3.0) -> dict:
    mask = grey_png(WIDTH, HEIGHT, every_other=b"\xff" * WIDTH)
    body = {"task": "inpaint", "model": "opencv-telea", "image": b64(grey_png(WIDTH, HEIGHT)), "mask": b64(mask)}
    body.update(seed=0, mask_blur=0, mask_grow=0)
    with httpx.Client(timeout=120) as client:
        created = client.post(f"{server.url}/api/v1/jobs", json=body)
        if created.status_code != 202:
            return {"refused": created.status_code, "body": created.text[:300], "request_bytes": len(json.dumps(body))}
        job = created.json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"{server.url}/api/v1/jobs/{job}").json()["status"] != "running":
            if time.monotonic() > deadline:
                return {"error": "the job never started"}
            time.sleep(0.05)
        time.sleep(after_s)
        deleted_at = time.monotonic()
        client.delete(f"{server.url}/api/v1/jobs/{job}")
        limit = 60.0
        while True:
            status = client.get(f"{server.url}/api/v1/jobs/{job}").json()["status"]
            latency = time.monotonic() - deleted_at
            if status in ("cancelled", "done", "failed") or latency > limit:
                break
            time.sleep(0.02)
    return {
        "request_bytes": len(json.dumps(body)),
        "final_status": status,
        "cancel_latency_s": round(latency, 2) if latency <= limit else f"> {limit:g}",
    }


def cancel_early(server: Server) -> dict:
    """The same job cancelled 0.2 s after it starts running: while its 48 MP mask and crop are still being
    prepared (~1.5 s before the engine's first step)."""
    return cancel(server, after_s=0.2)


SCENARIOS = {
    "flood": (flood, {}),
    "cancel": (cancel, {"STUDIO_MAX_OPENCV_SECONDS": "0"}),
    "cancel_early": (cancel_early, {"STUDIO_MAX_OPENCV_SECONDS": "0"}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(REPOSITORY), help="the checkout whose server is measured")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--out", default=str(REPOSITORY / "bench" / "results" / "hostile.json"))
    arguments = parser.parse_args(argv)
    repo = Path(arguments.repo).resolve()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    figures: dict = {"commit": commit}
    for name in arguments.only or list(SCENARIOS):
        scenario, env = SCENARIOS[name]
        with tempfile.TemporaryDirectory(prefix="canvas-hostile-") as workdir:
            server = Server(repo, Path(workdir), env)
            try:
                figures[name] = scenario(server)
            finally:
                server.stop()
        print(name, json.dumps(figures[name]), flush=True)
    Path(arguments.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
