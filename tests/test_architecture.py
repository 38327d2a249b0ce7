"""Promises about the shape of the code that a test can keep."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STREAMLIT_IMPORT = re.compile(r"^\s*(import streamlit|from streamlit)", re.MULTILINE)


def test_only_core_ui_imports_streamlit():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "core").rglob("*.py")
        if STREAMLIT_IMPORT.search(path.read_text())
        and path.relative_to(ROOT).parts[1] != "ui"
    ]
    assert offenders == []


def test_core_entry_points_import_without_streamlit_or_torch():
    """The CLI, the API and the runner start fast: no Streamlit runtime, no model stack until needed."""
    code = (
        "import sys, core.runner, core.api, core.cli, core.jobs, core.services\n"
        "print(sorted(m for m in ('streamlit', 'torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_pages_stay_thin():
    """Pages wire widgets to core; the image logic lives in core (no PIL/numpy/cv2 work in pages)."""
    for page in (ROOT / "pages").glob("*.py"):
        source = page.read_text()
        assert not re.search(r"^\s*(import (numpy|cv2)|from PIL)", source, re.MULTILINE), page.name


def test_cloud_requirements_differ_from_the_local_ones_only_in_the_cpu_torch_wheel():
    def packages(name: str) -> dict[str, str]:
        lines = [line.strip() for line in (ROOT / name).read_text().splitlines()]
        return {re.split(r"[=@ ]", line)[0]: line for line in lines if line and not line.startswith("#")}

    local, cloud = packages("requirements.txt"), packages("requirements-cloud.txt")
    assert local.keys() == cloud.keys()
    assert {name for name in local if local[name] != cloud[name]} == {"torch"}
    assert "whl/cpu/torch-2.13.0" in cloud["torch"]
