"""The comparison grid: axes, cells, run order, the labelled picture, mask change, re-runs from the store."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from core.batch import RequestRun
from core.errors import BadParameterError
from core.jobs import JobQueue, JobState
from core.requests import GenerateRequest, InpaintRequest
from core.runner import Studio
from core.xy_grid import build_grid, grid_image, mask_change, parse_axis


@pytest.mark.parametrize(
    ("kind", "text", "values"),
    [
        ("steps", "20-40 (+10)", (20, 30, 40)),
        ("steps", "1-3, 8", (1, 2, 3, 8)),
        ("guidance", "0, 3.5, 7-8 (+0.5)", (0.0, 3.5, 7.0, 7.5, 8.0)),
        ("seed", "1, 2", (1, 2)),
        ("scheduler", "Euler a, DDIM", ("Euler a", "DDIM")),
        ("prompt_sr", "cat, dog, fox", ("cat", "dog", "fox")),
    ],
)
def test_axis_values_parse_lists_and_ranges(kind, text, values):
    assert parse_axis(kind, text).values == values


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("steps", "20, lots", "'lots' is not a whole number"),
        ("steps", "40-20", "not an increasing range"),
        ("steps", "1-100", "gives 100 values"),
        ("scheduler", "Heun", "not a scheduler"),
        ("seed", "1, 1", "listed twice"),
        ("seed", " , ", "at least one value"),
        ("colour", "red", "unknown axis"),
    ],
)
def test_bad_axis_values_are_refused_by_name(kind, text, message):
    with pytest.raises(BadParameterError, match=message):
        parse_axis(kind, text)


def test_cells_vary_both_axes_and_run_each_model_once():
    base = GenerateRequest(model="a", prompt="a cat on a mat", seed=1)
    grid = build_grid(base, parse_axis("model", ["a", "b"]), parse_axis("prompt_sr", "cat, dog, fox"))
    assert (grid.rows, grid.columns) == (3, 2)
    assert [(item.request.model, item.request.prompt) for item in grid.items[:4]] == [
        ("a", "a cat on a mat"),
        ("b", "a cat on a mat"),
        ("a", "a dog on a mat"),
        ("b", "a dog on a mat"),
    ]
    assert [item.request.model for item in grid.run_order()] == ["a", "a", "a", "b", "b", "b"]
    with pytest.raises(BadParameterError, match="'bird' is not in the prompt"):
        build_grid(base, parse_axis("prompt_sr", "bird, fish"))
    with pytest.raises(BadParameterError, match="strength only applies to inpainting"):
        build_grid(base, parse_axis("strength", "0.5, 1"))
    with pytest.raises(BadParameterError, match="different settings"):
        build_grid(base, parse_axis("seed", "1, 2"), parse_axis("seed", "3"))


def test_grid_image_has_a_label_band_and_every_cell():
    grid = build_grid(GenerateRequest(model="m", prompt="p"), parse_axis("seed", "1, 2"), parse_axis("steps", "3, 4"))
    colours = {"y0-x0": (255, 0, 0), "y0-x1": (0, 255, 0), "y1-x0": (0, 0, 255)}
    images = {name: Image.new("RGB", (64, 48), colour) for name, colour in colours.items()} | {"y1-x1": None}
    picture = np.asarray(grid_image(grid, images, cell_side=64))
    left = picture.shape[1] - 2 * 64
    top = picture.shape[0] - 2 * 48
    assert left > 0 and top > 0
    assert tuple(picture[top + 10, left + 10]) == (255, 0, 0)
    assert tuple(picture[top + 10, left + 64 + 10]) == (0, 255, 0)
    assert tuple(picture[top + 48 + 10, left + 10]) == (0, 0, 255)
    assert tuple(picture[top + 48 + 40, left + 64 + 40]) == (200, 200, 200)  # the missing cell
    assert (picture[:top, left:] < 100).any()  # the labels are drawn


def test_mask_change_measures_inside_and_confirms_nothing_outside(coffee):
    studio = Studio.from_settings()
    mask = Image.new("L", coffee.size, 0)
    mask.paste(255, (250, 150, 330, 230))
    request = InpaintRequest(model="opencv-telea", image=coffee, mask=mask)
    change = mask_change(request, studio.inpaint(request).images[0])
    assert change.outside_untouched and change.changed_outside == 0
    assert change.mean_inside > 1 and 0 < change.changed_inside <= 1
    tampered = studio.inpaint(request).images[0].copy()
    tampered.putpixel((5, 5), (0, 0, 0) if coffee.getpixel((5, 5)) != (0, 0, 0) else (255, 255, 255))
    assert mask_change(request, tampered).changed_outside == 1


def run_grid(queue: JobQueue, grid) -> tuple[RequestRun, float]:
    run = RequestRun(grid.run_order(), kind="grid")
    started = time.perf_counter()
    deadline = time.monotonic() + 120
    while not run.finished(queue):
        assert time.monotonic() < deadline
        run.submit_more(queue, "tab", in_flight=4)
        time.sleep(0.01)
    return run, time.perf_counter() - started


def test_a_2x2_grid_runs_through_the_queue_and_a_rerun_is_all_cache_hits(tiny_catalogue):
    base = GenerateRequest(model="tiny-sd", prompt="a red cube", width=64, height=64, num_inference_steps=1)
    grid = build_grid(base, parse_axis("seed", "1, 2"), parse_axis("steps", "1, 2"))
    queue = JobQueue(Studio.from_settings(), max_per_session=4)
    try:
        first, _ = run_grid(queue, grid)
        statuses = [item.final for item in first.items]
        assert all(status.state is JobState.DONE and not status.cached for status in statuses)
        again, _ = run_grid(queue, build_grid(base, parse_axis("seed", "1, 2"), parse_axis("steps", "1, 2")))
        assert all(item.final.cached for item in again.items)
    finally:
        queue.shutdown()
    assert {item.name: item.png for item in first.items} == {item.name: item.png for item in again.items}
    params = {item.name: (item.parameters["seed"], item.parameters["num_inference_steps"]) for item in first.items}
    assert params == {"y0-x0": (1, 1), "y0-x1": (2, 1), "y1-x0": (1, 2), "y1-x1": (2, 2)}
