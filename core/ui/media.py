"""Pictures for our own components: served from Streamlit's media store (as st.image serves them), so a
rerun sends a short URL, not the picture again; a data: URL where there is no server (AppTest)."""

from __future__ import annotations

import base64
import io

import streamlit as st
from PIL import Image


def encoded(image: Image.Image, max_side: int, *, quality: int = 90) -> bytes:
    """`image` at most `max_side` a side, as JPEG (or PNG when it has transparency)."""
    shown = image.copy()
    shown.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if shown.mode == "RGBA":
        shown.save(buffer, format="PNG")
    else:
        shown.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def media_url(data: bytes, *, coordinates: str) -> str:
    """A URL the browser can load `data` (JPEG or PNG bytes) from while the page shows it."""
    mimetype = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    try:
        from streamlit.runtime import Runtime

        url = Runtime.instance().media_file_mgr.add(data, mimetype, coordinates)
    except Exception:  # no runtime (AppTest, bare mode)
        return f"data:{mimetype};base64," + base64.b64encode(data).decode("ascii")
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}{url}" if base else url


__all__ = ["encoded", "media_url"]
