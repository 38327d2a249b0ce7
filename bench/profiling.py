"""Where the time of one call goes: cProfile's cumulative time of named core functions.

cProfile (standard library) is enough here: the questions are "how much of this run is PNG
encoding, pasting, hashing, the model", i.e. the cumulative time of a handful of known functions.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable, Mapping

# label -> (path suffix of the module, function names); parts may nest (the model includes torch).
INPAINT_PARTS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "whole run (prepare + run)": ("core/runner.py", ("prepare", "run")),
    "hash image and mask (prepare)": ("core/keys.py", ("image_digest",)),
    "mask: threshold, grow, feather, box": ("core/", ("threshold", "grow", "feather", "bounding_box", "crop_box")),
    "model (engine.inpaint on the crop)": ("core/engines/", ("inpaint",)),
    "paste back into the full image": ("core/region.py", ("blend_region",)),
    "encode PNG with parameters": ("core/provenance.py", ("encode_png",)),
    "store put": ("core/store.py", ("put",)),
}


def where_time_goes(call: Callable[[], object], parts: Mapping[str, tuple[str, tuple[str, ...]]]) -> dict[str, float]:
    """Milliseconds spent in (and under) each part during one `call()`, from cProfile."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        call()
    finally:
        profile.disable()
    stats = pstats.Stats(profile).stats  # (file, line, function) -> (calls, primitive, own, cumulative, callers)
    spent = {}
    for label, (path_part, functions) in parts.items():
        spent[label] = 1000 * sum(
            cumulative
            for (filename, _line, function), (_calls, _primitive, _own, cumulative, _callers) in stats.items()
            if path_part in filename.replace("\\", "/") and function in functions
        )
    return spent
