"""The AGC selection on small hand-built events with known answers."""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest
import uproot
from helpers import EVENTS, GOOD_E, GOOD_MU, jet, write_events

from swift_rules.agc import kernels, smearing
from swift_rules.agc.samples import event_weight
from swift_rules.agc.ttbar import TtbarProcessor


def p4(j):
    px, py = j["pt"] * math.cos(j["phi"]), j["pt"] * math.sin(j["phi"])
    pz = j["pt"] * math.sinh(j["eta"])
    return px, py, pz, math.sqrt(px * px + py * py + pz * pz + j["mass"] ** 2)


def trijet_mass(jets):
    px, py, pz, e = (sum(c) for c in zip(*(p4(j) for j in jets)))
    return math.sqrt(e * e - px * px - py * py - pz * pz), math.hypot(px, py)


def expected_trijet(jets):
    best = None
    n = len(jets)
    for i in range(n):
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                trio = [jets[i], jets[j], jets[k]]
                if max(t["btagCSVV2"] for t in trio) <= 0.5:
                    continue
                mass, pt = trijet_mass(trio)
                if best is None or pt > best[1]:
                    best = (mass, pt)
    return best[0]


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    path = tmp_path_factory.mktemp("hand") / "events.root"
    write_events(path, EVENTS)
    return path


def run_processor(path, sample="ttbar__nominal", **options):
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    runner = processor.Runner(processor.IterativeExecutor(), chunksize=5, schema=NanoAODSchema)
    return runner({sample: [str(path)]}, TtbarProcessor(**options), treename="Events")


def test_regions_and_observables_of_handmade_events(handmade):
    out = run_processor(handmade)
    h = out["hists"]["ttbar__nominal"]
    n1b = sum(1 for e in EVENTS if e[3] == 1)
    n2b = sum(1 for e in EVENTS if e[3] == 2)
    assert h[:, "4j1b", "ttbar", "nominal"].values(flow=True).sum() == n1b
    assert h[:, "4j2b", "ttbar", "nominal"].values(flow=True).sum() == n2b
    # HT = 280 for every 4j1b event: all in the bin [270, 290)
    ht = h[:, "4j1b", "ttbar", "nominal"]
    assert ht[hist_index(280.0)].value == n1b


def hist_index(x):
    import hist

    return hist.loc(x)


def test_trijet_mass_matches_a_hand_computation():
    electrons, muons, jets, _, _ = EVENTS[14]
    expected = expected_trijet(jets)
    offsets = np.array([0, len(jets)])
    ids = np.array([1]), np.array([1]), np.array([1])
    col = {k: np.array([j[k] for j in jets]) for k in jets[0]}
    region, observable, leading = kernels.select_regions(
        np.array([True]),
        offsets,
        col["pt"].astype(np.float64),
        col["eta"],
        col["phi"],
        col["mass"],
        col["btagCSVV2"],
        col["jetId"],
        0.5,
        1.0,
        0.0,
        *ids,
    )
    assert region[0] == kernels.REGION_4J2B
    assert observable[0] == pytest.approx(expected, rel=1e-12)
    assert list(leading[0]) == [120, 90, 70, 50]


def test_btag_and_scale_weights(handmade):
    h = run_processor(handmade, sample="wjets__nominal")["hists"]["wjets__nominal"]
    nominal = h[:, "4j1b", "wjets", "nominal"].values().sum()
    up0 = h[:, "4j1b", "wjets", "btag_var_0_up"].values().sum()
    # leading jet pT is 100 GeV in every 4j1b event: weight 1 + 0.075 * 100/50
    assert up0 == pytest.approx(nominal * (1 + 0.075 * 2))
    down3 = h[:, "4j1b", "wjets", "btag_var_3_down"].values().sum()
    assert down3 == pytest.approx(nominal * (1 - 0.075 * 40 / 50))
    assert h[:, "4j1b", "wjets", "scale_var_up"].values().sum() == pytest.approx(nominal * 1.025)
    assert "scale_var_up" not in list(
        run_processor(handmade)["hists"]["ttbar__nominal"].axes["variation"]
    )


def test_variation_samples_get_no_weight_systematics(handmade):
    h = run_processor(handmade, sample="ttbar__PS_var")["hists"]["ttbar__PS_var"]
    assert list(h.axes["variation"]) == ["PS_var"]


def test_a_sample_without_selected_events_has_zero_histograms(tmp_path):
    path = tmp_path / "none.root"
    write_events(path, [([], [], [jet(50)], None, None), ([GOOD_E], [], [], None, None)])
    h = run_processor(path, sample="wjets__nominal")["hists"]["wjets__nominal"]
    assert list(h.axes["region"]) == ["4j1b", "4j2b"]
    assert "scale_var_down" in list(h.axes["variation"])
    assert h.values().sum() == 0


def test_jet_energy_scale_shifts_ht(handmade):
    h = run_processor(handmade)["hists"]["ttbar__nominal"]
    # 1.03 x 280 = 288.4 GeV, still in [270, 290)
    assert (
        h[hist_index(288.4), "4j1b", "ttbar", "pt_scale_up"].value
        == h[hist_index(280.0), "4j1b", "ttbar", "nominal"].value
    )


def test_configurable_btag_branch_and_threshold(tmp_path):
    events = [
        ([GOOD_E], [], [jet(100, btag=0.4), jet(80), jet(60), jet(40)], None, None),
        ([GOOD_E], [GOOD_MU], [jet(50)], None, None),
    ]
    path = tmp_path / "e.root"
    write_events(path, events)
    h = run_processor(path)["hists"]["ttbar__nominal"]
    assert h[:, "4j1b", "ttbar", "nominal"].values().sum() == 0
    h = run_processor(path, btag_threshold=0.3)["hists"]["ttbar__nominal"]
    assert h[:, "4j1b", "ttbar", "nominal"].values().sum() == 1


def test_smearing_is_seeded_by_event_identity_not_position():
    offsets = np.array([0, 2, 5])
    run, lumi, ev = np.array([1, 1]), np.array([3, 3]), np.array([10, 11])
    both = kernels.resolution_factors(run, lumi, ev, offsets, 0.05)
    second_alone = kernels.resolution_factors(run[1:], lumi[1:], ev[1:], np.array([0, 3]), 0.05)
    assert np.array_equal(both[2:], second_alone)
    # The numba kernel and the array (numpy/cupy) formulation draw the same numbers.
    assert np.allclose(both, smearing.resolution_factors(run, lumi, ev, offsets), rtol=1e-14)
    other_event = kernels.resolution_factors(run, lumi, ev + 100, offsets, 0.05)
    assert not np.allclose(both, other_event)


def test_smearing_inside_the_selection_equals_presmeared_jets(tiny_dataset):
    events = uproot.open(tiny_dataset["ttbar__nominal"][0])["Events"].arrays()
    n = len(events)
    counts = ak.to_numpy(events["nJet"])
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    col = {
        k: ak.to_numpy(ak.flatten(events[f"Jet_{k}"]))
        for k in ("pt", "eta", "phi", "mass", "btagCSVV2", "jetId")
    }
    ids = [ak.to_numpy(events[c]) for c in ("run", "luminosityBlock", "event")]
    everyone = np.ones(n, dtype=bool)
    args = (col["eta"], col["phi"], col["mass"], col["btagCSVV2"], col["jetId"], 0.5)
    fused = kernels.select_regions(everyone, offsets, col["pt"], *args, 1.0, 0.05, *ids)
    smeared = col["pt"].astype(np.float64) * kernels.resolution_factors(*ids, offsets, 0.05)
    apart = kernels.select_regions(everyone, offsets, smeared, *args, 1.0, 0.0, *ids)
    for a, b in zip(fused, apart, strict=True):
        assert np.array_equal(a, b)
    assert (fused[0] > 0).sum() > 100


def test_smearing_distribution():
    n = 200_000
    f = kernels.resolution_factors(
        np.ones(n, np.uint32),
        np.ones(n, np.uint32),
        np.arange(n, dtype=np.uint64),
        np.arange(n + 1),
        0.05,
    )
    assert abs(f.mean() - 1) < 5e-4 and abs(f.std() - 0.05) < 5e-4


# The AGC's own cross-section table, as the AGC writes it (xsec_info in
# analyses/cms-open-data-ttbar/utils/file_input.py of iris-hep/analysis-grand-challenge).
AGC_XSEC_INFO = {
    "ttbar": 396.87 + 332.97,  # nonallhad + allhad, keep same x-sec for all
    "single_top_s_chan": 2.0268 + 1.2676,
    "single_top_t_chan": (36.993 + 22.175) / 0.252,  # scale from lepton filter to inclusive
    "single_top_tW": 37.936 + 37.906,
    "wjets": 61457 * 0.252,  # e/mu+nu final states
    "data": None,
}


def test_cross_sections_are_the_agcs_own_to_the_last_bit():
    from swift_rules.agc.samples import CROSS_SECTIONS_PB, LUMINOSITY_PB

    assert {k: v for k, v in AGC_XSEC_INFO.items() if v is not None} == CROSS_SECTIONS_PB
    assert LUMINOSITY_PB == 3378  # the AGC's lumi, /pb
    # The shipped fileset and the generator carry the same floats.
    from swift_rules.agc.fileset import FILESET
    from swift_rules.agc.generator import AGCGenerator
    from swift_rules.datasets import read_fileset

    for name, ds in read_fileset(FILESET).items():
        assert ds.metadata["xsec"] == AGC_XSEC_INFO[ds.metadata["process"]], name
    for name, spec in AGCGenerator().datasets("tiny").items():
        assert spec["metadata"]["xsec"] == AGC_XSEC_INFO[spec["metadata"]["process"]], name


def test_event_weight_and_empty_sample():
    assert event_weight("ttbar", 1000) == AGC_XSEC_INFO["ttbar"] * 3378 / 1000
    assert event_weight("wjets", 10) == AGC_XSEC_INFO["wjets"] * 3378 / 10
    with pytest.raises(ValueError, match="no events"):
        event_weight("ttbar", 0)
    with pytest.raises(KeyError, match="no cross section"):
        event_weight("zprime", 10)
