"""The job store contract: the same tests against SQLite and a real redis-server.

Several `JobQueue` objects on one store stand for several front-ends and workers (other processes,
other machines): they share nothing but the store. `workers=0` is a pure front-end.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from PIL import Image, ImageDraw

from core.catalogue import Catalogue
from core.errors import BusyError
from core.jobs import WORKER_LOST_MESSAGE, JobQueue, JobState, UnknownJobError, open_store, policy
from core.jobs import worker as worker_module
from core.jobs.worker import INPUTS_LOST_MESSAGE
from core.pool import ModelPool
from core.requests import InpaintRequest
from core.runner import Studio
from core.store import ResultStore
from tests.job_helpers import EngineSpy, generate, wait_until
from tests.redis_server import redis_server

LEASE_S = 0.6  # short leases keep lost-worker tests fast


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    import redis

    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def results(tmp_path):
    return ResultStore(tmp_path / "results", 1 << 30)  # shared by every "machine" (a shared folder)


@pytest.fixture
def spy():
    return EngineSpy()


@pytest.fixture
def make_queue(store_url, results, tmp_path, spy):
    """A front-end or worker process of its own: its own store connection, studio and model pool."""
    made: list[JobQueue] = []

    def make(*, catalogue=None, workers: int = 0, result_store=None, **options) -> JobQueue:
        studio = Studio(catalogue or Catalogue.load(None), ModelPool(1, loader=spy.loader), result_store or results)
        options.setdefault("lease_s", LEASE_S)
        made.append(JobQueue(studio, open_store(store_url, tmp_path), workers=workers, **options))
        return made[-1]

    yield make
    spy.gate.set()
    for queue in made:
        queue.shutdown(wait=True)
        queue.store.close()


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return Image.fromarray(data.coffee())  # 600x400


def removal(photo: Image.Image, spot: int = 0) -> InpaintRequest:
    """A small OpenCV removal (a few milliseconds); `spot` moves the mask: another request."""
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((100 + 10 * spot, 100, 160 + 10 * spot, 160), fill=255)
    return InpaintRequest(model="opencv-telea", image=photo, mask=mask)


def test_a_job_runs_once_and_any_front_end_reads_its_status_and_result_by_id(make_queue, photo):
    front, other = make_queue(), make_queue()
    worker = make_queue(workers=1)
    job = front.submit(removal(photo), session="client-a")
    assert other.wait(job, timeout=30).state is JobState.DONE
    status = other.status(job)
    assert status.worker == worker._workers[0].name and status.attempts == 1 and status.seed == 0
    here, there = front.result(job), other.result(job)  # `other` composes the stored region onto the stored input
    assert here.images[0].tobytes() == there.images[0].tobytes() and there.images[0].size == photo.size
    with pytest.raises(UnknownJobError):
        other.status("no-such-job")


def test_queued_jobs_survive_a_restart_and_run_in_order_with_the_same_ids(make_queue, photo, store_url, tmp_path):
    before = make_queue()  # a front-end with no worker, then every process stops
    ids = [before.submit(removal(photo, spot), session="client-a") for spot in range(3)]
    before.shutdown()
    before.store.close()

    after = make_queue(workers=1)  # a new process, on a new connection to the same store
    finished = [after.wait(job, timeout=30) for job in ids]
    assert [status.state for status in finished] == [JobState.DONE] * 3
    started = [after.store.get(job).started_at for job in ids]
    assert started == sorted(started)


def test_a_lost_worker_is_retried_once_then_the_job_fails_with_a_message(make_queue, photo):
    front = make_queue()
    job = front.submit(removal(photo), session="client-a")
    ghost_lease = 0.2
    front.store.transact(lambda txn: policy.claim(txn, "ghost:1", time.time(), ghost_lease))  # then killed -9
    survivor = make_queue(workers=1)
    status = front.wait(job, timeout=30)
    assert status.state is JobState.DONE and status.attempts == 2 and status.worker == survivor._workers[0].name

    second = front.submit(removal(photo, 1), session="client-a")
    survivor.shutdown()  # nobody takes it while two ghosts lose it in turn
    for ghost in ("ghost:2", "ghost:3"):
        wait_until(lambda: front.status(second).state is JobState.QUEUED, what="the job to be queued")
        front.store.transact(lambda txn, name=ghost: policy.claim(txn, name, time.time(), ghost_lease))
        time.sleep(ghost_lease + 0.05)
        front.store.transact(lambda txn: policy.recover_expired(txn, time.time()))
    status = front.status(second)
    assert status.state is JobState.FAILED and status.error == WORKER_LOST_MESSAGE and status.attempts == 2


def test_cancel_from_another_front_end_stops_a_running_job_within_a_step(
    make_queue, spy, tiny_catalogue, monkeypatch
):
    # Progress is written on news only, not on time: the cancel must reach the worker as news (Redis:
    # the store's events; SQLite: another connection's commit).
    monkeypatch.setattr(worker_module, "PROGRESS_WRITE_EVERY_S", 3600.0)
    front, other = make_queue(catalogue=tiny_catalogue), make_queue(catalogue=tiny_catalogue)
    worker = make_queue(catalogue=tiny_catalogue, workers=1, lease_s=600)  # no lease renewal meanwhile
    spy.gate.clear()
    job = front.submit(generate(1, steps=6), session="client-a")
    wait_until(lambda: other.status(job).state is JobState.RUNNING, what="the job to start")
    queued = front.submit(generate(2, steps=6), session="client-a")
    assert other.cancel(queued).state is JobState.CANCELLED  # a queued cancel is immediate
    heard = worker.store.news()
    assert heard is not None  # the worker's store can tell (Redis: subscribed)
    other.cancel(job)
    wait_until(lambda: worker.store.news() != heard, timeout=10, what="the worker's process to hear of it")
    spy.gate.set()
    assert front.wait(job, timeout=30).state is JobState.CANCELLED
    assert len(spy.steps[1]) <= 2  # stopped at the step after the cancel


def test_positions_limits_and_sharing_hold_across_front_ends_and_clients_take_turns(make_queue, photo):
    front, other = make_queue(max_per_session=8), make_queue(max_per_session=8)
    batch = [front.submit(removal(photo, spot), session="batch-client") for spot in range(5)]
    single = other.submit(removal(photo, 9), session="edit-client")
    seen_here = {status.id: status.position for status in front.jobs()}
    seen_there = {status.id: status.position for status in other.jobs()}
    assert seen_here == seen_there
    assert seen_here[single] == 2  # round-robin: the single edit goes right after the batch's first job
    assert [seen_here[job] for job in batch] == [1, 3, 4, 5, 6]
    assert other.submit(removal(photo, 0), session="someone") == batch[0]  # identical request: shared
    for _ in range(2):
        other.submit(removal(photo, 20 + _), session="edit-client")
    limited = make_queue(max_per_session=3)
    with pytest.raises(BusyError):
        limited.submit(removal(photo, 30), session="edit-client")  # counted across front-ends
    worker = make_queue(workers=1)
    order = [worker.wait(job, timeout=30) for job in [*batch, single]]
    starts = {status.id: front.store.get(status.id).started_at for status in order}
    assert sorted(starts, key=starts.get).index(single) == 1


def test_previews_are_small_jpegs_any_front_end_can_show(make_queue, spy, tiny_catalogue):
    front, other = make_queue(catalogue=tiny_catalogue), make_queue(catalogue=tiny_catalogue)
    make_queue(catalogue=tiny_catalogue, workers=1)
    spy.gate.clear()
    job = front.submit(generate(3, steps=4), session="client-a")
    wait_until(lambda: other.status(job).state is JobState.RUNNING, what="the job to start")
    threading.Timer(0.3, spy.gate.set).start()
    preview = wait_until(
        lambda: other.preview(job) or (other.status(job).state.finished and "finished"), what="a preview"
    )
    assert isinstance(preview, Image.Image) and max(preview.size) <= 256
    assert other.wait(job, timeout=30).state is JobState.DONE
    assert other.preview(job) is None and front.store.preview(job) is None  # latest only, dropped at the end


def test_only_gone_browser_sessions_abandon_a_job(make_queue, photo):
    front = make_queue(abandon_after_s=0.3, max_per_session=8)
    page = front.submit(removal(photo, 1), session="web-tab", heartbeat=True)
    api = front.submit(removal(photo, 2), session="api:10.0.0.1")
    batch = front.submit(removal(photo, 3), session="web-tab", group="batch-x", heartbeat=True)
    time.sleep(0.4)
    other = make_queue(abandon_after_s=0.3)
    other.touch_sessions([])  # another front-end's sweep: "web-tab" is not connected anywhere
    assert front.status(page).state is JobState.CANCELLED
    assert front.status(api).state is JobState.QUEUED and front.status(batch).state is JobState.QUEUED


def test_a_result_the_result_store_did_not_keep_is_served_by_any_front_end(make_queue, photo, tmp_path):
    front = make_queue()
    worker = make_queue(workers=1, result_store=ResultStore(tmp_path / "full", 1))  # keeps nothing
    job = front.submit(removal(photo, 4), session="client-a")
    assert front.wait(job, timeout=30).state is JobState.DONE
    assert front.store.get(job).result.stored is False
    here, there = worker.result(job), front.result(job)  # held in the worker's memory / the job store's copy
    assert there.pngs == here.pngs and there.images[0].tobytes() == here.images[0].tobytes()
    assert there.seed == here.seed and there.parameters == here.parameters


def test_finished_inputs_are_bounded_by_bytes(make_queue, photo):
    front = make_queue(keep_payload_bytes=1, max_per_session=8)
    worker = make_queue(workers=1, keep_payload_bytes=1)
    jobs = [front.submit(removal(photo, spot), session="client-a") for spot in range(3)]
    for job in jobs:
        worker.wait(job, timeout=30)
    worker.store.keep_result(jobs[0], b"a result the result store did not keep")
    worker.store.prune(keep_finished=10, keep_payload_bytes=1)
    assert worker.store.payload_bytes() == 0 and worker.store.kept_result(jobs[0]) is None


def _as_an_earlier_version_kept_it(store, job_id: str, data: bytes) -> None:
    """Inputs of a job queued before the upgrade that moved them to files: inside the store."""
    if store.kind == "sqlite":
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE payloads SET data = ? WHERE job_id = ?", (data, job_id))
    else:
        store._redis.set(store._k("payload", job_id), data)


def test_inputs_are_files_in_the_cache_folder_and_go_with_their_jobs(make_queue, photo, tmp_path):
    front = make_queue(max_per_session=8)
    kept, cancelled = (front.submit(removal(photo, spot), session="client-a") for spot in (0, 5))
    folder = tmp_path / "job-inputs"
    assert sorted(path.name for path in folder.iterdir()) == sorted([kept, cancelled])
    assert front.store.payload_bytes() == sum(path.stat().st_size for path in folder.iterdir())

    front.cancel(cancelled)  # a job that will never run needs no inputs
    assert [path.name for path in folder.iterdir()] == [kept]
    worker = make_queue(workers=1, keep_payload_bytes=1)
    assert worker.wait(kept, timeout=30).state is JobState.DONE
    assert (folder / kept).exists()  # a finished edit keeps its input: its stored result is composed on it
    worker.store.prune(keep_finished=10, keep_payload_bytes=1)
    assert list(folder.iterdir()) == [] and worker.store.payload_bytes() == 0


def test_inputs_cut_short_fail_their_job_with_a_message_and_the_next_runs(make_queue, photo, tmp_path):
    front = make_queue(max_per_session=8)
    cut, whole = (front.submit(removal(photo, spot), session="client-a") for spot in (0, 5))
    path = tmp_path / "job-inputs" / cut
    path.write_bytes(path.read_bytes()[:-1])  # as a power cut after the commit could leave it
    worker = make_queue(workers=1)
    failed = worker.wait(cut, timeout=30)
    assert failed.state is JobState.FAILED and failed.error == INPUTS_LOST_MESSAGE
    assert worker.wait(whole, timeout=30).state is JobState.DONE


def test_inputs_an_earlier_version_kept_in_the_store_still_run(make_queue, photo, tmp_path):
    front = make_queue()
    job = front.submit(removal(photo), session="client-a")
    path = tmp_path / "job-inputs" / job
    _as_an_earlier_version_kept_it(front.store, job, path.read_bytes())
    path.unlink()
    front.shutdown()

    worker = make_queue(workers=1)  # after the upgrade
    assert worker.wait(job, timeout=30).state is JobState.DONE
    direct = Studio(Catalogue.load(None), ModelPool(1), store=None).inpaint(removal(photo))
    assert worker.result(job).images[0].tobytes() == direct.images[0].tobytes()


def test_a_job_handed_to_an_idle_worker_at_submit_shows_its_result_everywhere(make_queue, photo, monkeypatch):
    # The submit's own commit hands the job to this process's idle worker, and its inputs are
    # written beside the run; here they take longer than the run: the result must wait for them,
    # or another front-end cannot compose the edit's stored result.
    from core.jobs import inputs

    write = inputs.InputFiles.write
    monkeypatch.setattr(inputs.InputFiles, "write", lambda *args: (time.sleep(0.5), write(*args))[1])
    local = make_queue(workers=1)
    wait_until(lambda: local._workers[0].idle, what="the worker to be idle")
    job = local.submit(removal(photo), session="client-a")
    assert local.store.get(job).state is JobState.RUNNING  # taken in the submit's commit
    other = make_queue()
    status = other.wait(job, timeout=30)
    assert status.state is JobState.DONE and status.attempts == 1 and status.worker == local._workers[0].name
    assert other.result(job).images[0].tobytes() == local.result(job).images[0].tobytes()


def test_a_worker_handed_a_job_takes_no_second_one_before_it_runs_the_first(make_queue, photo, monkeypatch):
    local = make_queue(workers=1, max_per_session=8)
    wait_for_work = local.store.wait_for_work

    def slow_to_wake(*args, **kwargs):  # a loaded machine: the worker wakes a moment after the commit
        wait_for_work(*args, **kwargs)
        time.sleep(0.3)

    monkeypatch.setattr(local.store, "wait_for_work", slow_to_wake)
    time.sleep(0.5)  # the worker now waits in the slow wait
    wait_until(lambda: local._workers[0].idle, what="the worker to be idle")
    first = local.submit(removal(photo, 0), session="client-a")
    second = local.submit(removal(photo, 5), session="client-a")  # while the worker is still asleep
    assert local.store.get(second).state is JobState.QUEUED  # the worker has a job already
    for job in (first, second):
        status = local.wait(job, timeout=30)
        assert status.state is JobState.DONE and status.attempts == 1, status
