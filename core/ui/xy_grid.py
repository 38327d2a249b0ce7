"""The Compare page's X/Y grid: one request varied along up to two axes, cells through the queue.

Cells run as one queue group ordered so each model loads once; cells already in the result store
are done at once. Each cell shows its time (or that it came from the store); for inpainting, how
much it changed inside the mask and that nothing changed outside. The grid downloads as one
labelled PNG (carrying the base settings and the axes) and as a ZIP of the single images.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import streamlit as st
from PIL import Image

from core.batch import ItemView, RequestRun
from core.provenance import encode_png
from core.requests import SCHEDULERS, GenerateRequest, InpaintRequest, random_seed
from core.ui import state
from core.ui.downloads import png_download, zip_download
from core.ui.errors import shown_errors
from core.ui.jobs import group_panel
from core.ui.mask_editor import MaskOptions, mask_editor, mask_preview
from core.ui.models import model_picker, split_by_availability
from core.ui.sampling import sampling_controls
from core.ui.sizes import presets
from core.ui.uploads import image_uploader
from core.xy_grid import AXES, Grid, build_grid, grid_image, mask_change, parse_axis

TEXT, EDIT = "Text to image", "Inpainting"
NONE = "none"
EXAMPLES = {
    "seed": "1, 2, 3",
    "steps": "10-30 (+10)",
    "guidance": "3, 5.5, 8",
    "strength": "0.5, 0.75, 1",
    "prompt_sr": "red, blue, green  (the first word is searched in the prompt)",
}


def xy_grid_page(*, key: str = "grid") -> None:
    settings, studio = state.settings(), state.studio()
    task = st.radio("Task", [TEXT, EDIT], horizontal=True, key=f"{key}.task")
    core_task = "txt2img" if task == TEXT else "inpaint"
    spec = model_picker(studio.catalogue, core_task, key=f"{key}.model.{core_task}", label="Base model")
    if spec is None:
        return
    prompt = st.text_area("Prompt", key=f"{key}.prompt", height=80)
    negative = st.text_input("Negative prompt", key=f"{key}.negative")
    size = None
    if core_task == "txt2img":
        sizes = presets(spec)
        size = sizes[st.selectbox("Size", list(sizes), key=f"{key}.size.{spec.id}")]
    with st.expander("Base settings"):
        sampling = sampling_controls(spec, key=key, strength=core_task == "inpaint", scheduler=True)
    source = drawing = None
    if core_task == "inpaint":
        source = image_uploader("Photo", key=f"{key}.upload", limits=settings.image_limits)
        if source is not None:
            canvas_column, preview_column = st.columns([3, 2], gap="large")
            with canvas_column:
                drawing = mask_editor(source.image, source.digest, key=key)
            with preview_column:
                mask_preview(source.image, drawing, MaskOptions(), key=key)

    x_column, y_column = st.columns(2)
    with x_column:
        x_kind, x_values = _axis_input(f"{key}.x", "X axis", core_task, studio.catalogue, optional=False)
    with y_column:
        y_kind, y_values = _axis_input(f"{key}.y", "Y axis", core_task, studio.catalogue, optional=True)

    ready = core_task == "txt2img" or (drawing is not None and drawing.mask.getbbox() is not None)
    if st.button("Run grid", type="primary", icon=":material/grid_on:", key=f"{key}.start", disabled=not ready):
        with shown_errors():
            fields = sampling.request_fields(strength=core_task == "inpaint")
            fields["seed"] = random_seed() if fields["seed"] is None else fields["seed"]  # one draw for every cell
            if core_task == "txt2img":
                base = GenerateRequest(
                    model=spec.id, prompt=prompt, negative_prompt=negative, width=size[0], height=size[1], **fields
                )
            else:
                base = InpaintRequest(
                    model=spec.id,
                    image=source.image,
                    mask=drawing.mask,
                    prompt=prompt,
                    negative_prompt=negative,
                    **fields,
                )
            x = parse_axis(x_kind, x_values)
            y = None if y_kind == NONE else parse_axis(y_kind, y_values)
            grid = build_grid(base, x, y)
            for item in grid.items:  # every cell is checked before any is queued: all run, or none
                studio.prepare(item.request)
            st.session_state[f"{key}.run"] = (grid, RequestRun(grid.run_order(), kind="grid"))
            st.session_state.pop(f"{key}.changes", None)
            st.rerun()

    current = st.session_state.get(f"{key}.run")
    if current is None:
        return
    grid, run = current
    queue, session = state.queue(), state.session_id()

    def poll() -> list[ItemView]:
        run.submit_more(queue, session, in_flight=settings.max_jobs_per_session)
        return run.views(queue)

    def arrived(views: Sequence[ItemView]) -> None:
        _draw(grid, key)

    if group_panel(key=f"{key}.group", poll=poll, cancel=lambda: run.cancel(queue, session), live=arrived):
        _draw(grid, key)
        _downloads(grid, key)


def _axis_input(key: str, label: str, task: str, catalogue, *, optional: bool) -> tuple[str, object]:
    kinds = [kind for kind in AXES if task == "inpaint" or kind != "strength"]
    options = ([NONE] if optional else []) + kinds
    kind = st.selectbox(
        label,
        options,
        format_func=lambda kind: "—" if kind == NONE else AXES[kind][0],
        key=f"{key}.kind",
        index=(options.index("steps") if optional else options.index("seed")),
    )
    if kind == NONE:
        return kind, None
    if kind == "model":
        ready, _ = split_by_availability(catalogue.for_task(task))
        names = {spec.id: spec.name for spec in ready}
        return kind, st.multiselect("Models", list(names), format_func=names.get, key=f"{key}.models")
    if kind == "scheduler":
        return kind, st.multiselect("Schedulers", list(SCHEDULERS), key=f"{key}.schedulers")
    return kind, st.text_input(
        "Values",
        key=f"{key}.values.{kind}",
        placeholder=EXAMPLES.get(kind, ""),
        help="Commas between values; a-b (+step) for a range.",
    )


def _draw(grid: Grid, key: str) -> None:
    """The grid as it stands: labels, and each cell's image, time and (inpainting) change."""
    header = st.columns([1] + [3] * grid.columns) if grid.y is not None else st.columns(grid.columns)
    offset = 1 if grid.y is not None else 0
    if grid.y is not None:
        header[0].markdown(f"**{grid.y.label} \\ {grid.x.label}**")
    for column, value in enumerate(grid.x.values):
        header[column + offset].markdown(f"**{grid.x.label}: {grid.x.value_label(value)}**")
    for row in range(grid.rows):
        cells = st.columns([1] + [3] * grid.columns) if grid.y is not None else st.columns(grid.columns)
        if grid.y is not None:
            cells[0].markdown(f"**{grid.y.value_label(grid.y.values[row])}**")
        for column in range(grid.columns):
            item = grid.cell(row, column)
            with cells[column + offset]:
                _cell(item, key)


def _cell(item, key: str) -> None:
    status = item.final
    if item.png is None:
        if item.problem or (status is not None and status.state.finished):
            st.caption(f"no result: {item.problem or status.error or status.state.value}")
        else:
            st.caption("waiting…")
        return
    st.image(item.png, width="stretch")
    timing = "from the store (nothing ran)" if status is not None and status.cached else f"{status.elapsed_s:.1f} s"
    st.caption(timing)
    if isinstance(item.request, InpaintRequest):
        changes = st.session_state.setdefault(f"{key}.changes", {})
        if item.name not in changes:
            with Image.open(io.BytesIO(item.png)) as result:
                changes[item.name] = mask_change(item.request, result)
        change = changes[item.name]
        outside = (
            "outside the mask: unchanged ✓"
            if change.outside_untouched
            else f"outside: {change.changed_outside} px changed ✗"
        )
        st.caption(f"changed {change.changed_inside:.0%} of the mask (mean Δ {change.mean_inside:.1f}) · {outside}")


def _downloads(grid: Grid, key: str) -> None:
    done = {item.name: item for item in grid.items if item.png is not None}
    if not done:
        return
    with shown_errors():
        images = {name: Image.open(io.BytesIO(item.png)) for name, item in done.items()}
        picture = grid_image(grid, images)
        base = grid.items[0].request
        parameters = {
            **base.parameters(),
            "grid_x": grid.x.kind,
            "grid_x_values": list(grid.x.values),
            **({"grid_y": grid.y.kind, "grid_y_values": list(grid.y.values)} if grid.y is not None else {}),
        }
        png_download(
            encode_png(picture, parameters),
            "canvas-studio-grid.png",
            key=f"{key}.download-grid",
            label="Download the grid (PNG)",
        )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, item in done.items():
                archive.writestr(f"{name}.png", item.png)
        zip_download(
            buffer.getvalue(),
            "canvas-studio-grid-cells.zip",
            key=f"{key}.download-cells",
            label=f"Download {len(done)} single images (ZIP)",
        )


__all__ = ["xy_grid_page"]
