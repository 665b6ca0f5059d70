"""The GPU variant of agc::ttbar: parity with the CPU variant, and the device choice.

Without a GPU, the device code runs under numba's CUDA simulator (in a subprocess:
``NUMBA_ENABLE_CUDASIM`` must be set before numba.cuda is imported), with NumPy
standing in for CuPy. The simulator runs each CUDA thread as a Python thread, so
it checks the kernels' logic and indexing, not CUDA's arithmetic or speed: the
``gpu`` test compares the variants on a real device wherever one is usable.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import EVENTS, REPO, run_cli, write_events

from swift_rules.device import gpu_status
from swift_rules.results import load_result
from swift_rules.runner import run_stage

WEIGHTED = ("btag_var_", "scale_var_")  # variations with per-event weights


def assert_parity(cpu, gpu):
    """Counts (unit-weight variations) exactly equal; weighted sums to a relative 1e-6."""
    assert list(cpu.axes["variation"]) == list(gpu.axes["variation"])
    assert list(cpu.axes["region"]) == list(gpu.axes["region"])
    vc, vg = cpu.view(flow=True), gpu.view(flow=True)
    for i, name in enumerate(cpu.axes["variation"]):
        a, b = vc[..., i], vg[..., i]
        if name.startswith(WEIGHTED):
            np.testing.assert_allclose(b.value, a.value, rtol=1e-6, atol=0, err_msg=name)
            np.testing.assert_allclose(b.variance, a.variance, rtol=1e-6, atol=0, err_msg=name)
        else:
            assert np.array_equal(a.value, b.value), name
            assert np.array_equal(a.variance, b.variance), name


# Runs in a subprocess with the CUDA simulator on. StrictNumpy stands in for CuPy and
# refuses what CuPy refuses (an array of repeat counts), so NumPy-only calls show here.
SIMULATED = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np
    from numba import config
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema
    from swift_rules.agc.ttbar import TtbarProcessor
    from swift_rules.agc.ttbar_gpu import TtbarProcessorGPU

    assert config.ENABLE_CUDASIM
    assert "cupy" not in sys.modules

    class StrictNumpy:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def repeat(a, repeats, axis=None):
            if isinstance(repeats, np.ndarray):
                raise ValueError("CuPy refuses an array of repeat counts")
            return np.repeat(a, repeats, axis)

    class Simulated(TtbarProcessorGPU):
        xp = StrictNumpy()

    NanoAODSchema.warn_missing_crossrefs = False
    out = []
    for sample, path, chunksize, chunks in pickle.loads(bytes.fromhex(sys.argv[1])):
        runner = processor.Runner(processor.IterativeExecutor(status=False), chunksize=chunksize,
                                  schema=NanoAODSchema, maxchunks=chunks)
        out.append([runner({sample: [path]}, proc, treename="Events")["hists"][sample]
                    for proc in (TtbarProcessor(), Simulated())])
    with open(sys.argv[2], "wb") as f:
        pickle.dump(out, f)
    """
)


def run_simulated(jobs, tmp_path):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", SIMULATED, pickle.dumps(jobs).hex(), str(tmp_path / "out.pkl")],
        capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-4000:]
    return pickle.loads((tmp_path / "out.pkl").read_bytes())


def test_gpu_variant_equals_cpu_variant_under_the_cuda_simulator(tiny_dataset, tmp_path):
    hand = tmp_path / "hand.root"
    write_events(hand, EVENTS)
    jobs = [
        ("ttbar__nominal", tiny_dataset["ttbar__nominal"][0], 300, 2),  # two chunks
        ("wjets__nominal", tiny_dataset["wjets__nominal"][0], 600, 1),  # W+jets scale weights
        ("ttbar__PS_var", tiny_dataset["ttbar__PS_var"][0], 300, 1),  # variation sample
        ("ttbar__nominal", str(hand), 5, None),  # the hand-built corner cases
    ]
    selected = 0
    for cpu, gpu in run_simulated(jobs, tmp_path):
        assert_parity(cpu, gpu)
        selected += cpu.values().sum()
    assert selected > 100  # enough selected events for the comparison to mean something


def test_device_bin_index_is_boost_histograms():
    """Values on, just below and just above every bin edge, flows, inf and NaN."""
    import hist

    from swift_rules.agc.samples import BINS, HIGH, LOW
    from swift_rules.agc.ttbar_gpu import bin_index

    edges = np.linspace(LOW, HIGH, BINS + 1)
    odd = [0.0, -1e300, 1e300, -np.inf, np.inf, np.nan, 299.99999999999994]
    x = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), odd])
    expected = []
    for value in x:
        h = hist.Hist(hist.axis.Regular(BINS, LOW, HIGH))
        h.fill([value])
        expected.append(int(np.flatnonzero(h.view(flow=True))[0]))
    assert bin_index(x, np).tolist() == expected


def test_cpu_path_never_imports_cupy_and_the_record_names_the_variant(tiny_dataset, tmp_path):
    """A CPU run with both variants registered: CuPy is made unimportable, the result
    says the CPU variant ran, and the run record why."""
    if gpu_status()[0]:
        pytest.skip("a usable GPU is here: auto would pick the GPU variant")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["cupy"] = None  # any import of CuPy fails
        from swift_rules.runner import run_stage
        _, meta = run_stage("agc::ttbar", "ttbar__nominal", [{tiny_dataset["ttbar__nominal"][0]!r}],
                            {str(tmp_path / "cpu.pkl")!r}, progress=False,
                            run_record={str(tmp_path / "cpu.run.json")!r})
        import json
        run = json.load(open({str(tmp_path / "cpu.run.json")!r}))
        print(meta["variant"], "|", run["device_reason"], "|", sys.modules["cupy"] is None)
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("SWIFT_RULES_DEVICE", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    variant, reason, still_blocked = (
        p.strip() for p in proc.stdout.strip().splitlines()[-1].split("|")
    )
    assert variant == "cpu" and still_blocked == "True"
    assert reason == f"auto: {gpu_status()[1]}"
    assert load_result(tmp_path / "cpu.pkl")[1]["variant_target"].endswith(":TtbarProcessor")


def test_stages_command_shows_the_gpu_variant_and_the_choice():
    out = run_cli("stages").stdout
    block = out.split("agc::ttbar", 1)[1]
    assert "gpu: swift_rules.agc.ttbar_gpu:TtbarProcessorGPU" in block
    usable, why = gpu_status()
    assert f"would run: {'gpu' if usable else 'cpu'} (auto: {why})" in block


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_status()[0], reason=f"no usable CUDA device: {gpu_status()[1]}")
@pytest.mark.parametrize("sample", ["ttbar__nominal", "wjets__nominal", "ttbar__PS_var"])
def test_gpu_variant_equals_cpu_variant_on_the_gpu(tiny_dataset, tmp_path, monkeypatch, sample):
    hists = {}
    for dev in ("cpu", "gpu"):
        monkeypatch.setenv("SWIFT_RULES_DEVICE", dev)
        files = tiny_dataset[sample]
        output, meta = run_stage("agc::ttbar", sample, files, tmp_path / f"{dev}.pkl",
                                 stage_config={"chunksize": 1000}, progress=False)  # fmt: skip
        assert meta["variant"] == dev
        hists[dev] = output["hists"][sample]
    assert_parity(hists["cpu"], hists["gpu"])
    assert hists["cpu"].values().sum() > 0
