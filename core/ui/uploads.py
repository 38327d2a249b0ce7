"""Image uploads: decoded and checked by core.images, refused with the core's own message."""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st
from PIL import Image

from core.errors import BadImageError
from core.images import load_image
from core.keys import digest_bytes
from core.settings import ImageLimits

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp"]


@dataclass(frozen=True)
class LoadedImage:
    name: str  # the file name the user gave (never a path on this machine)
    data: bytes
    digest: str
    image: Image.Image = field(compare=False, repr=False)  # RGB, or RGBA when really transparent


def load_named(name: str, data: bytes, limits: ImageLimits) -> LoadedImage:
    """Raises BadImageError with the core's message."""
    return LoadedImage(name, data, digest_bytes(data), load_image(data, limits))


def image_uploader(label: str, *, key: str, limits: ImageLimits, help: str | None = None) -> LoadedImage | None:
    """A one-file uploader. A refused file shows the core's message and gives None. The decoded
    image is kept per upload, so reruns do not decode it again."""
    uploaded = st.file_uploader(label, type=IMAGE_TYPES, key=key, help=help)
    if uploaded is None:
        return None
    memo_key = f"{key}.decoded"
    memo = st.session_state.get(memo_key)
    if memo is not None and memo[0] == uploaded.file_id:
        loaded = memo[1]
    else:
        try:
            loaded = load_named(uploaded.name, uploaded.getvalue(), limits)
        except BadImageError as error:
            loaded = error
        st.session_state[memo_key] = (uploaded.file_id, loaded)
    if isinstance(loaded, BadImageError):
        st.error(f"{uploaded.name}: {loaded.message}", icon=":material/broken_image:")
        return None
    return loaded


__all__ = ["IMAGE_TYPES", "LoadedImage", "image_uploader", "load_named"]
