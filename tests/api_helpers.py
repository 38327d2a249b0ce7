"""Waiting on a REST API job as a client does: polling GET /jobs/{id}."""

from __future__ import annotations

import time

from starlette.testclient import TestClient

from core.api import API_PREFIX

PATIENCE_S = 180  # generous: the machine is shared, and a deadline here only bounds a hang


def wait_for_status(client: TestClient, job_id: str, states: set[str], timeout_s: float = PATIENCE_S) -> dict:
    """The job's status once it is in one of `states`."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get(f"{API_PREFIX}/jobs/{job_id}").json()
        if status["status"] in states:
            return status
        assert time.monotonic() < deadline, f"job stayed {status}"
        time.sleep(0.05)


def wait_for_a_step(client: TestClient, job_id: str, timeout_s: float = PATIENCE_S) -> dict:
    """Until the job has made a step, so it is past loading and cancels at its next step."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get(f"{API_PREFIX}/jobs/{job_id}").json()
        if status["status"] == "running" and status["step"] >= 1:
            return status
        assert status["status"] in ("queued", "running") and time.monotonic() < deadline, status
        time.sleep(0.05)
