"""The skim stage on generated files: its selection, its cutflow and the skim that
swift-rules writes of it."""

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

from {{ cookiecutter.package_name }}.skim import CUTS, Skim

SKIM = Skim()


def test_required_branches_are_in_every_file(generated):
    for path, _, _ in generated.values():
        with uproot.open(path) as f:
            assert set(SKIM.required_branches()) <= set(f["Events"].keys())


@pytest.mark.parametrize("dataset", ["signal", "background", "data"])
def test_cutflow_counts_every_event_then_fewer(run_on_file, generated, dataset):
    out = run_on_file(Skim(), dataset)
    counts = out["cutflow"].values()
    assert list(out["cutflow"].axes[0]) == CUTS
    assert counts[0] == generated[dataset].events
    assert np.all(np.diff(counts) <= 0) and counts[-1] > 0
    assert len(out["skim"]) == counts[-1]


def test_selected_events_have_two_good_muons_of_opposite_charge(run_on_file):
    skim = run_on_file(SKIM, "signal")["skim"]
    assert set(skim.fields) == {"run", "luminosityBlock", "event", "Muon", "Jet"}
    muons = skim.Muon
    assert ak.all(ak.num(muons) >= 2)
    assert ak.all(muons.pt > SKIM.min_muon_pt) and ak.all(abs(muons.eta) < SKIM.max_muon_eta)
    assert ak.all(muons.charge[:, 0] * muons.charge[:, 1] < 0)
    assert ak.all(skim.Jet.pt > SKIM.min_jet_pt)


def test_the_selection_keeps_signal_and_rejects_background(run_on_file, generated):
    efficiency = {name: len(run_on_file(SKIM, name)["skim"]) / generated[name].events
                  for name in ("signal", "background")}  # fmt: skip
    assert efficiency["signal"] > 2 * efficiency["background"]


def test_a_tighter_isolation_keeps_fewer_events(run_on_file):
    loose = len(run_on_file(Skim(max_muon_isolation=0.5), "background")["skim"])
    tight = len(run_on_file(Skim(max_muon_isolation=0.05), "background")["skim"])
    assert tight < loose


def test_the_written_skim_is_nanoaod_style_parquet(skims, run_on_file):
    table = pq.read_table(skims["data"])
    assert {"run", "luminosityBlock", "event", "nMuon", "Muon_pt", "Muon_charge", "nJet",
            "Jet_pt"} <= set(table.column_names)  # fmt: skip
    assert table.num_rows == len(run_on_file(SKIM, "data")["skim"])
