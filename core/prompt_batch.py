"""Prompt batches: many prompts (typed one per line, or a .txt / .csv file) times N seeds each.

1. `read_prompts` turns the text into rows: a .txt (or typed text) has one prompt per line (blank
   lines and `#` comments skipped); a .csv has a header naming its columns: `prompt` and optionally
   `negative_prompt`, `seed`, `model`, `width`, `height`, `steps`. A row whose values do not parse
   keeps its line number and the reason, and is shown as refused: it never stops the others.
2. `expand` makes one `RequestItem` per row and seed (a row's own seed, else the batch's, else one
   drawn per row; then seed+1, seed+2, ...), ordered so each model loads once. The pages, the CLI
   and the API run these items; `core.batch.RequestRun` feeds them to the queue as one group.
3. `manifest_csv` / `batch_zip`: the PNGs plus a CSV of every item's parameters and outcome.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from core.batch import RequestItem, model_order
from core.errors import BadParameterError
from core.requests import MAX_SEED, GenerateRequest, random_seed

MAX_ROWS = 500
MAX_SEEDS = 16
MAX_ITEMS = 1000  # rows x seeds
DEFAULT_SEEDS = 1  # images per prompt when a batch does not say (page, CLI, API)
MAX_FILE_BYTES = 2 * 1024 * 1024

# Column name (lower case, spaces and dashes as underscores) -> row field.
COLUMNS = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "negative": "negative_prompt",
    "seed": "seed",
    "model": "model",
    "width": "width",
    "height": "height",
    "steps": "num_inference_steps",
    "num_inference_steps": "num_inference_steps",
}
_INTEGER_FIELDS = ("seed", "width", "height", "num_inference_steps")
MANIFEST_COLUMNS = (
    "file",
    "status",
    "prompt",
    "negative_prompt",
    "seed",
    "model",
    "width",
    "height",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
    "error",
)


@dataclass(frozen=True)
class PromptRow:
    line: int  # 1-based line of the text or file, for messages
    prompt: str
    negative_prompt: str | None = None  # None: the batch's
    seed: int | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    num_inference_steps: int | None = None
    problem: str | None = None  # why this row cannot run (a value that does not parse)


# -- 1. reading ------------------------------------------------------------------------------------


def read_prompts(data: bytes | str, *, name: str = "prompts.txt") -> list[PromptRow]:
    """Rows from typed text or an uploaded file (.csv by its name; anything else is one prompt a line).

    Raises BadParameterError when the whole input is refused: too large, not text, no prompts,
    or a CSV without a `prompt` column."""
    if isinstance(data, bytes):
        if len(data) > MAX_FILE_BYTES:
            raise BadParameterError(
                f"the prompts file is {len(data) / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB"
            )
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise BadParameterError("the prompts file is not UTF-8 text") from None
    rows = _csv_rows(data) if name.lower().endswith(".csv") else _text_rows(data)
    if not rows:
        raise BadParameterError("no prompts found: write one prompt per line")
    if len(rows) > MAX_ROWS:
        raise BadParameterError(f"{len(rows)} prompts; the limit is {MAX_ROWS} per batch")
    return rows


def _text_rows(text: str) -> list[PromptRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(PromptRow(number, line))
    return rows


def _csv_rows(text: str) -> list[PromptRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as error:
        raise BadParameterError(f"the CSV file cannot be read: {error}") from None
    names = [cell.strip().lower().replace(" ", "_").replace("-", "_") for cell in header]
    if "prompt" not in names:
        raise BadParameterError("the CSV file needs a header row with a 'prompt' column")
    unknown = [header[index] for index, name in enumerate(names) if name and name not in COLUMNS]
    if unknown:
        raise BadParameterError(
            f"unknown CSV column {unknown[0]!r}; use prompt, negative_prompt, seed, model, width, height, steps"
        )
    rows = []
    try:
        for cells in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            values = {COLUMNS[name]: cell.strip() for name, cell in zip(names, cells, strict=False) if name}
            rows.append(_row(number, values))
    except csv.Error as error:
        raise BadParameterError(f"the CSV file cannot be read at line {reader.line_num}: {error}") from None
    return rows


def _row(number: int, values: dict[str, str]) -> PromptRow:
    fields: dict = {"prompt": values.get("prompt", "")}
    problems = []
    if values.get("negative_prompt"):
        fields["negative_prompt"] = values["negative_prompt"]
    if values.get("model"):
        fields["model"] = values["model"]
    for name in _INTEGER_FIELDS:
        raw = values.get(name, "")
        if not raw:
            continue
        try:
            fields[name] = int(raw)
        except ValueError:
            problems.append(f"{name} {raw!r} is not a whole number")
    if not fields["prompt"]:
        problems.append("the prompt is empty")
    return PromptRow(number, problem="; ".join(problems) or None, **fields)


# -- 2. items --------------------------------------------------------------------------------------


def expand(rows: Sequence[PromptRow], template: GenerateRequest, *, seeds: int = DEFAULT_SEEDS) -> list[RequestItem]:
    """One item per row and seed, named `<line>-<seed>` (e.g. `003-42`), each model's items together.

    `template` gives what a row leaves out (model, negative prompt, size, steps, guidance,
    scheduler); its seed, when set, is every row's first seed."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise BadParameterError(f"seeds per prompt must be 1 to {MAX_SEEDS}, got {seeds}")
    if len(rows) * seeds > MAX_ITEMS:
        raise BadParameterError(
            f"{len(rows)} prompts x {seeds} seeds is {len(rows) * seeds} images; the limit is {MAX_ITEMS}"
        )
    width = len(str(max(row.line for row in rows))) if rows else 1
    items = []
    for row in rows:
        first = row.seed if row.seed is not None else template.seed
        first = random_seed() if first is None else first
        for offset in range(seeds):
            seed = (first + offset) % (MAX_SEED + 1)
            request = dataclasses.replace(
                template,
                prompt=row.prompt,
                seed=seed,
                num_images=1,
                **{
                    name: getattr(row, name)
                    for name in ("negative_prompt", "model", "width", "height", "num_inference_steps")
                    if getattr(row, name) is not None
                },
            )
            name = f"{row.line:0{max(3, width)}d}-{seed}"
            problem = None if row.problem is None else f"line {row.line}: {row.problem}"
            items.append(RequestItem(name, request, problem=problem))
    return model_order(items)


# -- 3. results ------------------------------------------------------------------------------------


def manifest_rows(items: Sequence[RequestItem], problems: dict[str, str] | None = None) -> list[dict]:
    """One row per item: its file (when it has a result), status, parameters and error."""
    problems = problems or {}
    rows = []
    for item in items:
        parameters = item.parameters or {}
        request = item.request
        done = item.png is not None
        row = {
            "file": f"{item.name}.png" if done else "",
            "status": "done" if done else ("failed" if item.name in problems else "not run"),
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": parameters.get("seed", request.seed),
            "model": request.model,
            "width": parameters.get("width", request.width),
            "height": parameters.get("height", request.height),
            "num_inference_steps": parameters.get("num_inference_steps", request.num_inference_steps),
            "guidance_scale": parameters.get("guidance_scale", request.guidance_scale),
            "scheduler": parameters.get("scheduler", request.scheduler),
            "error": "" if done else problems.get(item.name, ""),
        }
        rows.append({column: "" if row[column] is None else row[column] for column in MANIFEST_COLUMNS})
    return rows


def manifest_csv(items: Sequence[RequestItem], problems: dict[str, str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(manifest_rows(items, problems))
    return buffer.getvalue()


def batch_zip(items: Sequence[RequestItem], problems: dict[str, str] | None = None) -> bytes:
    """`<name>.png` for every finished item and `manifest.csv` listing every item."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for item in items:
            if item.png is not None:
                archive.writestr(f"{item.name}.png", item.png)
        archive.writestr("manifest.csv", manifest_csv(items, problems))
    return buffer.getvalue()


__all__ = [
    "MANIFEST_COLUMNS",
    "PromptRow",
    "batch_zip",
    "expand",
    "manifest_csv",
    "manifest_rows",
    "read_prompts",
]
