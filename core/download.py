"""Fetch a catalogue model's weights into the Hugging Face cache (`python -m core download ID`)."""

from __future__ import annotations

import logging
from pathlib import Path

from core.catalogue import ModelSpec, hub_offline
from core.errors import ModelUnavailableError

log = logging.getLogger(__name__)


def download_model(spec: ModelSpec) -> str:
    """Download what `spec` needs and say what happened, in one line."""
    if not spec.kind.has_weights:
        return "nothing to download"
    if spec.path:
        return "uses local files; nothing to download"
    location = spec.hub_location
    if location is None:
        raise ModelUnavailableError(
            "only Hub models and huggingface.co file URLs can be downloaded; set 'path' instead"
        )
    if hub_offline():
        raise ModelUnavailableError("HF_HUB_OFFLINE is set; unset it on a machine with internet access to download")
    repo, revision, filename = location
    try:
        if filename:
            from huggingface_hub import hf_hub_download, snapshot_download

            hf_hub_download(repo, filename, revision=revision)
            if spec.options.get("decoder"):  # SAM: the prompt decoder beside the image encoder
                hf_hub_download(repo, spec.options["decoder"], revision=revision)
            config = spec.options.get("config")
            if config and not Path(config).expanduser().exists():  # a single-file checkpoint's pipeline config
                snapshot_download(config, allow_patterns=["*.json", "*.txt"])
        else:
            _download_pipeline(spec)
        if spec.tiny_vae and spec.tiny_vae_folder() is None:  # the fast decoder comes with its model
            from huggingface_hub import snapshot_download

            repo = spec.tiny_vae
            snapshot_download(spec.tiny_vae, allow_patterns=["config.json", "*.safetensors"])
    except ModelUnavailableError:
        raise
    except Exception as error:  # network, auth, missing repo: one line, no path or token
        log.debug("download of %s failed", spec.id, exc_info=True)
        raise ModelUnavailableError(f"could not download {repo}: {_why(error)}") from None
    return "downloaded into the Hugging Face cache"


def _why(error: Exception) -> str:
    from huggingface_hub import errors

    # Most specific first: GatedRepoError is a RepositoryNotFoundError, and so on.
    reasons = (
        (errors.GatedRepoError, "the model is gated: accept its licence on its Hub page and set HF_TOKEN"),
        (errors.RepositoryNotFoundError, "no such repository on the Hub (or it is private: set HF_TOKEN)"),
        (errors.RevisionNotFoundError, "no such revision in the repository"),
        (errors.RemoteEntryNotFoundError, "the repository has no such file"),
        (errors.LocalEntryNotFoundError, "the Hub could not be reached; check the internet connection"),
        (OSError, "the Hub could not be reached, or the disk is full"),
    )
    return next((reason for kind, reason in reasons if isinstance(error, kind)), type(error).__name__)


def _download_pipeline(spec: ModelSpec) -> None:
    import torch
    from diffusers import DiffusionPipeline

    from core.devices import pick_device, pick_dtype

    variant = spec.options.get("variant") if pick_dtype(pick_device()) == torch.float16 else None
    DiffusionPipeline.download(spec.hub, revision=spec.revision, variant=variant, use_safetensors=True)
