"""The child process of `core.engines.opencv`: one `cv2.inpaint` call that the parent can kill.

Run by path (`python -I opencv_child.py`), so it imports only cv2 and numpy and starts fast. Reads one
JSON header line, then the image and mask bytes, from stdin; writes the filled image's bytes to stdout.
"""

import json
import sys

import cv2
import numpy as np


def main() -> None:
    source = sys.stdin.buffer
    job = json.loads(source.readline())
    height, width, channels = job["height"], job["width"], job["channels"]
    pixels = np.frombuffer(source.read(height * width * channels), np.uint8).reshape(height, width, channels)
    mask = np.frombuffer(source.read(height * width), np.uint8).reshape(height, width)
    filled = cv2.inpaint(pixels, mask, job["radius"], job["method"])
    sys.stdout.buffer.write(np.ascontiguousarray(filled).data)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
