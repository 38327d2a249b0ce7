"""The bundled sample for the offline "try it" path: a photo with a watermark to remove.

`assets/sample.jpg` is NASA's portrait of astronaut Eileen Collins (public domain; the same
picture scikit-image ships as `data.astronaut()`). The watermark is drawn here, and its mask is
exactly the pixels it covers, so the OpenCV engine has something real to remove.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SAMPLE_PHOTO = Path(__file__).with_name("assets") / "sample.jpg"
WATERMARK = "SAMPLE"


@lru_cache(maxsize=1)
def watermarked_sample() -> tuple[Image.Image, Image.Image]:
    """(the photo with a watermark, its mask: "L", 255 where the watermark is)."""
    with Image.open(SAMPLE_PHOTO) as opened:
        photo = opened.convert("RGB")
    mask = Image.new("L", photo.size, 0)
    draw = ImageDraw.Draw(mask)
    font = ImageFont.load_default(size=photo.width // 7)
    left, top, right, bottom = draw.textbbox((0, 0), WATERMARK, font=font, stroke_width=2)
    x = (photo.width - (right - left)) // 2 - left
    y = round(photo.height * 0.62) - top
    draw.text((x, y), WATERMARK, fill=255, font=font, stroke_width=2, stroke_fill=255)
    white = Image.new("RGB", photo.size, (255, 255, 255))
    marked = Image.composite(white, photo, mask.point(lambda value: value * 3 // 4))
    return marked, mask


__all__ = ["SAMPLE_PHOTO", "WATERMARK", "watermarked_sample"]
