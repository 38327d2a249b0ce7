"""`python -m core download`: what it says when it cannot download."""

from __future__ import annotations

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from core import download
from core.catalogue import Catalogue
from core.errors import ModelUnavailableError


def test_nothing_to_download_for_offline_engines():
    catalogue = Catalogue.load()
    assert download.download_model(catalogue.get("opencv-ns")) == "nothing to download"


def test_offline_mode_is_refused_before_any_request(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        download.download_model(Catalogue.load().get("lama"))


@pytest.mark.parametrize(
    "error, said",
    [
        (LocalEntryNotFoundError("no connection"), "the Hub could not be reached; check the internet connection"),
        (ValueError("odd"), "ValueError"),
    ],
)
def test_a_failed_download_is_one_line_that_says_why(monkeypatch, error, said):
    import huggingface_hub

    def failing_download(*args, **kwargs):
        raise error

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(ModelUnavailableError) as raised:
        download.download_model(Catalogue.load().get("lama"))
    message = str(raised.value)
    assert message == f"could not download Carve/LaMa-ONNX: {said}" and "\n" not in message
