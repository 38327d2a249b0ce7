"""Shared fixtures: real photos (scikit-image), an isolated cache per test, fresh services and pages."""

from __future__ import annotations

import os

# Tiny models on a shared 2-core machine: one torch thread per process is ~10x steadier than two.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Converting a UNet to OpenVINO costs ~10 CPU-seconds even for a tiny one, and every test has its own
# cache folder: the suite runs PyTorch, and tests/test_openvino.py turns OpenVINO on around one conversion.
os.environ.setdefault("STUDIO_OPENVINO", "0")

import importlib.util

import pytest
from PIL import Image

# TEMPORARY while tests/tiny_pipelines.py is being written (lead will make this unconditional).
pytest_plugins = ["tests.tiny_pipelines"] if importlib.util.find_spec("tests.tiny_pipelines") else []


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # 512x512 RGB photo


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())  # 600x400 RGB photo


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own result store unless it sets STUDIO_CACHE_DIR itself."""
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fresh_services():
    """The process-wide studio and queue, rebuilt from the environment the test set (and dropped after it)."""
    from core import services

    services.reset()
    yield
    services.reset()  # also cancels whatever the test left running


@pytest.fixture
def make_api():
    """`make_api()`: a TestClient of exactly what Home.py mounts, over services rebuilt from the environment."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from core import services
    from core.api import api_routes

    def make(**options) -> TestClient:
        services.reset()
        return TestClient(Starlette(routes=api_routes()), **options)

    yield make
    services.reset()  # cancels whatever a test left running


@pytest.fixture
def fresh_app(fresh_services):
    """Pages read the process-wide services through Streamlit's caches: start those afresh too."""
    import streamlit as st  # here, so that tests without pages never load Streamlit

    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()
