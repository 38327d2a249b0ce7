"""Download buttons for result PNGs (they carry their parameters) and for ZIPs of results."""

from __future__ import annotations

import streamlit as st

from core.runner import Result


def result_file_name(result: Result, index: int = 0, *, prefix: str = "canvas-studio") -> str:
    """e.g. canvas-studio-txt2img-sd-turbo-1235.png: task, model and the seed this one image was made from."""
    parameters = result.parameters
    return f"{prefix}-{parameters.get('task', 'image')}-{parameters.get('model', 'model')}-{result.seed_of(index)}.png"


def png_download(png: bytes, file_name: str, *, key: str, label: str = "Download PNG") -> None:
    st.download_button(
        label,
        data=png,
        file_name=file_name,
        mime="image/png",
        key=key,
        icon=":material/download:",
        on_click="ignore",  # downloading must not rerun the page
        help="A PNG with every parameter embedded (python -m core info FILE shows them).",
    )


def zip_download(data: bytes, file_name: str, *, key: str, label: str) -> None:
    st.download_button(
        label,
        data=data,
        file_name=file_name,
        mime="application/zip",
        key=key,
        icon=":material/folder_zip:",
        on_click="ignore",
    )


__all__ = ["png_download", "result_file_name", "zip_download"]
