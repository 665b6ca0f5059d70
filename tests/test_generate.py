"""Tests of the deterministic NanoAOD-format generator (swift_rules.agc.generate)."""

from __future__ import annotations

import json
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot

from swift_rules.agc import generate as gen
from swift_rules.agc import samples

EXPECTED_BRANCHES = {
    "run": "uint32",
    "luminosityBlock": "uint32",
    "event": "uint64",
    "genWeight": "float32",
    "PV_npvs": "int32",
    "MET_pt": "float32",
    "MET_phi": "float32",
    "nJet": "int32",
    "Jet_pt": "float32",
    "Jet_eta": "float32",
    "Jet_phi": "float32",
    "Jet_mass": "float32",
    "Jet_btagCSVV2": "float32",
    "Jet_btagDeepFlavB": "float32",
    "Jet_jetId": "int32",
    "Jet_hadronFlavour": "int32",
    "nElectron": "int32",
    "Electron_pt": "float32",
    "Electron_eta": "float32",
    "Electron_phi": "float32",
    "Electron_mass": "float32",
    "Electron_charge": "int32",
    "Electron_cutBased": "int32",
    "Electron_sip3d": "float32",
    "Electron_pfRelIso03_all": "float32",
    "nMuon": "int32",
    "Muon_pt": "float32",
    "Muon_eta": "float32",
    "Muon_phi": "float32",
    "Muon_mass": "float32",
    "Muon_charge": "int32",
    "Muon_tightId": "bool",
    "Muon_sip3d": "float32",
    "Muon_pfRelIso04_all": "float32",
}


def _read(path) -> dict[str, ak.Array]:
    with uproot.open(path) as f:
        return f["Events"].arrays(library="ak", how=dict)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert ak.array_equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def ttbar_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "ttbar.root"
    assert gen.generate_file(path, "ttbar", "nominal", 2000, file_index=3) == 2000
    return path


def test_branch_names_and_types(ttbar_file):
    with uproot.open(ttbar_file) as f:
        tree = f["Events"]
        assert tree.classname.startswith("TTree")
        assert tree.num_entries == 2000
        assert set(tree.keys()) == set(EXPECTED_BRANCHES)
        for name, dtype in EXPECTED_BRANCHES.items():
            interp = tree[name].interpretation
            inner = getattr(interp, "content", interp)
            assert inner.to_dtype.name == dtype, name
        # Metadata describing how the file was made.
        meta = json.loads(str(f[gen.METADATA_KEY]))
        assert meta["process"] == "ttbar" and meta["n_events"] == 2000
    arrays = _read(ttbar_file)
    assert ak.all(arrays["nJet"] == ak.num(arrays["Jet_pt"]))
    assert ak.all(arrays["run"] == 1)
    assert ak.all(arrays["luminosityBlock"] == 4)
    assert ak.all(arrays["event"] == 3 * gen.EVENT_STRIDE + np.arange(1, 2001))
    assert set(np.unique(ak.flatten(arrays["Jet_jetId"]))) <= {0, 2, 6}
    assert set(np.unique(ak.flatten(arrays["Jet_hadronFlavour"]))) <= {0, 4, 5}
    assert set(np.unique(ak.flatten(arrays["Electron_cutBased"]))) <= {0, 1, 2, 3, 4}
    assert set(np.unique(ak.flatten(arrays["Muon_charge"]))) <= {-1, 1}
    for name in ("Jet_btagCSVV2", "Jet_btagDeepFlavB"):
        values = ak.flatten(arrays[name])
        assert ak.min(values) >= 0 and ak.max(values) <= 1
    assert ak.min(ak.flatten(arrays["Jet_pt"])) >= 15
    # Mostly tight jets, and the W lepton mostly passes the tight ID.
    assert 0.9 < ak.mean(ak.flatten(arrays["Jet_jetId"]) == 6) < 1.0
    # phi in [-pi, pi], up to the rounding of the stored mantissa (as in NanoAOD).
    for name in ("MET_phi", "Jet_phi", "Electron_phi", "Muon_phi"):
        assert ak.all(np.abs(ak.ravel(arrays[name])) <= np.pi + 2e-3), name


def test_collections_sorted_by_pt(ttbar_file):
    arrays = _read(ttbar_file)
    for coll in ("Jet", "Electron", "Muon"):
        pt = arrays[f"{coll}_pt"]
        assert ak.all(pt[:, :-1] >= pt[:, 1:]), coll


def test_same_arguments_same_contents(tmp_path, ttbar_file):
    again = tmp_path / "again.root"
    gen.generate_file(again, "ttbar", "nominal", 2000, file_index=3, compression="lz4")
    _assert_same(_read(ttbar_file), _read(again))
    # The in-memory arrays are those of the file.
    _assert_same(_read(ttbar_file), gen.generate_arrays("ttbar", "nominal", 2000, file_index=3))


def test_contents_independent_of_chunking(tmp_path, monkeypatch):
    # Small generation blocks so that chunks cross block boundaries.
    monkeypatch.setattr(gen, "BLOCK_SIZE", 1000)
    ref = gen.generate_arrays("wjets", "nominal", 3500, file_index=1, seed=7)
    for chunk_size in (300, 1000, 2500):
        path = tmp_path / f"c{chunk_size}.root"
        gen.generate_file(
            path, "wjets", "nominal", 3500, file_index=1, seed=7, chunk_size=chunk_size
        )
        with uproot.open(path) as f:
            assert f["Events"]["Jet_pt"].num_baskets == -(-3500 // chunk_size)
        _assert_same(ref, _read(path))
    chunks = list(gen.iter_chunks("wjets", "nominal", 3500, file_index=1, seed=7, chunk_size=800))
    assert [len(c["run"]) for c in chunks] == [800, 800, 800, 800, 300]


def test_seed_process_variation_change_events():
    base = gen.generate_arrays("ttbar", "nominal", 500)
    for other in (
        gen.generate_arrays("ttbar", "nominal", 500, seed=43),
        gen.generate_arrays("ttbar", "scaleup", 500),
        gen.generate_arrays("ttbar", "nominal", 500, file_index=1),
    ):
        assert not ak.array_equal(base["Jet_pt"], other["Jet_pt"])


def test_event_ids_unique_within_sample_set(tmp_path):
    fileset = gen.generate_dataset(
        tmp_path,
        events_per_file=700,
        files_per_sample=3,
        samples=[("single_top_tW", "nominal")],
    )
    ids = []
    for entry in fileset["single_top_tW"]["nominal"]["files"]:
        a = _read(entry["path"])
        ids.append(
            np.stack(
                [np.asarray(a[k], np.uint64) for k in ("run", "luminosityBlock", "event")], axis=1
            )
        )
    ids = np.concatenate(ids)
    assert len(ids) == 2100
    assert len(np.unique(ids, axis=0)) == 2100
    assert len(np.unique(ids[:, 2])) == 2100


def test_generate_dataset_layout_and_skip(tmp_path):
    sets = [("ttbar", "nominal"), ("ttbar", "PS_var"), ("wjets", "nominal")]
    events = {"ttbar__nominal": 600, "ttbar__PS_var": 300, "wjets__nominal": 400}
    files = {"ttbar__nominal": 2, "ttbar__PS_var": 1, "wjets__nominal": 2}
    fileset = gen.generate_dataset(
        tmp_path, events_per_file=events, files_per_sample=files, samples=sets
    )
    on_disk = json.loads((tmp_path / "fileset.json").read_text())
    assert on_disk == fileset
    assert set(fileset) == {"ttbar", "wjets"}
    assert set(fileset["ttbar"]) == {"nominal", "PS_var"}
    for process, variation in sets:
        name = samples.sample_name(process, variation)
        entry = fileset[process][variation]
        assert [f["nevts"] for f in entry["files"]] == [events[name]] * files[name]
        assert entry["nevts_total"] == events[name] * files[name]
        for i, f in enumerate(entry["files"]):
            assert f["path"] == str(tmp_path / name / f"{name}_{i:04d}.root")
            with uproot.open(f["path"]) as rf:
                assert rf["Events"].num_entries == f["nevts"]
    assert not list(tmp_path.rglob(".tmp-*"))

    # A second run with the same settings rewrites nothing.
    first = tmp_path / "ttbar__nominal" / "ttbar__nominal_0001.root"
    stamp = first.stat().st_mtime_ns
    again = gen.generate_dataset(
        tmp_path, events_per_file=events, files_per_sample=files, samples=sets
    )
    assert again == fileset
    assert first.stat().st_mtime_ns == stamp
    # A different number of events does rewrite.
    events["ttbar__nominal"] = 500
    gen.generate_dataset(
        tmp_path,
        events_per_file=events,
        files_per_sample=files,
        samples=["ttbar__nominal"],
        fileset_name="other.json",
    )
    with uproot.open(first) as rf:
        assert rf["Events"].num_entries == 500
    assert set(json.loads((tmp_path / "other.json").read_text())) == {"ttbar"}


def test_generate_dataset_argument_errors(tmp_path):
    with pytest.raises(KeyError, match="wjets__nominal"):
        gen.generate_dataset(
            tmp_path,
            events_per_file={"ttbar__nominal": 10},
            files_per_sample=1,
            samples=["ttbar__nominal", "wjets__nominal"],
        )
    with pytest.raises(ValueError, match="unknown process"):
        gen.generate_file(tmp_path / "x.root", "zjets", "nominal", 10)
    with pytest.raises(ValueError, match="unknown variation"):
        gen.generate_file(tmp_path / "x.root", "ttbar", "up", 10)
    with pytest.raises(ValueError, match="compression"):
        gen.generate_file(tmp_path / "x.root", "ttbar", "nominal", 10, compression="gzip")
    assert not (tmp_path / "x.root").exists()


def test_zero_events_and_compression_options(tmp_path):
    assert gen.generate_file(tmp_path / "empty.root", "ttbar", "nominal", 0) == 0
    with uproot.open(tmp_path / "empty.root") as f:
        assert f["Events"].num_entries == 0
        assert set(f["Events"].keys()) == set(EXPECTED_BRANCHES)
    ref = gen.generate_arrays("single_top_s_chan", "nominal", 300)
    for comp in ("zlib:1", "lz4", "zstd", "none"):
        path = tmp_path / f"{comp.replace(':', '_')}.root"
        gen.generate_file(path, "single_top_s_chan", "nominal", 300, compression=comp)
        _assert_same(ref, _read(path))


def test_presets():
    totals = {name: gen.preset_total(name) for name in gen.DEFAULT_SIZES}
    assert 20_000 <= totals["tiny"] <= 40_000
    assert 300_000 <= totals["small"] <= 500_000
    assert totals["benchmark"] >= 4_000_000
    for events, files in gen.DEFAULT_SIZES.values():
        names = {samples.sample_name(p, v) for p, v in samples.SAMPLE_SETS}
        assert set(events) == set(files) == names
        nominal = events["ttbar__nominal"] * files["ttbar__nominal"]
        for var in ("scaleup", "scaledown", "ME_var", "PS_var"):
            assert nominal > events[f"ttbar__{var}"] * files[f"ttbar__{var}"]
    events, files = gen.DEFAULT_SIZES["tiny"]
    assert all(1 <= n <= 2 for n in files.values())


def _analysis_counts(arrays):
    """The AGC selection, in plain awkward: number of good jets, b-tags, pass flags."""
    ele_ok = (
        (arrays["Electron_pt"] > 30)
        & (np.abs(arrays["Electron_eta"]) < 2.1)
        & (arrays["Electron_cutBased"] == 4)
        & (arrays["Electron_sip3d"] < 4)
    )
    mu_ok = (
        (arrays["Muon_pt"] > 30)
        & (np.abs(arrays["Muon_eta"]) < 2.1)
        & arrays["Muon_tightId"]
        & (arrays["Muon_sip3d"] < 4)
        & (arrays["Muon_pfRelIso04_all"] < 0.15)
    )
    jet_ok = (
        (arrays["Jet_pt"] > 30) & (np.abs(arrays["Jet_eta"]) < 2.4) & (arrays["Jet_jetId"] == 6)
    )
    n_lep = ak.sum(ele_ok, axis=1) + ak.sum(mu_ok, axis=1)
    n_jet = ak.sum(jet_ok, axis=1)
    n_b = ak.sum(jet_ok & (arrays["Jet_btagCSVV2"] > 0.5), axis=1)
    base = (n_lep == 1) & (n_jet >= 4)
    return n_jet, n_b, base & (n_b == 1), base & (n_b >= 2)


def test_physics_ttbar_vs_wjets():
    tt = _analysis_counts(gen.generate_arrays("ttbar", "nominal", 4000))
    wj = _analysis_counts(gen.generate_arrays("wjets", "nominal", 4000))
    assert ak.mean(tt[0]) > ak.mean(wj[0]) + 1.5
    assert ak.mean(tt[1]) > ak.mean(wj[1]) + 0.8
    # ttbar: a few percent per region, more 4j2b than 4j1b; wjets: nearly nothing.
    assert 0.01 < ak.mean(tt[2]) < ak.mean(tt[3]) < 0.15
    assert ak.mean(wj[2]) < 0.005 and ak.mean(wj[3]) < 0.002
    # b-jets are b-tagged most of the time, light jets rarely.
    a = gen.generate_arrays("ttbar", "nominal", 2000)
    flav = ak.flatten(a["Jet_hadronFlavour"])
    tagged = ak.flatten(a["Jet_btagCSVV2"]) > 0.5
    central = np.abs(ak.flatten(a["Jet_eta"])) < 2.4
    assert 0.6 < ak.mean(tagged[(flav == 5) & central]) < 0.9
    assert ak.mean(tagged[(flav == 0) & central]) < 0.06


def test_hadronic_top_mass_peak():
    a = gen.generate_arrays("ttbar", "nominal", 3000)
    # Trijet mass of b + two light jets closest to the top mass, per event: peaks near 173.
    jets = ak.zip(
        {"pt": a["Jet_pt"], "eta": a["Jet_eta"], "phi": a["Jet_phi"], "mass": a["Jet_mass"]},
    )
    jets = jets[(jets.pt > 30) & (np.abs(jets.eta) < 2.4)]
    tri = ak.combinations(jets, 3, fields=["a", "b", "c"])
    px = sum(j.pt * np.cos(j.phi) for j in (tri.a, tri.b, tri.c))
    py = sum(j.pt * np.sin(j.phi) for j in (tri.a, tri.b, tri.c))
    pz = sum(j.pt * np.sinh(j.eta) for j in (tri.a, tri.b, tri.c))
    e = sum(np.sqrt((j.pt * np.cosh(j.eta)) ** 2 + j.mass**2) for j in (tri.a, tri.b, tri.c))
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0))
    mass = ak.flatten(mass)
    counts, edges = np.histogram(np.asarray(mass), bins=np.arange(50, 550, 20))
    assert 130 <= edges[np.argmax(counts)] <= 210


def test_readable_with_coffea_nanoevents(ttbar_file):
    nanoevents = pytest.importorskip("coffea.nanoevents")
    with warnings.catch_warnings():
        # Like the AGC files, ours carry no cross-reference index branches.
        warnings.simplefilter("ignore", RuntimeWarning)
        for mode in ("eager", "virtual"):
            events = nanoevents.NanoEventsFactory.from_root(
                {str(ttbar_file): "Events"},
                schemaclass=nanoevents.NanoAODSchema,
                mode=mode,
            ).events()
            assert len(events) == 2000
            assert ak.sum(ak.num(events.Jet.pt)) == ak.sum(_read(ttbar_file)["nJet"])
            assert ak.max(events.Electron.cutBased) == 4
            assert np.asarray(ak.flatten(events.Muon.tightId)).dtype == np.bool_
            assert ak.all(events.MET.pt >= 0)
            # Four-vector behaviour works on the jets.
            assert ak.all(ak.flatten(events.Jet.energy) >= ak.flatten(events.Jet.pt))
