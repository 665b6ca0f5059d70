"""The toy generator: its presets, its files' NanoAOD branches, determinism, and data
that is the mixture of the simulated processes."""

import json
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import uproot
from swift_rules.datasets import parse_fileset

from {{ cookiecutter.package_name }}.generate import generate_events
from {{ cookiecutter.package_name }}.generator import DATASETS, LUMINOSITY_PB, ToyGenerator

NANOAOD_TYPES = {
    "run": "uint32_t", "luminosityBlock": "uint32_t", "event": "uint64_t",
    "nMuon": "int32_t", "Muon_pt": "float[]", "Muon_eta": "float[]", "Muon_phi": "float[]",
    "Muon_mass": "float[]", "Muon_charge": "int32_t[]", "Muon_tightId": "bool[]",
    "Muon_pfRelIso04_all": "float[]", "nJet": "int32_t", "Jet_pt": "float[]",
    "Jet_eta": "float[]", "Jet_phi": "float[]", "Jet_mass": "float[]",
    "Jet_btagDeepFlavB": "float[]",
}  # fmt: skip


@pytest.mark.parametrize("preset", list(ToyGenerator.presets))
def test_presets_are_coffea_datasets_with_data_and_simulation(preset):
    datasets = ToyGenerator().datasets(preset)
    # The metadata swift-rules reads (is_data, xsec, process) passes its own checks.
    fileset = {name: {"files": [f"{name}.root"], "metadata": spec["metadata"]}
               for name, spec in datasets.items()}  # fmt: skip
    parsed = parse_fileset(fileset, "the toy generator")
    assert sorted(name for name, ds in parsed.items() if ds.is_data) == ["data"]
    # The data is what the simulation predicts at the toy's luminosity.
    data = datasets["data"]["files"] * datasets["data"]["events"]
    xsec = sum(m.get("xsec", 0.0) for m in DATASETS.values())
    assert data == round(xsec * LUMINOSITY_PB)


def test_branches_are_named_and_typed_as_in_nanoaod(generated):
    for name, (path, events, _) in generated.items():
        with uproot.open(path) as f:
            tree = f["Events"]
            types = {key: tree[key].typename for key in tree.keys()}
            assert tree.num_entries == events
        for key, typename in NANOAOD_TYPES.items():
            assert types[key] == typename, (name, key)
        # Simulation has generator weights; data has none.
        assert ("genWeight" in types) == (name != "data")


def test_same_seed_same_events_other_seed_other_events():
    one = generate_events("background", 500, index=3, seed=7)
    again = generate_events("background", 500, index=3, seed=7)
    other = generate_events("background", 500, index=3, seed=8)
    assert ak.array_equal(one["Muon"], again["Muon"]) and ak.array_equal(one["Jet"], again["Jet"])
    assert not ak.array_equal(one["Muon"].pt, other["Muon"].pt)
    # Event numbers are unique across a dataset's files.
    assert one["event"][0] == 3 * 10_000_000 + 1


def test_objects_are_ordered_by_decreasing_pt_within_acceptance():
    events = generate_events("signal", 1000)
    for name in ("Muon", "Jet"):
        pt = events[name].pt
        assert ak.all(pt[:, :-1] >= pt[:, 1:])
    assert ak.all(abs(events["Muon"].eta) < 2.4)


def test_data_is_the_mixture_of_signal_and_background():
    data = generate_events("data", 3000, seed=1)
    signal = generate_events("signal", 3000, seed=1)
    background = generate_events("background", 3000, seed=1)
    xsec = {name: DATASETS[name]["xsec"] for name in ("signal", "background")}
    fraction = xsec["signal"] / sum(xsec.values())
    # The jet multiplicity tells the two apart: the data's mean is the weighted mean.
    mean = {name: ak.mean(ak.num(e["Jet"])) for name, e in
            (("data", data), ("signal", signal), ("background", background))}  # fmt: skip
    expected = fraction * mean["signal"] + (1 - fraction) * mean["background"]
    assert mean["data"] == pytest.approx(expected, abs=0.1)
    # Its own random numbers: not a copy of the simulated events.
    assert not ak.array_equal(data["Muon"].pt[:100], signal["Muon"].pt[:100])


def test_signal_is_a_peak_at_the_z_mass(generated):
    import hist

    from {{ cookiecutter.package_name }}.histograms import dimuon_mass

    with uproot.open(generated["signal"].path) as f:
        mu = f["Events"].arrays(["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass"])
    two = mu[ak.num(mu.Muon_pt) >= 2]
    cols = [ak.to_numpy(two[f"Muon_{f}"][:, i]).astype(np.float64)
            for i in (0, 1) for f in ("pt", "eta", "phi", "mass")]  # fmt: skip
    mass = dimuon_mass(*cols)
    h = hist.Hist.new.Reg(60, 60, 120, name="m").Double().fill(m=mass)
    assert 89.0 < h.axes[0].centers[h.values().argmax()] < 93.0
    assert np.median(mass) == pytest.approx(91.2, abs=1.0)


def test_generator_module_is_light():
    # Imported whenever the workflow is planned: no numpy or uproot until a file is written.
    code = ("import sys, {{ cookiecutter.package_name }}.generator; "
            "print(sorted({'numpy', 'uproot', 'awkward'} & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_registered_generator_writes_a_coffea_fileset(project, tmp_path):
    # What the workflow's jobs run, through registry.yaml's registration.
    proc = subprocess.run(
        [sys.executable, "-m", "swift_rules", "generate", "{{ cookiecutter.namespace }}::toy",
         "--registry", str(project / "registry.yaml"), "--preset", "tiny", "--events", "50",
         "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fileset = json.loads((tmp_path / "fileset.json").read_text())
    assert sorted(fileset) == ["background", "data", "signal"]
    assert fileset["data"]["metadata"] == {"is_data": True, "process": "data"}
    entries = [f["num_entries"] for f in fileset["background"]["files"].values()]
    assert entries == [50, 50]
