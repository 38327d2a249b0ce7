"""Device and dtype choice, and giving memory back."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from core import devices
from core.errors import BadParameterError


def test_auto_choice_is_the_best_device_this_machine_has():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert devices.pick_device() == expected
    assert devices.pick_device(None) == expected
    assert devices.pick_device("  ") == expected  # an empty STUDIO_DEVICE means auto


def test_cpu_is_always_usable_when_asked_for():
    assert devices.pick_device("cpu") == "cpu"
    assert devices.pick_device(" CPU ") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so cuda is usable")
def test_an_absent_gpu_is_refused_with_the_alternative():
    with pytest.raises(BadParameterError, match="'cuda' is not available on this machine; use 'cpu'"):
        devices.pick_device("cuda")
    with pytest.raises(BadParameterError, match="not available"):
        devices.pick_device("cuda:7")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_an_absent_apple_gpu_is_refused():
    with pytest.raises(BadParameterError, match="'mps' is not available"):
        devices.pick_device("mps")


@pytest.mark.parametrize("name", ["tpu", "gpu", "cpu:0", "cuda:x"])
def test_unknown_or_malformed_devices_are_refused(name):
    with pytest.raises(BadParameterError) as raised:
        devices.pick_device(name)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("device", "dtype"),
    [("cpu", torch.float32), ("cuda", torch.float16), ("cuda:1", torch.float16), ("mps", torch.float16)],
)
def test_half_precision_on_gpus_full_precision_on_cpu(device, dtype):
    assert devices.pick_dtype(device) is dtype


def test_summary_names_the_hardware():
    summary = devices.device_summary("cpu")
    assert summary.startswith("CPU (") and "core" in summary
    assert devices.device_summary().split()[0] in ("CPU", "CUDA:", "Apple")


def test_release_memory_collects_dropped_models():
    model = torch.nn.Linear(512, 512)
    probe = weakref.ref(model)
    cycle = [model]
    cycle.append(cycle)  # only the cycle collector can free this
    del model, cycle
    gc.disable()  # prove that release_memory collects, not the automatic collector
    try:
        devices.release_memory("cpu")
        assert probe() is None
    finally:
        gc.enable()


def test_status_lines_on_a_machine_without_a_gpu_driver_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, core.devices as devices\n"
        "devices._gpu_driver_present = lambda: False  # as on this machine and on Community Cloud\n"
        "print(devices.active_device(), devices.device_summary().startswith('CPU ('), 'torch' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["cpu", "True", "False"]
