"""Models that fit the host: each model's memory need against this process's budget, checked
before anything loads; hosted models in the built-in catalogue and the GPU-less defaults."""

from __future__ import annotations

import pytest

from core import memory
from core.catalogue import HOSTED_HINT, Catalogue
from core.errors import ModelUnavailableError
from core.pool import ModelPool
from core.settings import SettingsError

GB = 10**9


# ---------------------------------------------------------------------------------------------
# The budget


def test_the_override_sets_the_budget_and_a_bad_value_is_refused():
    assert memory.budget({"STUDIO_MEMORY_LIMIT_MB": "2700"}) == memory.Budget(
        2700 * memory.MIB, "STUDIO_MEMORY_LIMIT_MB"
    )
    with pytest.raises(SettingsError, match="STUDIO_MEMORY_LIMIT_MB must be a whole number"):
        memory.budget({"STUDIO_MEMORY_LIMIT_MB": "lots"})


def test_without_a_limit_the_budget_is_the_ram_available(monkeypatch):
    import psutil

    monkeypatch.setattr(memory, "cgroup_limit", lambda: None)
    monkeypatch.setattr(memory, "address_space_limit", lambda: None)
    found = memory.budget({})
    assert found.source == "RAM available"
    assert psutil.Process().memory_info().rss < found.bytes <= psutil.virtual_memory().total


def test_the_tightest_kernel_limit_is_the_budget(monkeypatch):
    monkeypatch.setattr(memory, "cgroup_limit", lambda: 3 * GB)
    monkeypatch.setattr(memory, "address_space_limit", lambda: 2 * GB)
    assert memory.budget({}) == memory.Budget(2 * GB, "its memory limit")


@pytest.mark.parametrize(
    ("membership", "files", "expected"),
    [
        ("0::/app\n", {"app/memory.max": "2899102924\n"}, 2899102924),  # cgroup v2 (Community Cloud, Docker)
        ("0::/app\n", {"app/memory.max": "max\n"}, None),
        ("0::/a/b\n", {"a/memory.max": "1000000\n", "a/b/memory.max": "max\n"}, 1000000),  # a parent's limit binds
        ("4:memory:/job\n0::/\n", {"memory/job/memory.limit_in_bytes": "2000000000\n"}, 2000000000),  # cgroup v1
        ("4:memory:/job\n", {"memory/job/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1 "no limit"
    ],
)
def test_the_cgroup_limit_is_read_from_v1_and_v2(tmp_path, membership, files, expected):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "membership").write_text(membership)
    assert memory.cgroup_limit(tmp_path / "membership", root) == expected


def test_the_refusal_says_what_is_needed_and_what_there_is():
    budget = memory.Budget(int(2.7 * GB), "its memory limit")
    assert budget.refusal(int(2.0 * GB)) is None
    assert budget.refusal(int(6.4 * GB)) == "needs ~6.4 GB, this host has 2.7 GB (its memory limit)"


# ---------------------------------------------------------------------------------------------
# Each model's need, and the catalogue's answer


def test_a_local_models_need_is_measured_from_the_files_it_would_load(tiny_pipeline_dirs, monkeypatch):
    from core.catalogue import local_pipeline_spec

    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    folder = tiny_pipeline_dirs["txt2img"]
    weights = sum(path.stat().st_size for path in folder.rglob("*.safetensors"))
    assert weights > 0
    assert local_pipeline_spec(folder).memory_need() == int(weights * 1.1) + memory.GIB


def test_a_model_too_big_for_this_host_is_listed_as_such_not_as_a_download(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.setenv("STUDIO_MEMORY_LIMIT_MB", "2700")
    catalogue = Catalogue.load()
    turbo = catalogue.get("sd-turbo").availability()
    assert not turbo.ready
    assert turbo.detail == "needs ~6.7 GB, this host has 2.8 GB (STUDIO_MEMORY_LIMIT_MB)"
    assert catalogue.get("opencv-telea").availability().ready  # needs nothing worth counting
    assert "download" in catalogue.get("lama").availability().detail  # fits: only its download is missing


def test_on_a_gpu_host_ram_does_not_decide(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cuda")
    monkeypatch.setenv("STUDIO_MEMORY_LIMIT_MB", "100")
    assert Catalogue.load().get("sd-turbo").memory_need() == 0


# ---------------------------------------------------------------------------------------------
# The pool frees memory first, and refuses what can never fit


class Loaded:
    def __init__(self, spec, closed):
        self.spec, self._closed = spec, closed

    def close(self):
        self._closed.append(self.spec.id)


@pytest.fixture
def sized_models(tmp_path, tiny_pipeline_dirs, monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    extra = tmp_path / "models.toml"
    folder = str(tiny_pipeline_dirs["txt2img"])
    extra.write_text(
        "".join(
            f'[models.{name}]\ntasks = ["txt2img"]\nengine = "diffusers"\npath = "{folder}"\nmemory_mb = {size}\n'
            for name, size in (("small-a", 600), ("small-b", 600), ("huge", 9000))
        )
    )
    return Catalogue.load(extra)


def test_the_pool_releases_a_resident_model_that_would_not_fit_beside_the_next(sized_models):
    closed: list[str] = []
    pool = ModelPool(
        max_resident=3,
        loader=lambda spec: Loaded(spec, closed),
        budget=lambda: memory.Budget(1000 * memory.MIB, "test"),
    )
    pool.get(sized_models.get("small-a"))
    pool.get(sized_models.get("small-b"))  # 600 + 600 > 1000: small-a goes first
    assert closed == ["small-a"]
    assert pool.resident() == ["small-b"]


def test_the_pool_refuses_a_model_that_never_fits_and_keeps_the_resident_one(sized_models):
    closed: list[str] = []
    loads: list[str] = []

    def loader(spec):
        loads.append(spec.id)
        return Loaded(spec, closed)

    pool = ModelPool(max_resident=1, loader=loader, budget=lambda: memory.Budget(2700 * memory.MIB, "test"))
    pool.get(sized_models.get("small-a"))
    with pytest.raises(ModelUnavailableError, match=r"does not fit: it needs ~9.4 GB, this host has 2.8 GB"):
        pool.get(sized_models.get("huge"))
    assert loads == ["small-a"] and closed == [] and pool.resident() == ["small-a"]


# ---------------------------------------------------------------------------------------------
# Hosted models: built in, ready with a token, and the default where there is no GPU


def test_hosted_models_are_built_in_and_say_how_to_enable_them(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    catalogue = Catalogue.load()
    hosted = [spec for spec in catalogue if spec.engine == "hosted"]
    assert {task for spec in hosted for task in spec.tasks} == {"txt2img", "inpaint"}
    assert "black-forest-labs/FLUX.1-schnell" in {spec.hub for spec in hosted}
    for spec in hosted:
        assert spec.availability().detail == HOSTED_HINT
    assert "HF_TOKEN" in HOSTED_HINT and "secrets.toml" in HOSTED_HINT
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert all(spec.availability().ready for spec in hosted)  # a local check: nothing is called


def test_without_a_gpu_generate_and_replace_default_to_a_hosted_model_once_a_token_is_set(monkeypatch):
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    catalogue = Catalogue.load()
    assert catalogue.default_generative_model("txt2img") is None
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert catalogue.get(catalogue.default_generative_model("txt2img")).engine == "hosted"
    assert catalogue.get(catalogue.default_generative_model("inpaint")).supports("inpaint")
    monkeypatch.setenv("STUDIO_DEVICE", "cuda")  # a GPU host keeps its local models first
    assert catalogue.default_generative_model("txt2img") is None
