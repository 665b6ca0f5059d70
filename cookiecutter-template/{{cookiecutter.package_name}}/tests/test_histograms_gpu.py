"""The GPU variant of the histogram stage: its code path with NumPy everywhere, and
parity with the CPU variant on a GPU."""

import subprocess
import sys

import numpy as np
import pytest
from swift_rules.device import gpu_status

from {{ cookiecutter.package_name }}.histograms import Histograms, dimuon_mass, jets_above
from {{ cookiecutter.package_name }}.histograms_gpu import HistogramsGPU

GPU_USABLE, WHY = gpu_status()  # WHY: the reason shown when the GPU tests skip
needs_gpu = pytest.mark.skipif(not GPU_USABLE, reason=f"no usable GPU here: {WHY}")


def outputs_equal(a, b):
    assert set(a) == set(b)
    for name, h in a.items():
        assert list(h.axes["process"]) == list(b[name].axes["process"])
        np.testing.assert_array_equal(h.values(flow=True), b[name].values(flow=True))


def test_module_imports_without_cupy():
    # swift-rules hashes and imports variants on machines without a GPU: no CuPy there.
    code = "import sys, {{ cookiecutter.package_name }}.histograms_gpu; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("dataset", ["signal", "data"])
def test_gpu_code_path_with_numpy(run_on_skim, monkeypatch, dataset):
    # The GPU variant's processing, with NumPy standing in for CuPy: runs everywhere.
    monkeypatch.setattr(HistogramsGPU, "array_namespace", lambda self: np)
    monkeypatch.setattr(HistogramsGPU, "to_host", lambda self, array: array)
    outputs_equal(run_on_skim(HistogramsGPU(), dataset), run_on_skim(Histograms(), dataset))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("min_pt", [0.0, 30.0, 60.0])
def test_kernel_parity_on_gpu(min_pt):
    import cupy

    rng = np.random.default_rng(7)
    offsets = np.concatenate([[0], np.cumsum(rng.poisson(5, size=10_000))])
    pt = rng.exponential(40.0, size=offsets[-1])
    on_gpu = jets_above(cupy.asarray(pt), cupy.asarray(offsets), min_pt, cupy)
    np.testing.assert_array_equal(cupy.asnumpy(on_gpu), jets_above(pt, offsets, min_pt))
    # The mass: the same formula, equal to the last few bits.
    muons = [rng.exponential(40.0, 10_000), rng.normal(0, 1.5, 10_000),
             rng.uniform(-np.pi, np.pi, 10_000), np.full(10_000, 0.105658)]  # fmt: skip
    other = [rng.exponential(40.0, 10_000), *muons[1:]]
    cpu = dimuon_mass(*muons, *other)
    gpu = cupy.asnumpy(dimuon_mass(*(cupy.asarray(a) for a in muons + other), xp=cupy))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-12)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dataset", ["signal", "background", "data"])
def test_stage_parity_on_gpu(run_on_skim, dataset):
    outputs_equal(run_on_skim(HistogramsGPU(), dataset), run_on_skim(Histograms(), dataset))
