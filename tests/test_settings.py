"""Operator settings (STUDIO_*) and secrets: read once, checked, and a bad one is said in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from core import secrets as core_secrets
from core import services
from core.api import API_PREFIX, api_routes
from core.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_derived_values():
    settings = Settings.from_env({"STUDIO_CACHE_MAX_MB": "10", "STUDIO_MAX_IMAGE_SIDE": "4096", "STUDIO_DEVICE": " "})
    assert settings.cache_max_bytes == 10 * 1024 * 1024
    assert settings.image_limits.max_side == 4096 and settings.image_limits.max_pixels == 48_000_000
    assert settings.device is None  # blank = unset
    assert Settings.from_env({"STUDIO_CACHE_DIR": "~/studio"}).cache_dir == Path("~/studio").expanduser()


# Text settings: what a validator refuses, or None where any text is a usable value (a path, a secret).
TEXT_SETTINGS = {
    "device": "tpu",
    "queue_url": "http://queue.example",
    "cache_dir": None,
    "models_file": None,
    "api_key": None,
    "page_password": None,
}


def _refusable_values(name: str) -> list[str]:
    """Values `name` must refuse, from its type and bounds (a new setting is covered without editing this)."""
    field = Settings.model_fields[name]
    if name in TEXT_SETTINGS:
        return [] if TEXT_SETTINGS[name] is None else [TEXT_SETTINGS[name]]
    kind = field.annotation if field.annotation in (int, float, bool) else None
    bounds = list(field.metadata) + [item for arg in typing.get_args(field.annotation) for item in getattr(arg, "__metadata__", ())]
    if kind is None:  # X | None, Annotated[X, ...]
        base = [arg for arg in typing.get_args(field.annotation) if arg is not type(None)]
        kind = typing.get_args(base[0])[0] if typing.get_origin(base[0]) is typing.Annotated else base[0]
    assert kind in (int, float, bool), f"{name}: add it to TEXT_SETTINGS (what does it refuse?)"
    if kind is bool:
        return ["maybe"]
    refused = ["lots", "1.5"] if kind is int else ["soon", "nan", "inf"]
    for bound in bounds:
        if getattr(bound, "ge", None) is not None:
            refused.append(str(bound.ge - 1))
        if getattr(bound, "gt", None) is not None:
            refused.append(str(bound.gt))
    return refused


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_refuses_a_bad_value_in_one_line_naming_it(name):
    variable = "STUDIO_" + name.upper()
    for value in _refusable_values(name):
        with pytest.raises(SettingsError) as raised:
            Settings.from_env({variable: value})
        message = str(raised.value)
        assert message.startswith(f"{variable} must be ") and message.endswith(f"got {value!r}"), message
        assert "\n" not in message and Settings.model_fields[name].description in message
    assert Settings.model_fields[name].description, "the one line says what the setting is for"
    usable = {"device": "cuda:1", "queue_url": "redis://localhost:6379/0"}.get(name, "/some/where")
    if name in TEXT_SETTINGS:  # and a usable value is taken
        Settings.from_env({variable: usable})


def test_the_readme_lists_every_setting():
    table = (ROOT / "README.md").read_text().partition("## Environment variables")[2]
    assert [name for name in Settings.model_fields if f"`STUDIO_{name.upper()}`" not in table] == []


def test_switches_read_the_usual_spellings():
    for spelling, meaning in [("0", False), ("false", False), ("off", False), ("no", False), ("1", True), ("ON", True)]:
        assert Settings.from_env({"STUDIO_OPENVINO": spelling}).openvino is meaning
    assert Settings.from_env({}).safety_checker is True


def test_a_given_environment_is_all_there_is(monkeypatch):
    """`from_env(mapping)` reads nothing else: the process's variables do not leak in (tests and the
    memory budget pass a mapping)."""
    monkeypatch.setenv("STUDIO_MAX_QUEUE", "7")
    assert Settings.from_env({}).max_queue == 32
    assert Settings.from_env().max_queue == 7


def test_secrets_do_not_show_in_the_settings():
    settings = Settings.from_env({"STUDIO_API_KEY": "s3cret", "STUDIO_PAGE_PASSWORD": "open sesame"})
    assert "s3cret" not in repr(settings) and "open sesame" not in repr(settings)
    assert settings.api_key.get_secret_value() == "s3cret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_bad_setting_stops_the_app_before_it_serves(tmp_path):
    environment = {**os.environ, "STUDIO_MAX_BODY_MB": "lots", "STUDIO_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.headless", "true"]
    command += ["--server.port", str(_free_port())]
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    errors = [line for line in (completed.stdout + completed.stderr).splitlines() if "STUDIO_MAX_BODY_MB" in line]
    assert errors == ["error: STUDIO_MAX_BODY_MB must be a whole number (largest API request body), got 'lots'"]
    assert "Traceback" not in completed.stderr


@pytest.fixture
def secrets_folder(tmp_path, monkeypatch, fresh_app):
    """A working directory whose .streamlit/secrets.toml the test writes; export_secrets runs afresh."""
    from core.ui.state import export_secrets

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STUDIO_API_KEY", raising=False)
    monkeypatch.setattr(core_secrets, "_unreadable", None)
    (tmp_path / ".streamlit").mkdir()
    yield tmp_path / ".streamlit" / "secrets.toml"
    export_secrets.clear()
    os.environ.pop("STUDIO_API_KEY", None)


def _api_after_start() -> TestClient:
    from core.ui.state import export_secrets

    export_secrets()  # what Home.py's start-up does
    services.reset()
    return TestClient(Starlette(routes=api_routes()))


def test_an_unreadable_secrets_file_keeps_the_api_closed(secrets_folder):
    secrets_folder.write_text('api_key = "s3cret\n')  # an unterminated string: the key is in there, unread
    client = _api_after_start()
    refused = client.get(f"{API_PREFIX}/models")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "misconfigured"
    assert "secrets.toml" in refused.json()["error"]["message"] and "s3cret" not in refused.text
    assert client.post(f"{API_PREFIX}/generate", json={"model": "sd-turbo", "prompt": "x"}).status_code == 503
    assert client.get(f"{API_PREFIX}/health").status_code == 200  # liveness still answers


def test_no_secrets_file_is_fine(secrets_folder):
    assert _api_after_start().get(f"{API_PREFIX}/models").status_code == 200


READABLE_SECRETS = """
from starlette.applications import Starlette
from starlette.testclient import TestClient
from core.api import API_PREFIX, api_routes
from core.ui.state import export_secrets
export_secrets()
client = TestClient(Starlette(routes=api_routes()))
print(client.get(API_PREFIX + "/models").status_code)
print(client.get(API_PREFIX + "/models", headers={"Authorization": "Bearer s3cret"}).status_code)
"""


def test_a_readable_secrets_file_sets_the_key(tmp_path):
    # In a process of its own: Streamlit keeps a secrets file it read for the life of the process.
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('api_key = "s3cret"\n')
    environment = {key: value for key, value in os.environ.items() if key != "STUDIO_API_KEY"}
    environment["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-c", READABLE_SECRETS]
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.stdout.split() == ["401", "200"], completed.stderr
