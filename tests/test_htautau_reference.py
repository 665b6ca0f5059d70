"""swift_rules.htautau against the original analysis itself, on generated data.

The reference is the original's own code on RDataFrame (tests/reference/htautau/: skim.cxx,
histograms.py and the QCD estimate of plot.py, ported only where paths and event counts
differ), run in its own environment, .venv-root (ROOT from PyPI, environment/envs.py
builds it on first use; the tests skip only if it cannot be built). Our side is the code
users run: the generic runner (swift_rules.runner.run_stage, test_htautau_stages.run_chain)
runs htautau::skim over each dataset (NanoAODSchema, several chunks per file) and writes
its Parquet skim, a second run_stage reads that skim (BaseSchema) into
htautau::histograms, and the generic export (swift_rules.export) normalises (xsec x
luminosity / N) and groups the results.

Compared: every skim column event by event (values bit for bit, types), the cut flows,
every histogram of histograms.py bin by bin (event counts exactly; sums of weights to
1e-9), and the QCD estimate of plot.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from helpers import HISTOGRAMS, SKIM, export_chain, run_chain

from swift_rules.export import normalised_groups, read_export, scale_factor
from swift_rules.htautau.generate import generate_dataset, write_events
from swift_rules.htautau.qcd import qcd_estimate
from swift_rules.htautau.samples import DATA_SAMPLES, LUMINOSITY_PB, SAMPLES
from swift_rules.htautau.variables import RANGES, REGIONS, SKIM_COLUMNS, SKIM_CUTS

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "reference" / "htautau" / "run.py"
sys.path.insert(0, str(REPO / "environment"))
import envs  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # the outreach files have no Photon, ...; data no GenPart: NanoAODSchema says so
    pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning"),
]
# ROOT's type names of the skim's columns -> numpy's.
ROOT_TYPES = {
    "Int_t": "int32",
    "UInt_t": "uint32",
    "ULong64_t": "uint64",
    "Float_t": "float32",
    "Double_t": "float64",
    "Bool_t": "bool",
}
CHUNKSIZE = 1500  # several chunks per generated file
# Hand-made datasets of edge cases (below), simulation and data: (dataset, label, process).
EDGE_MC, EDGE_DATA = "EdgeCases", "Run2012X_EdgeCases"  # "Run2012...": data to skim.cxx
EDGE_LABELS = [(EDGE_MC, "EdgeMC", "EdgeCases"), (EDGE_DATA, "EdgeData", "data")]
EDGE_EVENTS = 4000


def _f32(x):
    return float(np.float32(x))


def _below(x):
    return float(np.nextafter(np.float32(x), np.float32(-np.inf)))


def _above(x):
    return float(np.nextafter(np.float32(x), np.float32(np.inf)))


PI32 = _f32(np.pi)  # float(M_PI) > M_PI: GenVector restricts such a phi
EDGES = {
    "mu_pt": [17.0, _above(17), 18.5, 25.0, 25.0, 40.0, 70.0, _above(70)],
    "mu_eta": [0.0, _f32(2.1), -_f32(2.1), _above(2.1), _below(2.1), 0.3, 0.5, -0.5],
    "phi": [0.0, PI32, -PI32, 3.14, -3.14, _f32(3.14), 0.5, 2.5, -2.0],
    "mu_iso": [0.0, 0.05, _f32(0.1), _below(0.1), -999.0, 0.05, 0.01],
    "mu_mass": [0.10566, 0.10566, 0.2, _below(0.2)],
    "tau_pt": [20.0, _above(20), 25.0, 30.0, 69.99, 70.0],
    "tau_eta": [0.0, _f32(2.3), -_f32(2.3), _above(2.3), 0.5, 1.0, 0.2, -0.5],
    "tau_iso": [0.02, 0.02, 0.0, 998.9, 999.0, 1000.0, _f32(0.1)],
    "tau_mass": [0.13957, 0.8, 2.0, 1.2],
    "dm": [0, 1, 10, 11, 5, 2],
    "tau_charge": [-1, 1, 0, 1, -1],
    "jet_pt": [30.0, _above(30), 35.0, 70.0, 55.0],
    "jet_eta": [_f32(4.7), -_f32(4.7), _below(4.7), 0.0, 2.0, -1.0],
    "jet_mass": [0.0, 5.0, 20.0, 8.0],
    "btag": [-1.0, 0.0, 0.5, 1.0, 0.9],
    "met_pt": [0.0, 10.0, 29.9, 50.0],
    "npv": [4, 5, 17, 29, 30],
    "pdg": [13, -13, 15, -15, 11],
}


def edge_events(n: int, seed: int, is_data: bool) -> list[dict]:
    """Events whose values sit on the analysis' edges: the float32 neighbours of its cuts
    and bin edges, ties in pT and isolation, Delta R of exactly 0.5, phi = +-float(pi),
    isolations of 999 and -999 (no PF isolation), charge 0, jets at |eta| = 4.7."""
    rng = np.random.default_rng(seed)

    def pick(key):
        return rng.choice(EDGES[key]).item()

    events = []
    for i in range(n):
        muons = [
            {"pt": pick("mu_pt"), "eta": pick("mu_eta"), "phi": pick("phi"),
             "mass": pick("mu_mass"), "charge": int(rng.choice([-1, 1])),
             "pfRelIso03_all": pick("mu_iso"), "tightId": bool(rng.random() < 0.9)}
            for _ in range(int(rng.integers(1, 4)))
        ]  # fmt: skip
        taus = [
            {"pt": pick("tau_pt"), "eta": pick("tau_eta"), "phi": pick("phi"),
             "mass": pick("tau_mass"), "charge": pick("tau_charge"), "decayMode": pick("dm"),
             "relIso_all": pick("tau_iso"), "idDecayMode": bool(rng.random() < 0.9),
             "idIsoTight": bool(rng.random() < 0.9), "idAntiEleTight": bool(rng.random() < 0.95),
             "idAntiMuTight": bool(rng.random() < 0.95)}
            for _ in range(int(rng.integers(0 if i % 50 == 0 else 1, 4)))
        ]  # fmt: skip
        if i % 7 == 0 and taus:  # Delta R of exactly 0.5: same phi, eta 0 and 0.5
            muons[0].update(eta=0.0, phi=1.0)
            taus[0].update(eta=0.5, phi=1.0)
        if i % 11 == 0 and len(muons) > 1:  # a pT tie
            muons[1]["pt"] = muons[0]["pt"]
        if i % 13 == 0 and len(taus) > 1:  # an isolation tie
            taus[1]["relIso_all"] = taus[0]["relIso_all"]
        jets = [
            {"pt": pick("jet_pt"), "eta": pick("jet_eta"), "phi": pick("phi"),
             "mass": pick("jet_mass"), "btag": pick("btag"), "puId": bool(rng.random() < 0.9)}
            for _ in range(int(rng.integers(0, 4)))
        ]  # fmt: skip
        event = {
            "run": 1 if not is_data else 194000, "luminosityBlock": 1, "event": i + 1,
            "HLT_IsoMu17_eta2p1_LooseIsoPFTau20": bool(rng.random() < 0.95),
            "PV_npvs": pick("npv"), "MET_pt": pick("met_pt"), "MET_phi": pick("phi"),
            "Muon": muons, "Tau": taus, "Jet": jets,
        }  # fmt: skip
        if not is_data:  # one generator particle per muon and tau, as the tool appends them
            gen = [{"pdgId": pick("pdg"), "status": 1} for _ in muons + taus]
            for j, m in enumerate(muons):
                m["genPartIdx"] = j
            for j, t in enumerate(taus):
                t["genPartIdx"] = len(muons) + j
            event["GenPart"] = gen
        events.append(event)
    return events


@pytest.fixture(scope="module")
def root_python() -> Path:
    try:
        venv = envs.ensure("root")
    except envs.EnvError as err:
        pytest.skip(f"cannot build .venv-root (ROOT from PyPI) for the reference: {err}")
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def fileset(tmp_path_factory):
    out = tmp_path_factory.mktemp("htt-inputs")
    fileset = generate_dataset(out, "tiny", seed=11)
    for dataset, is_data, seed in ((EDGE_MC, False, 1), (EDGE_DATA, True, 2)):
        path = out / f"{dataset}.root"
        write_events(path, edge_events(EDGE_EVENTS, seed, is_data), is_data=is_data)
        meta = {"is_data": is_data, "process": "data" if is_data else EDGE_MC,
                "nevents": EDGE_EVENTS}  # fmt: skip
        if not is_data:
            meta["xsec"] = 1.0
        fileset[dataset] = {"files": {str(path): "Events"}, "metadata": meta}
    return fileset


@pytest.fixture(scope="module")
def ours_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("htt-ours")


@pytest.fixture(scope="module")
def ours(fileset, ours_dir):
    """``{dataset: {stage: (output, record)}}`` of the generic runner."""
    return run_chain(fileset, ours_dir, chunksize=CHUNKSIZE)


def _skim(ours, dataset):
    return ak.from_parquet(ours[dataset][SKIM][1]["skim"]["path"])


def _float_weights(ours) -> dict[str, float]:
    """The skims' float ``weight`` column (one value per dataset), as the original fills."""
    return {d: float(_skim(ours, d).weight[0]) for d in ours}


@pytest.fixture(scope="module")
def reference(root_python, fileset, tmp_path_factory):
    work = tmp_path_factory.mktemp("htt-reference")
    job = {
        "workdir": str(work),
        "samples": [
            {
                "name": name,
                "files": list(spec["files"]),
                "xsec": spec["metadata"].get("xsec", 0.0),
                "nevents": spec["metadata"]["nevents"],
            }
            for name, spec in fileset.items()
        ],
        "labels": [[name, label] for name, label, _ in _labels()],
    }
    (work / "job.json").write_text(json.dumps(job))
    proc = subprocess.run(
        [str(root_python), str(REFERENCE), str(work / "job.json")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, json.loads((work / "report.json").read_text())


def _reference_skim(work: Path, dataset: str) -> dict[str, np.ndarray]:
    return uproot.open(work / f"{dataset}Skim.root")["Events"].arrays(library="np")


def _labels() -> list[tuple[str, str, str]]:
    """(dataset, histograms.py's label, our ``process`` category) of every histogram set."""
    out = []
    for name, sample in SAMPLES.items():
        for label in sample["labels"]:
            out.append((name, label, label if sample["process"] == "DY" else sample["process"]))
    return out + EDGE_LABELS


def test_every_skim_column_equals_the_reference_event_by_event(ours, reference):
    work, report = reference
    for dataset in ours:
        mine = _skim(ours, dataset)
        ref = _reference_skim(work, dataset)
        assert sorted(ref) == sorted(SKIM_COLUMNS)
        assert len(mine) == len(ref["event"]) > 0, dataset
        for column, dtype in SKIM_COLUMNS.items():
            a = ak.to_numpy(mine[column])
            assert a.dtype == np.dtype(dtype) == ref[column].dtype, (dataset, column)
            assert ROOT_TYPES[report["column_types"][dataset][column]] == dtype
            # bit for bit (NaN never occurs; equal_nan only for the float columns' sake)
            assert np.array_equal(a, ref[column], equal_nan=a.dtype.kind == "f"), (
                dataset,
                column,
                int(np.sum(a != ref[column])),
            )


def test_the_skims_keep_the_input_order(ours):
    for dataset in ours:
        mine = _skim(ours, dataset)
        event = ak.to_numpy(mine.event).astype(np.int64)
        assert np.all(np.diff(event) > 0), dataset  # events numbered in file order


def test_cut_flows_equal_the_reference(ours, reference):
    _, report = reference
    for dataset, run in ours.items():
        expected = dict(report["skims"][dataset]["cutflow"])
        assert list(expected) == ["all", *SKIM_CUTS]
        assert run[SKIM][0]["cutflow"] == expected, dataset


def test_histogram_counts_equal_the_reference_bin_by_bin(ours, reference):
    work, _ = reference
    with uproot.open(work / "histograms.root") as f:
        for dataset, label, process in _labels():
            for variable in RANGES:
                for region, tag in zip(REGIONS, ("", "_cr")):
                    ref = f[f"{label}_{variable}{tag}_counts"].values(flow=True)
                    h = ours[dataset][HISTOGRAMS][0][variable]
                    h = h[{"region": region, "process": process}]
                    mine = h.values(flow=True)
                    assert np.array_equal(mine, ref), (label, variable, region, mine - ref)
                    assert np.array_equal(h.variances(flow=True), ref)  # unweighted


def _weighted(ours, weights) -> dict[str, dict]:
    """Our histograms of each label times a per-dataset factor (bins with flow)."""
    out = {}
    for dataset, label, process in _labels():
        for variable in RANGES:
            for region in REGIONS:
                h = ours[dataset][HISTOGRAMS][0][variable]
                h = h[{"region": region, "process": process}]
                w = weights[dataset]
                out[label, variable, region] = (
                    h.values(flow=True) * w,
                    h.variances(flow=True) * w * w,
                )
    return out


def test_weighted_histograms_equal_the_reference(ours, reference, fileset):
    """The original fills with its float ``weight`` column: ours times that same float equal
    its sums of weights to 1e-9; ours normalised by the generic layer (the export's xsec x
    lumi / N in double, N the skim's source events in the histograms' record) differ from
    them by the float's rounding only (< 6e-8)."""
    work, _ = reference
    contract = {
        d: scale_factor(d, spec["metadata"], ours[d][HISTOGRAMS][1], LUMINOSITY_PB, "events")
        for d, spec in fileset.items()
    }
    by_float, by_contract = _weighted(ours, _float_weights(ours)), _weighted(ours, contract)
    with uproot.open(work / "histograms.root") as f:
        for (label, variable, region), (values, variances) in by_float.items():
            tag = "" if region == "os" else "_cr"
            ref = f[f"{label}_{variable}{tag}"]
            ref_values, ref_variances = ref.values(flow=True), ref.variances(flow=True)
            np.testing.assert_allclose(values, ref_values, rtol=1e-9, atol=0)
            np.testing.assert_allclose(variances, ref_variances, rtol=1e-9, atol=0)
            normalised = by_contract[label, variable, region][0]
            np.testing.assert_allclose(normalised, ref_values, rtol=6e-8, atol=0)


def test_normalisation_follows_the_contract(ours, ours_dir, fileset):
    """The generic export of the nine samples: each simulated one scaled by xsec x lumi /
    nevents into its group, the data added unscaled, ``{variable}_{region}/{group}``."""
    normalised, description = read_export(export_chain({d: fileset[d] for d in SAMPLES}, ours_dir))
    meta = fileset["TTbar"]["metadata"]
    scale = meta["xsec"] * LUMINOSITY_PB / meta["nevents"]
    assert description["scales"]["TTbar"] == pytest.approx(scale, rel=1e-15)
    raw = ours["TTbar"][HISTOGRAMS][0]["m_vis"][{"region": "os", "process": "TT"}]
    np.testing.assert_allclose(
        normalised["m_vis_os"]["TT"].values(flow=True), raw.values(flow=True) * scale, rtol=1e-12
    )
    assert ours["TTbar"][SKIM][0]["cutflow"]["all"] == meta["nevents"]
    data = normalised["m_vis_ss"]["data"]
    raw = [ours[d][HISTOGRAMS][0]["m_vis"][{"region": "ss", "process": "data"}]
           for d in SAMPLES if "Run" in d]  # fmt: skip
    assert np.array_equal(data.values(flow=True), sum(h.values(flow=True) for h in raw))
    assert description["groups"]["data"] == {"datasets": DATA_SAMPLES, "is_data": True}


def test_qcd_estimate_equals_plot_py(ours, reference, fileset):
    """plot.py's arithmetic (TH1::Add, negative bins to zero, Scale(0.8)) on ROOT histograms
    filled with the float weights equals ours on the same weights, to 1e-9: our histograms
    times those weights, grouped by the generic export (unscaled: no luminosity)."""
    work, _ = reference
    weights = _float_weights(ours)
    results, datasets = {}, {}
    for d in SAMPLES:
        output, record = ours[d][HISTOGRAMS]
        results[d] = ({v: h * weights[d] for v, h in output.items()}, record)
        datasets[d] = {"name": d, **fileset[d]["metadata"]}
    grouped, description = normalised_groups(results, datasets, None, "events")
    assert set(description["scales"].values()) == {1.0}
    estimate = qcd_estimate(grouped)
    checked = 0
    with uproot.open(work / "qcd.root") as f:
        for variable in RANGES:
            for group in ("QCD", "W", "TT", "ZLL", "ZTT", "ggH", "qqH", "data"):
                ref = f[f"{variable}/{group}"]
                mine = estimate[variable][group]
                np.testing.assert_allclose(
                    mine.values(flow=True), ref.values(flow=True), rtol=1e-9, atol=1e-12
                )
                np.testing.assert_allclose(
                    mine.variances(flow=True), ref.variances(flow=True), rtol=1e-9, atol=1e-12
                )
                checked += 1
    assert checked == len(RANGES) * 8
    qcd = estimate["m_vis"]["QCD"].values()
    assert qcd.sum() > 0 and np.all(qcd >= 0)  # a non-trivial estimate
