"""The GPU variant: its code path with NumPy everywhere, parity with the CPU on a GPU."""

import subprocess
import sys

import numpy as np
import pytest
from swift_rules.device import gpu_status

from {{ cookiecutter.package_name }}.stages import JetMultiplicity, jets_above
from {{ cookiecutter.package_name }}.stages_gpu import JetMultiplicityGPU

GPU_USABLE, WHY = gpu_status()  # WHY: the reason shown when the GPU tests skip
needs_gpu = pytest.mark.skipif(not GPU_USABLE, reason=f"no usable GPU here: {WHY}")


def outputs_equal(a, b):
    assert a["events"] == b["events"]
    for sample, h in a["njets"].items():
        np.testing.assert_array_equal(h.values(flow=True), b["njets"][sample].values(flow=True))


def test_module_imports_without_cupy():
    # swift-rules hashes and imports variants on machines without a GPU: no CuPy there.
    code = "import sys, {{ cookiecutter.package_name }}.stages_gpu; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_gpu_code_path_with_numpy(run_stage, monkeypatch):
    # The GPU variant's processing, with NumPy standing in for CuPy: runs everywhere.
    monkeypatch.setattr(JetMultiplicityGPU, "array_namespace", lambda self: np)
    monkeypatch.setattr(JetMultiplicityGPU, "to_host", lambda self, array: array)
    outputs_equal(run_stage(JetMultiplicityGPU()), run_stage(JetMultiplicity()))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("min_pt", [0.0, 25.0, 60.0])
def test_kernel_parity_on_gpu(min_pt):
    import cupy

    rng = np.random.default_rng(7)
    offsets = np.concatenate([[0], np.cumsum(rng.poisson(5, size=10_000))])
    pt = rng.exponential(40.0, size=offsets[-1])
    on_gpu = jets_above(cupy.asarray(pt), cupy.asarray(offsets), min_pt, cupy)
    np.testing.assert_array_equal(cupy.asnumpy(on_gpu), jets_above(pt, offsets, min_pt))


@pytest.mark.gpu
@needs_gpu
def test_stage_parity_on_gpu(run_stage):
    outputs_equal(run_stage(JetMultiplicityGPU()), run_stage(JetMultiplicity()))
