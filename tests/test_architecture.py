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


def test_requirements_take_torch_from_the_cpu_wheel_index_and_pin_every_package():
    """Community Cloud deploys requirements.txt as it is: torch must come from the CPU index there."""
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    packages = [line for line in lines if not line.startswith("--")]
    assert "torch==2.13.0" in packages
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.+-]*", line) for line in packages), packages
    assert not [line for line in packages if line.lower().startswith(("nvidia", "triton"))]


ENGINE_NAMES = "opencv|diffusers|lama|hosted"
ENGINE_KIND_COMPARISONS = re.compile(
    rf"""\.engine\s*(==|!=|\bin\b|\bnot in\b)"""  # spec.engine == ..., spec.engine in (...)
    rf"""|(==|!=|\bin\b)\s*[\(\[{{]?\s*["']({ENGINE_NAMES})["']"""  # ... == "diffusers", ... in ("opencv", ...)
    rf"""|["']({ENGINE_NAMES})-?["']\s*(==|!=|\bin\b)"""  # "hosted" == ...
    rf"""|startswith\(\s*["']({ENGINE_NAMES})"""  # parameters["engine"].startswith("diffusers")
)


def test_engine_kinds_are_compared_only_in_the_registry():
    """What an engine can do and reads is declared once, in the registry (core/engines/__init__.py); everything
    outside core/engines/ asks the declaration (`spec.kind`) instead of comparing engine names."""
    engines = ROOT / "core" / "engines"
    sources = [*(ROOT / "core").rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "Home.py"]
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        if engines not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ENGINE_KIND_COMPARISONS.search(line)
    ]
    assert offenders == []


def test_the_engine_kind_check_catches_what_it_is_for():
    caught = [
        'if spec.engine == "diffusers":',
        'if spec.engine in ("opencv", "lama"):',
        "if self.engine != 'hosted':",
        'clip = parameters.get("engine", "").startswith("diffusers-")',
        'if kind == "lama":',
    ]
    allowed = ['engine="diffusers",', 'name = "opencv-telea"', "if spec.kind.generative:"]
    assert all(ENGINE_KIND_COMPARISONS.search(line) for line in caught)
    assert not any(ENGINE_KIND_COMPARISONS.search(line) for line in allowed)


ENVIRONMENT_READ = re.compile(r"\b(os\.environ|environ\.get|getenv)\b")
STUDIO_NAME = re.compile(r"""^([A-Z_]+)\s*=\s*["']STUDIO_""", re.MULTILINE)


def test_studio_variables_are_read_only_by_the_settings():
    """Every `STUDIO_*` variable is a field of core/settings.py (type, default, bound, meaning in one place):
    no other module reads one from the environment, by its name or through a constant holding it."""
    sources = [*(ROOT / "core").rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "Home.py"]
    offenders = []
    for path in sources:
        if path == ROOT / "core" / "settings.py":
            continue
        text = path.read_text()
        names = ["STUDIO_", *STUDIO_NAME.findall(text)]
        for number, line in enumerate(text.splitlines(), 1):
            if ENVIRONMENT_READ.search(line) and any(name in line for name in names):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
