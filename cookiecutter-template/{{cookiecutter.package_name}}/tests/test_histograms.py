"""The histogram stage on the skims of generated files, and its computations on
hand-made numbers."""

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest

from {{ cookiecutter.package_name }}.histograms import Histograms, dimuon_mass, jets_above

NAMES = {"mass", "lead_pt", "njets"}


@pytest.mark.parametrize("dataset", ["signal", "background", "data"])
def test_one_entry_per_skimmed_event_in_the_datasets_process(run_on_skim, skims, generated,
                                                              dataset):  # fmt: skip
    out = run_on_skim(Histograms(), dataset)
    assert set(out) == NAMES
    rows = pq.ParquetFile(skims[dataset]).metadata.num_rows
    for h in out.values():
        # A `process` axis of one category, the dataset's group: swift-rules stacks by it.
        assert list(h.axes["process"]) == [generated[dataset].metadata["process"]]
        assert h.sum(flow=True).value == rows
        assert h.sum(flow=True).variance == rows  # unweighted


def test_the_signal_peaks_at_the_z_mass(run_on_skim):
    h = run_on_skim(Histograms(), "signal")["mass"][{"process": "signal"}]
    assert 87.0 < h.axes[0].centers[h.values().argmax()] < 95.0


def test_background_has_more_jets_than_signal(run_on_skim):
    def mean_njets(dataset):
        h = run_on_skim(Histograms(), dataset)["njets"][{"process": dataset}]
        return (h.axes[0].centers * h.values()).sum() / h.values().sum()

    assert mean_njets("background") > mean_njets("signal") + 1


def test_mass_is_coffeas_four_vector_sum(run_on_skim, skims):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    events = NanoEventsFactory.from_parquet(
        str(skims["signal"]), schemaclass=NanoAODSchema, mode="eager"
    ).events()
    stage = Histograms()
    ours = stage.compute(stage.columns(events))["mass"]
    theirs = ak.to_numpy((events.Muon[:, 0] + events.Muon[:, 1]).mass)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_dimuon_mass_of_hand_made_pairs():
    # Back-to-back massless muons of 45 GeV: 90 GeV. Collinear ones: 0.
    first = [np.array([45.0, 30.0]), np.array([0.0, 1.0]), np.array([0.0, 0.5]), np.zeros(2)]
    second = [np.array([45.0, 30.0]), np.array([0.0, 1.0]), np.array([np.pi, 0.5]), np.zeros(2)]
    np.testing.assert_allclose(dimuon_mass(*first, *second), [90.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    "events",
    [
        [[30.0, 20.0, 50.0], [], [10.0], [31.0, 30.0], []],  # events without jets
        [[], []],  # no jets at all
        [],  # an empty chunk
    ],
)
def test_jets_above_counts_per_event(events):
    flat = np.array([pt for jets in events for pt in jets], dtype=np.float64)
    offsets = np.cumsum([0] + [len(jets) for jets in events])
    expected = [sum(pt > 30.0 for pt in jets) for jets in events]
    assert jets_above(flat, offsets, 30.0).tolist() == expected
