"""The process-wide job queue on the real Studio: tiny offline diffusers pipelines and OpenCV.

The engines are the real ones. Some tests wrap them in `EngineSpy` (through the pool's loader) to
count runs and preview renders, to see the steps the queue's reporter is given, or to hold a run
at a step so a job stays running for as long as a test needs, whatever the machine's speed.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.errors import BadParameterError, BusyError
from core.jobs import OUT_OF_MEMORY_MESSAGE, UNEXPECTED_MESSAGE, JobNotDoneError, JobQueue, JobState, UnknownJobError
from core.pool import ModelPool
from core.requests import InpaintRequest
from core.runner import Studio
from core.store import ResultStore
from tests.job_helpers import EngineSpy, generate, wait_until


@pytest.fixture
def spy():
    return EngineSpy()


@pytest.fixture
def studio(tiny_catalogue, tmp_path, spy):
    return Studio(tiny_catalogue, ModelPool(1, loader=spy.loader), ResultStore(tmp_path / "store", 1 << 30))


@pytest.fixture
def make_queue(studio, spy):
    made: list[JobQueue] = []

    def make(**options) -> JobQueue:
        made.append(JobQueue(studio, **options))
        return made[-1]

    yield make
    spy.gate.set()  # a held run must reach its next step to stop
    for queue in made:
        queue.shutdown(wait=True)


@pytest.fixture(scope="module")
def photo_and_mask():
    from skimage import data

    photo = Image.fromarray(data.coffee())  # 600x400 photo
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).ellipse((250, 150, 330, 230), fill=255)
    return photo, mask


def pixels(result) -> list[np.ndarray]:
    return [np.asarray(image) for image in result.images]


# -- results --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_submits_give_the_pixels_of_serial_runs(make_queue, studio, tiny_catalogue):
    queue = make_queue(max_per_session=8)
    requests = [generate(seed) for seed in range(100, 106)]
    ids: list[str | None] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def submit(index: int) -> None:
        start.wait()
        ids[index] = queue.submit(requests[index], session=f"tab-{index}")

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == len(requests)
    for job_id in ids:
        assert queue.wait(job_id, timeout=120).state is JobState.DONE
    queued_results = [queue.result(job_id) for job_id in ids]
    assert not any(result.cached for result in queued_results)

    serial = Studio(tiny_catalogue, ModelPool(1), store=None)
    for request, result in zip(requests, queued_results, strict=True):
        direct = serial.run(serial.prepare(request))
        assert result.key == direct.key
        for queued_pixels, direct_pixels in zip(pixels(result), pixels(direct), strict=True):
            assert np.array_equal(queued_pixels, direct_pixels)


def test_identical_requests_share_one_job_and_finished_ones_come_from_the_store(make_queue, spy):
    queue = make_queue()
    spy.gate.clear()
    first = queue.submit(generate(7), session="tab-a")
    wait_until(lambda: queue.status(first).state is JobState.RUNNING, what="the job to start")
    # Another tab, and a rerun of the first tab, join the job instead of running it again.
    assert queue.submit(generate(7), session="tab-b") == first
    assert queue.submit(generate(7), session="tab-a") == first
    assert [status.id for status in queue.jobs(session="tab-b")] == [first]
    spy.gate.set()
    assert queue.wait(first, timeout=60).state is JobState.DONE
    assert spy.runs[7] == 1

    again = queue.submit(generate(7), session="tab-c")
    status = queue.status(again)  # no wait: done at submit
    assert again != first and status.state is JobState.DONE and status.cached
    assert pixels(queue.result(again))[0].tobytes() == pixels(queue.result(first))[0].tobytes()
    assert spy.runs[7] == 1


def test_result_of_an_unfinished_job_and_unknown_ids(make_queue, spy):
    queue = make_queue()
    spy.gate.clear()
    job = queue.submit(generate(8), session="tab")
    with pytest.raises(JobNotDoneError) as raised:
        queue.result(job)
    assert raised.value.status.id == job and raised.value.code == "job_not_done"
    assert queue.wait(job, timeout=0.05).state in (JobState.QUEUED, JobState.RUNNING)  # timed out, not finished
    for call in (queue.status, queue.result, queue.preview, queue.cancel, queue.wait):
        with pytest.raises(UnknownJobError) as unknown:
            call("no-such-job")
        assert unknown.value.code == "unknown_job"


# -- cancel -----------------------------------------------------------------------------------------


def test_cancel_a_queued_job_removes_it_at_once(make_queue, spy, studio):
    queue = make_queue()
    spy.gate.clear()  # hold the first job so the others wait
    running = queue.submit(generate(10), session="tab")
    wait_until(lambda: queue.status(running).state is JobState.RUNNING, what="the job to start")
    queued = queue.submit(generate(11), session="tab")
    behind = queue.submit(generate(12), session="tab")
    assert [queue.status(queued).position, queue.status(behind).position] == [1, 2]

    started = time.perf_counter()
    status = queue.cancel(queued)
    assert time.perf_counter() - started < 0.05
    assert status.state is JobState.CANCELLED and status.position == 0
    assert queue.status(behind).position == 1 and queue.queue_length() == 1
    spy.gate.set()
    assert queue.wait(behind, timeout=60).state is JobState.DONE
    assert spy.runs[11] == 0 and studio.cached(studio.prepare(generate(11))) is None


def test_cancel_a_running_job_stops_within_one_step_and_the_next_job_runs(make_queue, spy, studio):
    queue = make_queue()
    long_job = queue.submit(generate(20, steps=50), session="tab")
    next_job = queue.submit(generate(21), session="tab")
    wait_until(lambda: queue.status(long_job).step >= 3, what="a few steps")

    at_cancel = queue.cancel(long_job)
    assert at_cancel.state is JobState.RUNNING and at_cancel.cancel_requested
    final = queue.wait(long_job, timeout=60)
    assert final.state is JobState.CANCELLED and final.error is None
    # The engine was stopped at the first step it reported after the cancel.
    assert final.step <= at_cancel.step + 1
    assert max(spy.steps[20]) <= at_cancel.step + 1 < 50
    assert queue.preview(long_job) is None  # nothing of a cancelled run is shown
    with pytest.raises(JobNotDoneError):
        queue.result(long_job)

    assert queue.wait(next_job, timeout=60).state is JobState.DONE
    assert studio.cached(studio.prepare(generate(20, steps=50))) is None  # nothing stored for it
    assert studio.cached(studio.prepare(generate(21))) is not None


def test_a_shared_job_is_cancelled_only_when_its_last_watcher_leaves(make_queue, spy):
    queue = make_queue()
    spy.gate.clear()
    job = queue.submit(generate(30), session="tab-a")
    assert queue.submit(generate(30), session="tab-b") == job
    wait_until(lambda: queue.status(job).state is JobState.RUNNING, what="the job to start")

    status = queue.cancel(job, session="tab-a")
    assert not status.state.finished and not status.cancel_requested
    assert queue.jobs(session="tab-a") == [] and [s.id for s in queue.jobs(session="tab-b")] == [job]
    queue.cancel(job, session="tab-stranger")  # not its job: no effect
    assert not queue.status(job).cancel_requested and not queue.status(job).state.finished

    assert queue.cancel(job, session="tab-b").cancel_requested
    spy.gate.set()
    assert queue.wait(job, timeout=60).state is JobState.CANCELLED


def test_cancel_group_cancels_what_has_not_finished(make_queue, spy):
    queue = make_queue(max_per_session=8)
    done = queue.submit(generate(40), session="tab", group="batch-1", label="photo 1")
    assert queue.wait(done, timeout=60).state is JobState.DONE
    spy.gate.clear()
    running = queue.submit(generate(41), session="tab", group="batch-1", label="photo 2")
    wait_until(lambda: queue.status(running).state is JobState.RUNNING, what="the job to start")
    queued = queue.submit(generate(42), session="tab", group="batch-1", label="photo 3")
    other = queue.submit(generate(43), session="tab", group="batch-2")

    assert queue.cancel_group("batch-1") == 2
    spy.gate.set()
    states = {status.label: status.state for status in queue.jobs(group="batch-1")}
    assert states["photo 1"] is JobState.DONE and states["photo 3"] is JobState.CANCELLED
    assert queue.wait(running, timeout=60).state is JobState.CANCELLED
    assert queue.status(queued).state is JobState.CANCELLED
    assert queue.result(done).images  # finished images stay available
    assert queue.wait(other, timeout=60).state is JobState.DONE


# -- positions, ETA and limits ---------------------------------------------------------------------


def test_positions_are_consistent_and_eta_shrinks_as_jobs_complete(make_queue, spy):
    queue = make_queue(max_per_session=8)
    first = queue.submit(generate(50, steps=4), session="tab")
    assert queue.status(first).eta_s is None  # nothing measured yet: "estimating…"
    assert queue.wait(first, timeout=60).state is JobState.DONE

    spy.gate.clear()
    ids = [queue.submit(generate(seed, steps=4), session="tab") for seed in range(51, 56)]
    wait_until(lambda: queue.status(ids[0]).state is JobState.RUNNING, what="the job to start")
    snapshot = [status for status in queue.jobs() if status.id in ids]
    assert [status.position for status in snapshot] == [0, 1, 2, 3, 4]
    etas = [status.eta_s for status in snapshot]
    assert all(eta is not None and eta > 0 for eta in etas)
    assert etas == sorted(etas) and len(set(etas)) == len(etas)  # each job waits for the ones ahead

    last_etas = [queue.status(ids[-1]).eta_s]
    spy.gate.set()
    while not queue.status(ids[-1]).state.finished:
        status = queue.status(ids[-1])
        if status.state is JobState.QUEUED:
            assert status.position >= 1 and status.eta_s is not None
            last_etas.append(status.eta_s)
        time.sleep(0.002)
    assert queue.status(ids[-1]).state is JobState.DONE
    assert last_etas[-1] < 0.75 * last_etas[0]  # four jobs ahead became none or one


def test_queue_full_and_session_limit_answer_busy_at_once(make_queue, spy):
    queue = make_queue(max_queue=2, max_per_session=2)
    spy.gate.clear()
    running = queue.submit(generate(60), session="tab-a")
    wait_until(lambda: queue.status(running).state is JobState.RUNNING, what="the job to start")
    queue.submit(generate(61), session="tab-a")

    started = time.perf_counter()
    with pytest.raises(BusyError, match="wait for one to finish"):  # tab-a has 2 unfinished jobs
        queue.submit(generate(62), session="tab-a")
    assert time.perf_counter() - started < 0.05
    assert queue.submit(generate(61), session="tab-a") is not None  # a rerun joins, it is not refused

    queue.submit(generate(63), session="tab-b")  # the queue now holds 2
    started = time.perf_counter()
    with pytest.raises(BusyError, match="2 jobs are waiting"):
        queue.submit(generate(64), session="tab-c")
    assert time.perf_counter() - started < 0.05
    assert queue.queue_length() == 2


# -- failures -----------------------------------------------------------------------------------------


def test_the_worker_survives_a_failing_job(make_queue, photo_and_mask):
    queue = make_queue()
    photo, mask = photo_and_mask
    # A mask that covers everything becomes empty once inverted: the runner refuses it mid-run.
    everything = Image.new("L", photo.size, 255)
    bad = InpaintRequest(model="opencv-telea", image=photo, mask=everything, invert_mask=True, seed=1)
    good = InpaintRequest(model="opencv-telea", image=photo, mask=mask, seed=1)
    failing = queue.submit(bad, session="tab")
    after = queue.submit(good, session="tab")

    failed = queue.wait(failing, timeout=60)
    assert failed.state is JobState.FAILED and failed.error_code == "bad_mask"
    assert failed.error and "\n" not in failed.error
    assert queue.wait(after, timeout=60).state is JobState.DONE


def test_a_base_exception_fails_the_job_and_leaves_no_zombie_to_join(make_queue, spy):
    queue = make_queue()
    spy.fail_with = SystemExit("an engine called sys.exit")  # not an Exception: the runner does not catch it
    first = queue.submit(generate(150), session="tab")
    failed = queue.wait(first, timeout=60)
    assert failed.state is JobState.FAILED and failed.error == UNEXPECTED_MESSAGE
    spy.fail_with = None
    again = queue.submit(generate(150), session="tab")  # the identical request: a new job, never the dead one
    assert again != first
    assert queue.wait(again, timeout=60).state is JobState.DONE  # and the worker is still there to run it


@pytest.mark.parametrize("error", [MemoryError(), "torch"])
def test_out_of_memory_fails_the_job_with_advice_and_the_next_runs(make_queue, spy, error):
    queue = make_queue()
    if error == "torch":
        import torch

        error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    spy.fail_with = error
    failing = queue.submit(generate(70), session="tab")
    failed = queue.wait(failing, timeout=60)
    assert failed.state is JobState.FAILED and failed.error_code == "out_of_memory"
    assert failed.error == OUT_OF_MEMORY_MESSAGE

    spy.fail_with = None
    assert queue.wait(queue.submit(generate(71), session="tab"), timeout=60).state is JobState.DONE


def test_an_unexpected_error_is_a_one_line_message_without_details(tiny_catalogue, tmp_path):
    class BrokenStudio(Studio):
        calls = 0

        def run(self, prepared, report):
            BrokenStudio.calls += 1
            if BrokenStudio.calls == 1:
                raise RuntimeError("segfault-ish trouble in /home/someone/.cache/secret.bin")
            return super().run(prepared, report)

    queue = JobQueue(BrokenStudio(tiny_catalogue, ModelPool(1), ResultStore(tmp_path, 1 << 30)))
    try:
        failed = queue.wait(queue.submit(generate(80), session="tab"), timeout=60)
        assert failed.state is JobState.FAILED and failed.error_code == "engine_error"
        assert "/" not in failed.error and "secret" not in failed.error and "Traceback" not in failed.error
        assert queue.wait(queue.submit(generate(81), session="tab"), timeout=60).state is JobState.DONE
    finally:
        queue.shutdown()


def test_bad_input_is_refused_at_submit_and_queues_nothing(make_queue):
    queue = make_queue()
    with pytest.raises(BadParameterError, match="multiple of 8"):
        queue.submit(generate(90, width=65), session="tab")
    assert queue.jobs() == [] and queue.queue_length() == 0


# -- watching -----------------------------------------------------------------------------------------


def test_a_job_whose_browser_session_is_gone_is_cancelled_and_others_never_are(make_queue, spy, studio):
    queue = make_queue(abandon_after_s=0.5, max_per_session=8)
    spy.gate.clear()
    watched = queue.submit(generate(100, steps=3), session="tab", heartbeat=True)
    api_job = queue.submit(generate(101, steps=3), session="api-client")  # no heartbeat: never abandoned
    batch_job = queue.submit(generate(102, steps=3), session="tab", group="batch-1", heartbeat=True)  # a group: never
    wait_until(lambda: queue.status(watched).state is JobState.RUNNING, what="the job to start")

    for _ in range(20):  # 1 s of the front-end seeing the tab's websocket open (visible or not): kept
        queue.touch_sessions(["tab"])
        time.sleep(0.05)
    assert not queue.status(watched).cancel_requested
    time.sleep(0.7)  # the tab was closed
    queue.touch_sessions([])  # the front-end's next sweep: the tab's session is gone
    assert queue.status(watched).cancel_requested
    spy.gate.set()
    assert queue.wait(watched, timeout=60).state is JobState.CANCELLED
    assert queue.wait(api_job, timeout=60).state is JobState.DONE
    assert queue.wait(batch_job, timeout=60).state is JobState.DONE
    assert studio.cached(studio.prepare(generate(100, steps=3))) is None


def test_jobs_lets_a_session_reattach_to_its_own_jobs(make_queue):
    queue = make_queue()
    mine = queue.submit(generate(110), session="tab-a", label="first")
    theirs = queue.submit(generate(111), session="tab-b")
    assert [(status.id, status.label) for status in queue.jobs(session="tab-a")] == [(mine, "first")]
    assert {status.id for status in queue.jobs()} == {mine, theirs}
    queue.wait(theirs, timeout=60)


def test_preview_of_a_running_diffusion_job_and_none_for_opencv(make_queue, spy, photo_and_mask):
    queue = make_queue()
    job = queue.submit(generate(120, steps=12), session="tab")
    wait_until(lambda: queue.status(job).step >= 2, what="a few steps")
    image = wait_until(lambda: queue.preview(job), what="a preview")
    assert isinstance(image, Image.Image) and image.mode == "RGB" and min(image.size) > 0

    def watch() -> None:  # pages polling the preview as fast as they can
        while not queue.status(job).state.finished:
            queue.preview(job)
            time.sleep(0.001)

    watchers = [threading.Thread(target=watch) for _ in range(3)]
    for thread in watchers:
        thread.start()
    for thread in watchers:
        thread.join(timeout=60)
    assert queue.status(job).state is JobState.DONE
    assert 1 <= spy.renders <= len(set(spy.steps[120]))  # at most one render per step, however many pages look
    assert queue.preview(job) is None  # finished: the result is shown, not a preview

    photo, mask = photo_and_mask
    spy.gate.clear()
    opencv = queue.submit(InpaintRequest(model="opencv-telea", image=photo, mask=mask, seed=2), session="tab")
    wait_until(lambda: queue.status(opencv).state is JobState.RUNNING, what="the job to start")
    assert queue.preview(opencv) is None
    spy.gate.set()
    assert queue.wait(opencv, timeout=60).state is JobState.DONE


def test_shutdown_puts_the_running_job_back_and_the_next_process_runs_everything(make_queue, spy):
    queue = make_queue()
    spy.gate.clear()
    running = queue.submit(generate(130), session="tab")
    wait_until(lambda: queue.status(running).state is JobState.RUNNING, what="the job to start")
    queued = queue.submit(generate(131), session="tab")
    threading.Timer(0.1, spy.gate.set).start()
    queue.shutdown(wait=True)
    assert queue.status(queued).state is JobState.QUEUED
    back = queue.status(running)
    assert back.state is JobState.QUEUED and back.attempts == 0  # released, not lost: no attempt counted
    with pytest.raises(BusyError):
        queue.submit(generate(132), session="tab")

    successor = make_queue(store=queue.store)  # the next process on the same job store
    assert successor.wait(running, timeout=60).state is JobState.DONE
    assert successor.wait(queued, timeout=60).state is JobState.DONE
    assert successor.status(running).attempts == 1


def test_a_flood_of_waiting_requests_loses_no_result_even_when_nothing_is_stored(tiny_catalogue, coffee):
    # No result store and room for no held result: each result lives only in memory, and only while
    # the request that waits for it has not read it yet (issue 13: 1 to 3 of 8 answered "unknown job").
    queue = JobQueue(Studio(tiny_catalogue, ModelPool(1), store=None), keep_result_bytes=1, max_per_session=16)
    results: dict[int, object] = {}
    all_finished = threading.Barrier(8, timeout=120)

    def sync_call(index: int) -> None:
        mask = Image.new("L", coffee.size, 0)
        ImageDraw.Draw(mask).ellipse((50 + 20 * index, 50, 110 + 20 * index, 110), fill=255)
        job = queue.submit(InpaintRequest(model="opencv-telea", image=coffee, mask=mask), session="api:10.0.0.9")
        queue.wait(job, timeout=60)
        all_finished.wait()  # a busy server reads every result late, after every job has finished
        results[index] = queue.result(job)

    try:
        callers = [threading.Thread(target=sync_call, args=(index,)) for index in range(8)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=120)
        assert sorted(results) == list(range(8))
        assert all(result.images[0].size == coffee.size for result in results.values())
        assert queue.held_result_bytes() > 1  # pinned results were not dropped, whatever the cap said
    finally:
        queue.shutdown()
