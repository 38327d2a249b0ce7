"""Real photos from scikit-image (bundled with it, so offline), upscaled where a bigger one is needed,
and masks of objects to remove.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

OBJECT_SIDE = 128  # the "same 128-px mask"

# Colour photos first; the greyscale ones are real photos too (converted to RGB, as uploads are).
COLOUR_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
)
GREY_PHOTOS = ("camera", "moon", "grass", "gravel", "brick", "clock", "coins", "cell")


def photo(name: str) -> Image.Image:
    """One scikit-image photo as PIL RGB ("motorcycle_left/right": the stereo pair)."""
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _disparity = data.stereo_motorcycle()
        pixels = left if name.endswith("left") else right
    else:
        pixels = getattr(data, name)()
    return Image.fromarray(pixels).convert("RGB")


def upscaled(image: Image.Image, long_side: int) -> Image.Image:
    """`image` scaled (Lanczos) so its longer side is `long_side`, keeping its aspect."""
    scale = long_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def variant(image: Image.Image, number: int) -> Image.Image:
    """`image` with its corner pixel set from `number`: another photo for the cache key, the same work.
    (How a timed run is made a miss for every engine: OpenCV and LaMa ignore seeds.)"""
    changed = image.copy()
    changed.putpixel((0, 0), (number % 256, number // 256 % 256, 7))
    return changed


def square(image: Image.Image, side: int) -> Image.Image:
    """The centre square of `image`, scaled to `side` x `side`."""
    return ImageOps.fit(image, (side, side), Image.Resampling.LANCZOS)


def disc_mask(size: tuple[int, int], centre: tuple[float, float], diameter: int = OBJECT_SIDE) -> Image.Image:
    """An "L" mask (255 = repaint) with one disc of `diameter` px at `centre` (fractions of the size):
    the same object in pixels whatever the image size."""
    mask = Image.new("L", size, 0)
    x, y = round(centre[0] * size[0]), round(centre[1] * size[1])
    radius = diameter // 2
    ImageDraw.Draw(mask).ellipse((x - radius, y - radius, x + radius - 1, y + radius - 1), fill=255)
    return mask


def object_mask(size: tuple[int, int], seed: int) -> Image.Image:
    """A user-like mask: an object about 128 px across and a brush stroke, placed from `seed`."""
    chooser = random.Random(seed)
    width, height = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    margin = OBJECT_SIDE
    x = chooser.randrange(margin, width - margin)
    y = chooser.randrange(margin, height - margin)
    draw.ellipse((x - 64, y - 48, x + 64, y + 48), fill=255)
    start = (chooser.randrange(margin, width - margin), chooser.randrange(margin, height - margin))
    end = (min(width - margin, start[0] + chooser.randrange(80, 240)), min(height - margin, start[1] + chooser.randrange(-60, 60)))
    draw.line((start, end), fill=255, width=16)
    return mask


@dataclass(frozen=True)
class PhotoFolders:
    images: Path
    masks: Path
    count: int
    sizes: tuple[tuple[int, int], ...]


def write_photo_folders(root: Path, count: int, long_side: int) -> PhotoFolders:
    """`count` real photos (JPEG, as cameras write them) in root/images and a mask for each (PNG,
    same file stem) in root/masks. Past the 17 distinct photos, mirrored ones follow."""
    names = [*COLOUR_PHOTOS, *GREY_PHOTOS]
    images_dir, masks_dir = root / "images", root / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    sizes = []
    for index in range(count):
        name = names[index % len(names)]
        image = upscaled(photo(name), long_side)
        if index >= len(names):
            image = ImageOps.mirror(image)
        stem = f"{index:02d}-{name}"
        image.save(images_dir / f"{stem}.jpg", quality=92)
        object_mask(image.size, seed=index).save(masks_dir / f"{stem}.png")
        sizes.append(image.size)
    return PhotoFolders(images_dir, masks_dir, count, tuple(sizes))
