"""The H -> tautau data generator: the input format of the original, determinism, presets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from swift_rules.chunks import chunk_len, concat_chunks
from swift_rules.htautau import generate, inputs
from swift_rules.htautau.generator import HttGenerator
from swift_rules.htautau.presets import DATA_COMPOSITION, DATA_EVENTS
from swift_rules.htautau.samples import LUMINOSITY_PB, MC_SAMPLES, SAMPLE_NAMES, SAMPLES

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "swift_rules" / "htautau"

# Every branch skim.cxx reads, with the type the outreach tool (AOD2NanoAOD.cc) writes:
# its Filters and Defines, the columns of build_pair, DeclareVariables, CheckGeneratorTaus
# (simulation only) and the "run" of finalVariables.
READ_BY_SKIM = {
    "HLT_IsoMu17_eta2p1_LooseIsoPFTau20": "bool",
    "nMuon": "uint32", "Muon_eta": "float32", "Muon_pt": "float32", "Muon_tightId": "bool",
    "Muon_phi": "float32", "Muon_mass": "float32", "Muon_pfRelIso03_all": "float32",
    "Muon_charge": "int32",
    "nTau": "uint32", "Tau_charge": "int32", "Tau_eta": "float32", "Tau_pt": "float32",
    "Tau_idDecayMode": "bool", "Tau_idIsoTight": "bool", "Tau_idAntiEleTight": "bool",
    "Tau_idAntiMuTight": "bool", "Tau_relIso_all": "float32", "Tau_phi": "float32",
    "Tau_mass": "float32", "Tau_decayMode": "int32",
    "MET_pt": "float32", "MET_phi": "float32", "PV_npvs": "int32",
    "nJet": "uint32", "Jet_puId": "bool", "Jet_eta": "float32", "Jet_pt": "float32",
    "Jet_phi": "float32", "Jet_mass": "float32", "Jet_btag": "float32",
    "run": "int32",
}  # fmt: skip
READ_BY_SKIM_MC = {"GenPart_pdgId": "int32", "Muon_genPartIdx": "int32", "Tau_genPartIdx": "int32"}


def _types(path) -> dict[str, str]:
    """Branch name -> numpy dtype of its values (of its content, for a jagged branch)."""
    with uproot.open(path) as f:
        out = {}
        for b in f["Events"].branches:
            interp = b.interpretation
            interp = getattr(interp, "content", interp)
            out[b.name] = interp.numpy_dtype.newbyteorder("=").name
        return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("htt-gen")
    paths = {}
    for name in ("DYJetsToLL", "Run2012B_TauPlusX"):
        paths[name] = out / f"{name}.root"
        assert generate.generate_file(paths[name], name, 700, file_index=2, seed=3) == 700
    return paths


@pytest.mark.parametrize("dataset", ["DYJetsToLL", "Run2012B_TauPlusX"])
def test_files_have_the_tools_branches_names_types_and_order(files, dataset):
    is_data = SAMPLES[dataset].get("is_data", False)
    with uproot.open(files[dataset]) as f:
        assert f["Events"].classname == "TTree" and f["Events"].title == "Events"
        names = list(f["Events"].keys())
        titles = {b.name: b.title for b in f["Events"].branches}
    expected = {k: np.dtype(v).name for k, v in inputs.branch_types(is_data).items()}
    assert names == list(expected)  # the tool's branches, in its order
    types = {k: np.dtype(v).name for k, v in _types(files[dataset]).items()}
    assert types == expected
    # counters are unsigned (nMuon/i), jagged branches count with them (Muon_pt[nMuon]/F)
    assert titles["nMuon"] == "nMuon/i" and titles["Muon_pt"] == "Muon_pt[nMuon]/F"
    assert titles["run"] == "run/I" and titles["event"] == "event/l"


@pytest.mark.parametrize("dataset", ["DYJetsToLL", "Run2012B_TauPlusX"])
def test_every_branch_skim_cxx_reads_is_there_with_its_type(files, dataset):
    is_data = SAMPLES[dataset].get("is_data", False)
    types = {k: np.dtype(v).name for k, v in _types(files[dataset]).items()}
    wanted = READ_BY_SKIM if is_data else {**READ_BY_SKIM, **READ_BY_SKIM_MC}
    assert {k: types.get(k) for k in wanted} == wanted
    assert is_data == ("GenPart_pdgId" not in types)  # data has no generator particles


def test_the_format_is_the_tools_declaration():
    # AOD2NanoAOD.cc: run Int_t, luminosityBlock UInt_t, event ULong64_t; /O /I /F /i leaves
    types = inputs.branch_types(is_data=False)
    assert (types["run"], types["luminosityBlock"], types["event"]) == ("i4", "u4", "u8")
    assert types["nMuon"] == types["nTau"] == types["nJet"] == types["nGenPart"] == "u4"
    assert types["Tau_decayMode"] == "i4" and types["Jet_puId"] == "?"
    assert list(inputs.TAU_FIELDS)[-1] == "idAntiMuTight" and len(inputs.TAU_FIELDS) == 21
    assert "nGenPart" not in inputs.branch_types(is_data=True)


def test_generator_matching_as_the_tool_fills_it(files):
    arrays = generate.generate_arrays("DYJetsToLL", 2000, seed=4)
    n_gen = ak.num(arrays["GenPart_pdgId"])
    for name in ("Muon", "Tau"):
        idx = arrays[f"{name}_genPartIdx"]
        assert ak.all((idx >= 0) & (idx < n_gen)), name  # every object of simulation matched
    # one generator particle per reconstructed muon, electron and tau, in that order
    total = arrays["nMuon"] + arrays["nElectron"] + arrays["nTau"]
    assert np.array_equal(ak.to_numpy(n_gen), np.where(ak.to_numpy(n_gen) > 0, total, 0))
    pdg = ak.flatten(abs(arrays["GenPart_pdgId"]))
    assert set(np.unique(ak.to_numpy(pdg))) <= {11, 13, 15}
    data = generate.generate_arrays("Run2012C_TauPlusX", 500, seed=4)
    assert "GenPart_pdgId" not in data
    assert ak.all(data["Muon_genPartIdx"] == -1) and ak.all(data["Tau_jetIdx"] == -1)


def test_same_inputs_same_events_and_chunking_does_not_matter(tmp_path):
    a = generate.generate_arrays("W2JetsToLNu", 1200, file_index=1, seed=9)
    b = generate.generate_arrays("W2JetsToLNu", 1200, file_index=1, seed=9)
    for key in a:
        assert ak.array_equal(a[key], b[key]), key
    chunks = list(generate.iter_chunks("W2JetsToLNu", 1200, file_index=1, seed=9, chunk_size=250))
    assert [chunk_len(c) for c in chunks] == [250, 250, 250, 250, 200]
    joined = generate._to_arrays(concat_chunks(chunks))
    for key in a:
        assert ak.array_equal(a[key], joined[key]), key
    other = generate.generate_arrays("W2JetsToLNu", 1200, file_index=1, seed=10)
    assert not ak.array_equal(a["Muon_pt"], other["Muon_pt"])
    next_file = generate.generate_arrays("W2JetsToLNu", 1200, file_index=2, seed=9)
    assert not ak.array_equal(a["Muon_pt"], next_file["Muon_pt"])
    assert a["event"][0] == 10**9 + 1 and next_file["event"][-1] == 2 * 10**9 + 1200


def test_files_are_written_identically(tmp_path):
    def content(path):
        with uproot.open(path) as f:
            return f["Events"].arrays(library="np")

    generate.generate_file(tmp_path / "a.root", "TTbar", 600, seed=1, chunk_size=100)
    generate.generate_file(tmp_path / "b.root", "TTbar", 600, seed=1)
    a, b = content(tmp_path / "a.root"), content(tmp_path / "b.root")
    assert all(
        np.array_equal(np.concatenate(list(a[k])) if a[k].dtype == object else a[k],
                       np.concatenate(list(b[k])) if b[k].dtype == object else b[k])
        for k in a
    )  # fmt: skip


def test_data_runs_and_unknown_datasets():
    arrays = generate.generate_arrays("Run2012C_TauPlusX", 300, seed=1)
    assert np.all(arrays["run"] >= 198022) and arrays["run"].dtype == np.int32
    with pytest.raises(ValueError, match="unknown dataset"):
        generate.generate_arrays("NoSuchSample", 10)


def test_presets_sizes_and_metadata():
    gen = HttGenerator()
    assert set(gen.presets) == {"tiny", "small", "benchmark"}
    for preset in gen.presets:
        datasets = gen.datasets(preset)
        assert list(datasets) == SAMPLE_NAMES
        for name, spec in datasets.items():
            meta = spec["metadata"]
            assert meta["is_data"] == bool(SAMPLES[name].get("is_data"))
            assert meta["process"] == SAMPLES[name]["process"]
            if not meta["is_data"]:  # effective cross section: the toy's share of the data
                assert meta["xsec_original"] == SAMPLES[name]["xsec"]
                assert meta["xsec"] == pytest.approx(
                    DATA_COMPOSITION[name] * DATA_EVENTS[preset] / LUMINOSITY_PB
                )
        data = sum(s["files"] * s["events"] for n, s in datasets.items() if "Run" in n)
        assert data == DATA_EVENTS[preset]
    tiny = gen.datasets("tiny")
    assert all(2000 <= s["files"] * s["events"] <= 7000 for s in tiny.values())
    bench = gen.datasets("benchmark")
    assert sum(s["files"] * s["events"] for s in bench.values()) >= 5_000_000
    assert sum(DATA_COMPOSITION.values()) == pytest.approx(1.0)
    assert set(DATA_COMPOSITION) == {*MC_SAMPLES, "QCD"}


def test_generator_write(tmp_path):
    path = tmp_path / "ggH.root"
    assert HttGenerator().write(path, "GluGluToHToTauTau", 0, 250, 42, "lz4") == 250
    with uproot.open(path) as f:
        assert f["Events"].num_entries == 250
        meta = json.loads(str(f[generate.METADATA_KEY]))
    assert meta["dataset"] == "GluGluToHToTauTau" and meta["seed"] == 42


def test_generator_module_and_samples_are_light():
    code = (
        "import sys; import swift_rules.htautau.generator, swift_rules.htautau.samples, "
        "swift_rules.htautau.variables, swift_rules.htautau.inputs, swift_rules.htautau.presets; "
        "print(sorted(m for m in ('numpy', 'uproot', 'awkward', 'coffea') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_names_importable_classes_and_the_fileset():
    import importlib

    registry = yaml.safe_load((PACKAGE / "registry.yaml").read_text())
    assert set(registry["register"]) == {"htautau::skim", "htautau::histograms"}
    paths = [v["cpu"] for v in registry["register"].values()]
    paths += list(registry["generators"].values())
    for path in paths:
        module, _, name = path.partition(":")
        assert hasattr(importlib.import_module(module), name), path
    assert (PACKAGE / registry["filesets"]["htautau"]).is_file()


def test_shipped_fileset_has_the_real_files():
    fileset = json.loads((PACKAGE / "data" / "fileset.json").read_text())
    assert list(fileset) == SAMPLE_NAMES
    for name, spec in fileset.items():
        ((url, entry),) = spec["files"].items()
        assert (
            url
            == f"root://eospublic.cern.ch//eos/opendata/cms/derived-data/AOD2NanoAODOutreachTool/{name}.root"
        )
        meta = spec["metadata"]
        assert meta["is_data"] == bool(SAMPLES[name].get("is_data"))
        if not meta["is_data"]:  # the original's cross section and event count
            assert meta["xsec"] == SAMPLES[name]["xsec"]
            assert entry == {"object_path": "Events", "num_entries": SAMPLES[name]["nevents"]}


@pytest.mark.parametrize("dataset", ["DYJetsToLL", "Run2012B_TauPlusX"])
def test_the_branches_the_skim_requires_are_in_every_file(files, dataset):
    from swift_rules.htautau.skim import HttSkim

    required = set(HttSkim().required_branches())
    assert required <= set(_types(files[dataset]))
    assert required | {"GenPart_pdgId"} >= set(READ_BY_SKIM) | set(READ_BY_SKIM_MC)
