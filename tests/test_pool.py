"""The model pool: at most N resident, least recently used released, failed loads roll back."""

from __future__ import annotations

import pytest

from core.catalogue import Catalogue
from core.engines import load_engine
from core.errors import ModelUnavailableError
from core.pool import ModelPool


@pytest.fixture
def many_models(tmp_path):
    extra = tmp_path / "models.toml"
    tables = [
        f'[models.cv-{n}]\ntasks = ["inpaint"]\nengine = "opencv"\nworking_resolution = 0\noptions = {{ radius = {n + 1} }}\n'
        for n in range(8)
    ]
    tables.append(f'[models.broken]\ntasks = ["inpaint"]\nengine = "diffusers"\npath = "{tmp_path / "missing"}"\n')
    extra.write_text("\n".join(tables))
    return Catalogue.load(extra)


class RecordingLoader:
    """The real loader, recording what it loads and which engines get closed."""

    def __init__(self):
        self.loads: list[str] = []
        self.closed: list[str] = []

    def __call__(self, spec):
        engine = load_engine(spec)
        self.loads.append(spec.id)
        original_close = engine.close

        def close():
            self.closed.append(spec.id)
            original_close()

        engine.close = close
        return engine


def test_never_more_than_the_configured_number_resident(many_models):
    loader = RecordingLoader()
    pool = ModelPool(max_resident=2, loader=loader)
    for n in range(8):
        pool.get(many_models.get(f"cv-{n}"))
        assert len(pool.resident()) <= 2
    assert pool.resident() == ["cv-6", "cv-7"]
    assert loader.closed == [f"cv-{n}" for n in range(6)]


def test_least_recently_used_is_the_one_released(many_models):
    loader = RecordingLoader()
    pool = ModelPool(max_resident=2, loader=loader)
    first = pool.get(many_models.get("cv-0"))
    pool.get(many_models.get("cv-1"))
    assert pool.get(many_models.get("cv-0")) is first  # a hit: no reload, now most recent
    pool.get(many_models.get("cv-2"))
    assert sorted(pool.resident()) == ["cv-0", "cv-2"]
    assert loader.loads == ["cv-0", "cv-1", "cv-2"]


def test_failed_load_leaves_the_previous_model_usable(many_models):
    loader = RecordingLoader()
    pool = ModelPool(max_resident=1, loader=loader)
    pool.get(many_models.get("cv-3"))
    with pytest.raises(ModelUnavailableError):
        pool.get(many_models.get("broken"))
    assert pool.resident() == ["cv-3"]
    assert loader.loads == ["cv-3", "cv-3"]  # evicted to make room, then loaded back


def test_clear_releases_everything(many_models):
    loader = RecordingLoader()
    pool = ModelPool(max_resident=3, loader=loader)
    for n in range(3):
        pool.get(many_models.get(f"cv-{n}"))
    pool.clear()
    assert pool.resident() == [] and sorted(loader.closed) == ["cv-0", "cv-1", "cv-2"]
