"""The mask editor's strokes -> a full-resolution mask: round brushes, filled rectangles, the eraser in
order, and malformed strokes refused before any pixel is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadMaskError
from core.masks.strokes import MAX_STROKES, mask_from_strokes


def test_a_brush_stroke_is_a_round_capped_band_of_its_diameter():
    mask = np.asarray(mask_from_strokes([{"tool": "brush", "size": 20, "points": [[50, 50], [150, 50]]}], (200, 100)))
    assert set(np.unique(mask)) == {0, 255}
    assert mask[50, 50:151].all() and mask[41:60, 100].all()  # the band, 20 px tall
    assert not mask[35, 100] and not mask[65, 100]
    assert mask[50, 41] and not mask[50, 35]  # a round cap reaches 10 px past the end, no further


def test_a_rectangle_is_filled_and_the_eraser_removes_what_was_painted_before_it():
    strokes = [
        {"tool": "rect", "size": 0, "points": [[10, 10], [90, 60]]},
        {"tool": "eraser", "size": 10, "points": [[50, 0], [50, 100]]},
        {"tool": "brush", "size": 4, "points": [[50, 30]]},  # painted after the eraser: stays
    ]
    mask = np.asarray(mask_from_strokes(strokes, (100, 80)))
    assert mask[10:60, 10:40].all() and mask[10:60, 60:90].all()  # filled, not a frame
    assert not mask[:, 46:54][np.r_[0:26, 33:80]].any()  # the eraser's band
    assert mask[30, 50]
    assert not mask[60:, :].any() and not mask[:, 90:].any()


def test_a_stroke_at_the_right_edge_paints_the_last_column():
    mask = np.asarray(mask_from_strokes([{"tool": "brush", "size": 6, "points": [[3999, 10], [3999, 50]]}], (4000, 60)))
    assert mask[10:50, -1].all() and mask[10:50, -3].all()


@pytest.mark.parametrize(
    "strokes",
    [
        {"objects": []},
        [{"tool": "fill", "size": 3, "points": [[1, 1]]}],
        [{"tool": "brush", "size": float("nan"), "points": [[1, 1]]}],
        [{"tool": "brush", "size": 3, "points": [[1e12, 1]]}],
        [{"tool": "brush", "size": 3, "points": []}],
        [{"tool": "rect", "size": 0, "points": [[1, 1]]}],
        [{"tool": "brush", "size": 3, "points": "M 0 0 L 1 1"}],
        [{"tool": "brush", "size": 3, "points": [[1, 1]]}] * (MAX_STROKES + 1),
    ],
)
def test_malformed_strokes_are_refused_with_a_message(strokes):
    with pytest.raises(BadMaskError) as refused:
        mask_from_strokes(strokes, (64, 64))
    assert "clear" in refused.value.message
