"""The H -> tautau stages on generated data, and the analysis step after them.

The stages run through the generic layer, as the workflow's jobs run them (one job per
dataset here): ``swift_rules.runner.run_stage`` of ``htautau::skim`` over a dataset's files
writes its Parquet skim and record, a second ``run_stage`` of ``htautau::histograms`` reads
that skim (``BaseSchema``), and ``swift_rules.export`` normalises and groups the results.
Checked: the histograms' layout (the contract), each sample's signature, the QCD estimate,
the plots and the commands. The other H -> tautau tests run their stages with
:func:`run_chain` too.
"""

from __future__ import annotations

import argparse

import awkward as ak
import hist
import numpy as np
import pytest
from helpers import HISTOGRAMS, SKIM, export_chain, run_chain

from swift_rules.datasets import count_entries
from swift_rules.export import read_export
from swift_rules.htautau import cli, plots
from swift_rules.htautau.generate import generate_dataset
from swift_rules.htautau.histograms import HttHistograms
from swift_rules.htautau.qcd import qcd_estimate, qcd_histogram
from swift_rules.htautau.samples import GROUPS, LUMINOSITY_PB, QCD_SUBTRACTED, SAMPLES
from swift_rules.htautau.variables import LABELS, RANGES, REGIONS, SKIM_COLUMNS

pytestmark = pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning")


@pytest.fixture(scope="module")
def fileset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("htt-tiny"), "tiny", seed=5)


@pytest.fixture(scope="module")
def analysis(fileset, tmp_path_factory):
    out = tmp_path_factory.mktemp("htt-run")
    runs = run_chain(fileset, out, chunksize=2500)
    exported = export_chain(fileset, out)
    normalised, description = read_export(exported)
    return {"runs": runs, "export": exported, "normalised": normalised,
            "description": description, "qcd": qcd_estimate(normalised)}  # fmt: skip


def _skim(analysis, dataset):
    return ak.from_parquet(analysis["runs"][dataset][SKIM][1]["skim"]["path"])


def _histograms(analysis, dataset):
    return analysis["runs"][dataset][HISTOGRAMS][0]


def test_skims_have_the_columns_and_types(analysis):
    for dataset in SAMPLES:
        skim = _skim(analysis, dataset)
        assert len(skim) > 100, dataset
        assert skim.fields == list(SKIM_COLUMNS)
        assert {f: str(ak.type(skim[f]).content) for f in skim.fields} == SKIM_COLUMNS


def test_histograms_follow_the_contract(analysis):
    for dataset in analysis["runs"]:
        hists = _histograms(analysis, dataset)
        assert list(hists) == list(RANGES)
        process = SAMPLES[dataset]["process"]
        groups = ["ZTT", "ZLL"] if process == "DY" else [process]
        for variable, h in hists.items():
            nbins, low, high = RANGES[variable]
            axis, region, group = h.axes
            assert (axis.name, len(axis), axis.edges[0], axis.edges[-1]) == (
                variable,
                nbins,
                low,
                high,
            )
            assert (region.name, list(region)) == ("region", REGIONS)
            assert (group.name, list(group)) == ("process", groups)
            assert isinstance(h.storage_type(), hist.storage.Weight)
            # unweighted: every entry counts 1
            assert np.array_equal(h.values(flow=True), h.variances(flow=True))
    njets = _histograms(analysis, "DYJetsToLL")["njets"]
    skim = _skim(analysis, "DYJetsToLL")
    base = (skim.mt_1 < 30) & (skim.iso_1 < 0.1) & (skim.q_1 * skim.q_2 < 0)
    assert njets[{"region": "os"}].values(flow=True).sum() == ak.sum(base)
    ztt = njets[{"region": "os", "process": "ZTT"}].values(flow=True).sum()
    assert ztt == ak.sum(base & skim.gen_match)


def test_every_signal_region_histogram_is_populated(analysis):
    normalised = analysis["normalised"]
    for variable in RANGES:
        for group in GROUPS[1:]:  # all but QCD, which is estimated
            h = normalised[f"{variable}_os"][group]
            assert np.count_nonzero(h.values()) > 0, (variable, group)
        for group in ("data", "W"):
            assert np.count_nonzero(normalised[f"{variable}_ss"][group].values()) > 0


def test_each_sample_has_its_signature(analysis):
    def baseline_os(skim):
        return skim[(skim.mt_1 < 30) & (skim.iso_1 < 0.1) & (skim.q_1 * skim.q_2 < 0)]

    dy = baseline_os(_skim(analysis, "DYJetsToLL"))
    ztt, zll = dy[dy.gen_match], dy[~dy.gen_match]
    assert 45 < np.median(ztt.m_vis) < 70  # Z -> tau tau: visible mass well below m_Z
    assert 80 < np.median(zll.m_vis) < 100  # Z -> mu mu with a muon as the tau: at m_Z
    assert len(ztt) > 8 * len(zll)
    assert np.median(ztt.dm_2[ztt.dm_2 >= 0]) in (0, 1, 10) and np.mean(zll.dm_2 == 0) > 0.8
    ggh = baseline_os(_skim(analysis, "GluGluToHToTauTau"))
    assert np.median(ggh.m_vis) > np.median(ztt.m_vis) + 10  # H(125)
    w = _skim(analysis, "W1JetsToLNu")
    assert np.median(w.mt_1) > 40 and np.mean(w.mt_1 < 30) < 0.3  # real muon, large mT
    assert np.mean(w.gen_match) < 0.1  # the tau is a jet
    tt, other = _skim(analysis, "TTbar"), _skim(analysis, "W2JetsToLNu")
    assert np.mean(tt.njets) > np.mean(other.njets) and np.mean(tt.jbtag_1 > 0.7) > 0.3
    assert np.mean(other.jbtag_1 > 0.7) < 0.15
    vbf = _skim(analysis, "VBF_HToTauTau")
    two = vbf[vbf.njets >= 2]
    assert np.median(two.mjj) > 400 and np.median(abs(two.jdeta)) > 3
    assert np.mean(vbf.njets >= 2) > 2 * np.mean(ggh.njets >= 2)

    def same_over_opposite(skim):
        base = (skim.mt_1 < 30) & (skim.iso_1 < 0.1)
        return ak.sum(base & (skim.q_1 * skim.q_2 > 0)) / ak.sum(base & (skim.q_1 * skim.q_2 < 0))

    # data has a QCD-like same-sign component that Z -> tau tau has not
    data = _skim(analysis, "Run2012C_TauPlusX")
    assert same_over_opposite(data) > 0.2 > 5 * same_over_opposite(_skim(analysis, "DYJetsToLL"))


def test_data_and_simulation_agree_with_the_qcd_estimate(analysis):
    estimate = analysis["qcd"]["m_vis"]
    data = estimate["data"].values(flow=True).sum()
    total = sum(estimate[g].values(flow=True).sum() for g in GROUPS if g != "data")
    assert total == pytest.approx(data, rel=0.15)
    assert estimate["QCD"].values().sum() > 0.1 * data  # non-trivial


def test_chunking_does_not_change_the_skims(fileset, tmp_path):
    subset = {d: fileset[d] for d in ("Run2012B_TauPlusX",)}
    a = run_chain(subset, tmp_path / "a", chunksize=700, histograms=False)
    b = run_chain(subset, tmp_path / "b", chunksize=100_000, histograms=False)
    for dataset in subset:
        (a_out, a_record), (b_out, b_record) = a[dataset][SKIM], b[dataset][SKIM]
        assert a_out["cutflow"] == b_out["cutflow"]
        assert ak.array_equal(
            ak.from_parquet(a_record["skim"]["path"]), ak.from_parquet(b_record["skim"]["path"])
        )


def test_qcd_estimate_arithmetic():
    def h(values, variances=None):
        out = hist.Hist(hist.axis.Regular(3, 0, 3), storage=hist.storage.Weight())
        view = out.view(flow=True)
        view.value = values
        view.variance = values if variances is None else variances
        return out

    data = h(np.array([5.0, 10.0, 1.0, 4.0, 2.0]))
    sim = [h(np.array([1.0, 2.0, 3.0, 1.0, 4.0]), np.full(5, 0.5))] + [h(np.zeros(5))] * 3
    qcd = qcd_histogram(data, sim)
    # inner bins below zero become 0 (plot.py loops over 1..N); flow bins stay negative
    assert np.allclose(qcd.values(flow=True), np.array([4.0, 8.0, 0.0, 3.0, -2.0]) * 0.8)
    assert np.allclose(qcd.variances(flow=True), (data.values(flow=True) + 0.5) * 0.64)


def test_qcd_needs_its_groups(analysis):
    normalised = dict(analysis["normalised"])
    normalised["m_vis_ss"] = {g: h for g, h in normalised["m_vis_ss"].items() if g != "TT"}
    with pytest.raises(LookupError, match="m_vis_ss/TT"):
        qcd_estimate(normalised, ["m_vis"])
    assert set(QCD_SUBTRACTED) == {"W", "TT", "ZLL", "ZTT"}


def test_commands_write_the_qcd_file_and_the_plots(analysis, tmp_path):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help):
        sp = subparsers.add_parser(name, help=help)
        sp.set_defaults(func=func)
        return sp

    cli.add_commands(add)
    assert set(analysis["normalised"]) == {f"{v}_{r}" for v in RANGES for r in REGIONS}
    args = parser.parse_args(["qcd", str(analysis["export"]), "--out", str(tmp_path / "q.root")])
    assert args.func(args) == 0
    estimate, description = read_export(tmp_path / "q.root")
    assert set(estimate) == set(RANGES) and set(estimate["m_vis"]) == set(GROUPS)
    expected = analysis["qcd"]["m_vis"]["QCD"].values(flow=True)
    assert np.allclose(estimate["m_vis"]["QCD"].values(flow=True), expected, rtol=1e-12)
    # the export's description, with the estimate's histograms and how QCD was made
    assert description["luminosity"] == LUMINOSITY_PB == analysis["description"]["luminosity"]
    assert description["groups"]["QCD"]["is_data"] is False
    assert description["qcd"]["scale_factor"] == 0.80
    assert description["histograms"]["m_vis"] == sorted(GROUPS)
    args = parser.parse_args(
        [
            "plot",
            str(tmp_path / "q.root"),
            "--out",
            str(tmp_path / "plots"),
            "--variables",
            "njets",
        ]
    )
    assert args.func(args) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["njets.pdf", "njets.png"]


def test_plots_are_reproducible(analysis, tmp_path):
    estimate = analysis["qcd"]
    first = plots.make_plots(estimate, tmp_path / "a", ["pt_2"])
    second = plots.make_plots(estimate, tmp_path / "b", ["pt_2"])
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert b"CreationDate" not in first[1].read_bytes()


def test_plot_style_is_plot_pys():
    # plot.py's TColor.GetColor values, its legend order, its axis labels and signal scales
    assert plots.COLOURS == {"ggH": "#BF2229", "qqH": "#00A88F", "TT": "#9B98CC",
                             "W": "#DE5A6A", "QCD": "#FACAFF", "ZLL": "#64C0E8",
                             "ZTT": "#F8CE68"}  # fmt: skip
    assert [g for g, _ in plots.LEGEND] == ["ZTT", "ZLL", "W", "TT", "QCD", "ggH", "qqH", "data"]
    assert plots.LEGEND[5][1] == "gg#rightarrowH (x10)" and plots.LEGEND[6][1].endswith("(x100)")
    assert plots.mathtext(LABELS["jdeta"]) == r"Di-jet $\Delta\eta$"
    assert plots.mathtext("Z#rightarrow#tau#tau") == r"Z$\rightarrow\tau\tau$"
    assert plots.mathtext(LABELS["pt_1"]) == r"Muon $p_{T}$ / GeV"


def test_histogram_options():
    with pytest.raises(ValueError, match="unknown variable"):
        HttHistograms(variables=["m_sv"])
    stage = HttHistograms(mt_1_max=50.0, variables=["m_vis"])
    assert stage.variables == ["m_vis"] and stage.mt_1_max == 50.0 and stage.iso_1_max == 0.1


def test_the_stages_see_the_events_that_the_generic_layer_counts(analysis, fileset):
    """The skim's weight needs the dataset's ``nevents``: the workflow gives a stage the
    events of its files (``Plan.metadata``), which are the generated fileset's; the
    histograms' record carries the skim's source events, by which the export normalises."""
    for dataset, spec in fileset.items():
        counted = sum(count_entries(path) for path in spec["files"])
        output, record = analysis["runs"][dataset][SKIM]
        assert spec["metadata"]["nevents"] == counted == output["cutflow"]["all"], dataset
        assert record["events"] == {dataset: counted}
        assert analysis["runs"][dataset][HISTOGRAMS][1]["source_events"] == {dataset: counted}
