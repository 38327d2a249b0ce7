"""Prompt batches: reading prompts, expanding seeds, running as one queue group, ZIP with manifest, CLI."""

from __future__ import annotations

import csv
import io
import time
import zipfile

import pytest
from PIL import Image

from core.batch import RequestRun
from core.errors import BadParameterError
from core.jobs import JobQueue
from core.prompt_batch import batch_zip, expand, read_prompts
from core.provenance import read_parameters
from core.requests import GenerateRequest
from core.runner import Studio
from tests.test_cli import run_cli


def test_text_is_one_prompt_a_line_without_blanks_or_comments():
    rows = read_prompts("a red fox\n\n# a comment\n  a blue bird  \n")
    assert [(row.line, row.prompt) for row in rows] == [(1, "a red fox"), (4, "a blue bird")]


def test_csv_columns_and_a_bad_row_that_does_not_stop_the_rest():
    text = 'Prompt,Negative prompt,seed,steps,width\nfox,blurry,7,3,\nbird,,many,,128\n,,,,\n"cat, sitting",,,,\n'
    rows = read_prompts(text.encode(), name="list.csv")
    assert [row.prompt for row in rows] == ["fox", "bird", "cat, sitting"]
    assert rows[0].negative_prompt == "blurry" and rows[0].seed == 7 and rows[0].num_inference_steps == 3
    assert rows[1].problem == "seed 'many' is not a whole number" and rows[1].width == 128
    assert rows[2].problem is None and rows[2].line == 5


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        ("\n# only comments\n", "p.txt", "no prompts found"),
        ("text,seed\nfox,1\n", "p.csv", "'prompt' column"),
        ("prompt,colour\nfox,red\n", "p.csv", "unknown CSV column 'colour'"),
        (b"\xff\xfe\x00bad", "p.txt", "not UTF-8"),
        ("x\n" * 501, "p.txt", "the limit is 500"),
    ],
)
def test_inputs_refused_as_a_whole_say_why(data, name, message):
    with pytest.raises(BadParameterError, match=message):
        read_prompts(data, name=name)


def test_expand_gives_each_row_its_seeds_and_keeps_each_model_together():
    rows = read_prompts(b"prompt,model,seed\na,m1,10\nb,m2,\nc,m1,4294967295\n", name="p.csv")
    items = expand(rows, GenerateRequest(model="m0", seed=100, guidance_scale=2.0), seeds=2)
    assert [(item.request.model, item.request.prompt, item.request.seed) for item in items] == [
        ("m1", "a", 10),
        ("m1", "a", 11),
        ("m1", "c", 4294967295),
        ("m1", "c", 0),  # wraps within the seed range
        ("m2", "b", 100),
        ("m2", "b", 101),
    ]
    assert all(item.request.guidance_scale == 2.0 and item.request.num_images == 1 for item in items)
    assert [item.name for item in items][:2] == ["002-10", "002-11"]
    random = expand(read_prompts("x\ny"), GenerateRequest(model="m"), seeds=3)
    seeds = [item.request.seed for item in random]
    assert seeds[1] == seeds[0] + 1 and seeds[2] == seeds[0] + 2  # one random seed drawn per row


def test_a_prompt_batch_runs_as_one_group_and_zips_with_a_manifest(tiny_catalogue):
    rows = read_prompts(b"prompt,seed,width\na red cube,1,\na blue ball,,many\na green cone,3,64\n", name="p.csv")
    items = expand(rows, GenerateRequest(model="tiny-sd", seed=5, width=64, height=64, num_inference_steps=1), seeds=2)
    queue = JobQueue(Studio.from_settings(), max_per_session=2)
    try:
        run = RequestRun(items, kind="prompts")
        deadline = time.monotonic() + 120
        while not run.finished(queue):
            assert time.monotonic() < deadline
            run.submit_more(queue, "tab", in_flight=2)
            time.sleep(0.02)
        assert {status.group for status in queue.jobs(group=run.group)} == {run.group}
    finally:
        queue.shutdown()
    assert [name for name, _ in run.results()] == ["002-1", "002-2", "004-3", "004-4"]
    problems = dict(run.problems())
    assert sorted(problems) == ["003-5", "003-6"] and "line 3" in problems["003-5"]
    archive = zipfile.ZipFile(io.BytesIO(batch_zip(run.items, problems)))
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [row["status"] for row in manifest] == ["done", "done", "failed", "failed", "done", "done"]
    png = archive.read("004-4.png")
    assert read_parameters(png)["seed"] == 4 and read_parameters(png)["prompt"] == "a green cone"
    assert manifest[5] | {"file": "004-4.png", "seed": "4", "model": "tiny-sd", "width": "64"} == manifest[5]
    assert Image.open(io.BytesIO(png)).size == (64, 64)


def test_cli_prompts_file_times_seeds_writes_pngs_and_a_manifest(tmp_path, tiny_pipeline_dirs):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\na blue ball\n")
    out = tmp_path / "out"
    model = str(tiny_pipeline_dirs["txt2img"])
    args = ("generate", "--prompts", str(prompts), "--model", model, "-o", str(out), "--seeds", "2", "--seed", "9")
    completed = run_cli(*args, "--width", "64", "--height", "64", "--steps", "1")
    assert completed.returncode == 0, completed.stderr
    assert sorted(path.name for path in out.iterdir()) == [
        "001-10.png",
        "001-9.png",
        "002-10.png",
        "002-9.png",
        "manifest.csv",
    ]
    assert read_parameters(out / "002-10.png")["prompt"] == "a blue ball"
    assert "4 of 4 images done" in completed.stderr
    again = run_cli(*args, "--width", "64", "--height", "64", "--steps", "1")
    assert again.stderr.count("(cache hit)") == 4


def test_cli_prompts_needs_exactly_one_source(tmp_path):
    completed = run_cli("generate", "--model", "opencv-telea", "-o", str(tmp_path / "x"))
    assert completed.returncode == 2 and "either a PROMPT or --prompts" in completed.stderr


# -- the API's batches -------------------------------------------------------------------------------


@pytest.fixture
def api_client(tiny_catalogue, monkeypatch):
    # Jobs nobody watches for 1 s are dropped: the server's batch driver must keep watching its own.
    monkeypatch.setenv("STUDIO_ABANDON_AFTER_S", "1")
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from core import services
    from core.api import api_routes

    services.reset()
    with TestClient(Starlette(routes=api_routes())) as made:
        yield made
    services.reset()


def wait_for_batch(client, batch_id: str) -> dict:
    deadline = time.monotonic() + 120
    while (info := client.get(f"/api/v1/batches/{batch_id}").json())["status"] == "running":
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    return info


def test_api_batch_runs_prompts_times_seeds_in_the_server_and_zips_them(api_client):
    body = {
        "model": "tiny-sd",
        "prompts": ["a red cube", {"prompt": "a blue ball", "seed": 7, "width": 72}, {"prompt": "  "}],
        "seeds": 2,
        "seed": 3,
        "width": 64,
        "height": 64,
        "num_inference_steps": 1,
    }
    created = api_client.post("/api/v1/batches", json=body)
    assert created.status_code == 202, created.text
    info = wait_for_batch(api_client, created.json()["id"])
    assert info["status"] == "done" and (info["total"], info["done"], info["failed"]) == (6, 4, 2)
    states = {item["name"]: (item["status"], item["seed"]) for item in info["items"]}
    assert states == {
        "001-3": ("done", 3),
        "001-4": ("done", 4),
        "002-7": ("done", 7),
        "002-8": ("done", 8),
        "003-3": ("refused", 3),
        "003-4": ("refused", 4),
    }
    download = api_client.get(f"/api/v1/batches/{info['id']}/zip")
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert sorted(archive.namelist()) == ["001-3.png", "001-4.png", "002-7.png", "002-8.png", "manifest.csv"]
    assert Image.open(io.BytesIO(archive.read("002-8.png"))).size == (72, 64)
    again = wait_for_batch(api_client, api_client.post("/api/v1/batches", json=body).json()["id"])
    assert sum(item["cached"] for item in again["items"]) == 4


def test_api_batch_refuses_unknown_models_and_bad_bodies(api_client):
    refused = api_client.post(
        "/api/v1/batches", json={"model": "tiny-sd", "prompts": [{"prompt": "x", "model": "/etc"}]}
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_model"
    assert (
        api_client.post("/api/v1/batches", json={"model": "tiny-sd", "prompts": ["x"], "seeds": "2"}).status_code == 422
    )
    assert (
        api_client.post("/api/v1/batches", json={"model": "tiny-sd", "prompts": ["x"], "seeds": 99}).status_code == 400
    )
    assert api_client.get("/api/v1/batches/nope").status_code == 404
    # The batch's settings are the request schema's fields: its bounds refuse, in its words, before anything runs.
    bad = api_client.post("/api/v1/batches", json={"model": "tiny-sd", "prompts": ["x"], "guidance_scale": 99})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("guidance_scale must be a number in [0, 30]")
    documented = api_client.get("/api/v1/openapi.json").json()["components"]["schemas"]["BatchBody"]["properties"]
    assert documented["num_inference_steps"]["anyOf"][0]["maximum"] == 150 and documented["scheduler"]["anyOf"][0]["enum"]
