"""The skim's muon-tau pair choice and variables on hand-made events with known answers.

skim.cxx's FindMuonTauPair loops over Combinations(Muon_pt, Tau_eta), muon-major: a pair
is valid if both are good and Delta R > 0.5 (strictly); the muon is the highest-pT muon of
a valid pair (maxPt starts at -1, `maxPt < pt` replaces: the first wins a tie); the tau is
the lowest-isolation tau of a valid pair with that muon (minIso starts at 999, `minIso >
iso` replaces: the first wins a tie, an isolation of 999 or more is never chosen).
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np
import pytest
from helpers import HISTOGRAMS, SKIM, run_chain

from swift_rules.export import find_histograms, scale_factor
from swift_rules.htautau.generate import write_events
from swift_rules.htautau.samples import LUMINOSITY_PB
from swift_rules.htautau.skim import choose_pair, event_weight

pytestmark = pytest.mark.filterwarnings("ignore:Missing cross-reference:RuntimeWarning")


def mu(pt=30.0, eta=0.0, phi=0.0, good=True):
    return {"pt": pt, "eta": eta, "phi": phi, "good": good}


def tau(eta=1.0, phi=2.0, iso=0.05, good=True):
    return {"eta": eta, "phi": phi, "iso": iso, "good": good}


def pair(muons, taus):
    """idx_1, idx_2 of one event."""

    def col(objs, key, dtype):
        return ak.unflatten(np.array([o[key] for o in objs], dtype=dtype), [len(objs)])

    f4 = np.float32
    idx_1, idx_2 = choose_pair(
        col(muons, "pt", f4),
        col(muons, "eta", f4),
        col(muons, "phi", f4),
        col(muons, "good", bool),
        col(taus, "eta", f4),
        col(taus, "phi", f4),
        col(taus, "iso", f4),
        col(taus, "good", bool),
    )
    return int(idx_1[0]), int(idx_2[0])


CASES = {
    "one pair": ([mu()], [tau()], (0, 0)),
    "highest pT muon": ([mu(25.0), mu(40.0), mu(30.0)], [tau()], (1, 0)),
    "pT tie: the first muon": ([mu(25.0), mu(40.0), mu(40.0, eta=-1.0)], [tau()], (1, 0)),
    "lowest isolation tau": ([mu()], [tau(iso=0.05), tau(eta=-1, iso=0.01)], (0, 1)),
    "isolation tie: the first tau": (
        [mu()],
        [tau(iso=0.03), tau(eta=-1, iso=0.02), tau(eta=-2, iso=0.02)],
        (0, 1),
    ),
    "muon without a valid pair is skipped": (
        [mu(50.0, eta=1.0, phi=2.0), mu(30.0, eta=-1.0)],
        [tau(eta=1.0, phi=2.1)],
        (1, 0),
    ),
    "Delta R of exactly 0.5 is not valid": (
        [mu(eta=0.0, phi=1.0)],
        [tau(eta=0.5, phi=1.0)],
        (-1, -1),
    ),
    "Delta R just above 0.5 is valid": (
        [mu(eta=0.0, phi=1.0)],
        [tau(eta=float(np.nextafter(np.float32(0.5), 1)), phi=1.0)],
        (0, 0),
    ),
    "Delta phi wraps around pi": ([mu(eta=0.0, phi=3.1)], [tau(eta=0.0, phi=-3.1)], (-1, -1)),
    "the tau must pair with the chosen muon": (
        # muon 0 (higher pT) is valid with tau 0 only; tau 1 (better isolated) sits on it
        [mu(40.0, eta=1.0, phi=0.0), mu(30.0, eta=-1.0, phi=0.0)],
        [tau(eta=0.0, phi=2.0, iso=0.05), tau(eta=1.0, phi=0.1, iso=0.01)],
        (0, 0),
    ),
    "bad muons and taus are ignored": (
        [mu(60.0, good=False), mu(30.0)],
        [tau(iso=0.01, good=False), tau(eta=-1.0)],
        (1, 1),
    ),
    "isolation 999 is never chosen": ([mu()], [tau(iso=999.0), tau(eta=-1, iso=1000.0)], (0, -1)),
    "isolation just below 999 is": ([mu()], [tau(iso=999.0), tau(eta=-1, iso=998.9)], (0, 1)),
    "NaN isolation is never chosen": ([mu()], [tau(iso=math.nan), tau(eta=-1)], (0, 1)),
    "NaN pT is never chosen": ([mu(math.nan), mu(20.0, eta=-1.0)], [tau()], (1, 0)),
    "no taus": ([mu()], [], (-1, -1)),
    "no muons": ([], [tau()], (-1, -1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pair_choice(name):
    muons, taus, expected = CASES[name]
    assert pair(muons, taus) == expected


def test_pair_choice_of_many_events_at_once():
    events = list(CASES.values())
    f4 = np.float32

    def col(i, key, dtype):
        values = np.array([o[key] for e in events for o in e[i]], dtype=dtype)
        return ak.unflatten(values, [len(e[i]) for e in events])

    idx_1, idx_2 = choose_pair(
        col(0, "pt", f4),
        col(0, "eta", f4),
        col(0, "phi", f4),
        col(0, "good", bool),
        col(1, "eta", f4),
        col(1, "phi", f4),
        col(1, "iso", f4),
        col(1, "good", bool),
    )
    assert list(zip(idx_1.tolist(), idx_2.tolist())) == [e[2] for e in events]


# ---------------------------------------------------------------------------
# Through the stage, on a file in the input format, run by the generic runner (run_chain)

GOOD_MU = {
    "pt": 30.0,
    "eta": 0.5,
    "phi": 0.3,
    "mass": 0.10566,
    "charge": -1,
    "pfRelIso03_all": 0.02,
    "tightId": True,
    "genPartIdx": 0,
}
GOOD_TAU = {
    "pt": 35.0,
    "eta": -0.4,
    "phi": 2.5,
    "mass": 0.8,
    "charge": 1,
    "decayMode": 1,
    "relIso_all": 0.03,
    "idDecayMode": True,
    "idIsoTight": True,
    "idAntiEleTight": True,
    "idAntiMuTight": True,
    "genPartIdx": 1,
}
TAUS_15 = [{"pdgId": 15, "status": 2}, {"pdgId": -15, "status": 2}]
JETS = [
    {"pt": 45.0, "eta": 1.5, "phi": -1.0, "mass": 6.0, "btag": 0.2, "puId": True},
    {"pt": 80.0, "eta": 4.8, "phi": 0.0, "mass": 6.0, "btag": -1.0, "puId": True},  # |eta| > 4.7
    {"pt": 90.0, "eta": 0.1, "phi": 1.0, "mass": 6.0, "btag": 0.9, "puId": False},  # no puId
    {"pt": 31.0, "eta": -2.0, "phi": 3.0, "mass": 4.0, "btag": 0.7, "puId": True},
]


def event(**changes):
    base = {
        "HLT_IsoMu17_eta2p1_LooseIsoPFTau20": True,
        "PV_npvs": 12,
        "MET_pt": 25.0,
        "MET_phi": -0.5,
        "Muon": [dict(GOOD_MU)],
        "Tau": [dict(GOOD_TAU)],
        "Jet": [],
        "GenPart": list(TAUS_15),
    }
    base.update(changes)
    return base


HANDMADE = [
    ("selected", event()),
    ("no trigger", event(HLT_IsoMu17_eta2p1_LooseIsoPFTau20=False)),
    ("no muon", event(Muon=[])),
    ("tau of charge 0", event(Tau=[{**GOOD_TAU, "charge": 0}])),
    ("muon not tight", event(Muon=[{**GOOD_MU, "tightId": False}])),
    ("muon at eta = float(2.1)", event(Muon=[{**GOOD_MU, "eta": float(np.float32(2.1))}])),
    ("tau at eta = float(2.3)", event(Tau=[{**GOOD_TAU, "eta": float(np.float32(-2.3))}])),
    (
        "muon just beyond 2.1",
        event(Muon=[{**GOOD_MU, "eta": float(np.nextafter(np.float32(2.1), 3))}]),
    ),
    ("pair too close", event(Tau=[{**GOOD_TAU, "eta": 0.6, "phi": 0.4}])),
    ("jets", event(Jet=JETS)),
    ("one jet", event(Jet=JETS[:1])),
    ("muon from a muon", event(GenPart=[{"pdgId": 13, "status": 1}, TAUS_15[1]])),
    ("no generator particle", event(Muon=[{**GOOD_MU, "genPartIdx": -1}])),
]
SELECTED = [
    name
    for name, _ in HANDMADE
    if name
    not in (
        "no trigger",
        "no muon",
        "tau of charge 0",
        "muon not tight",
        "muon just beyond 2.1",
        "pair too close",
    )
]


@pytest.fixture(scope="module")
def skimmed(tmp_path_factory):
    out = tmp_path_factory.mktemp("htt-hand")
    write_events(out / "mc.root", [e for _, e in HANDMADE])
    data_events = [{k: v for k, v in e.items() if k != "GenPart"} for _, e in HANDMADE]
    write_events(out / "data.root", data_events, is_data=True)
    meta = {"is_data": False, "xsec": 19.6, "process": "ggH", "nevents": 476963}
    fileset = {
        "mc": {"files": {str(out / "mc.root"): "Events"}, "metadata": meta},
        "data": {
            "files": {str(out / "data.root"): "Events"},
            "metadata": {"is_data": True, "process": "data"},
        },
    }
    skimmed = {}
    for dataset, run in run_chain(fileset, out, chunksize=4, histograms=False).items():
        output, record = run[SKIM]
        skimmed[dataset] = (ak.from_parquet(record["skim"]["path"]), output["cutflow"])
    return skimmed


def test_selection_of_handmade_events(skimmed):
    skim, cutflow = skimmed["mc"]
    names = [HANDMADE[i - 1][0] for i in skim.event.to_list()]
    assert names == SELECTED
    assert cutflow["all"] == len(HANDMADE)
    assert cutflow["Passes trigger"] == len(HANDMADE) - 1
    assert cutflow["nMuon > 0"] == len(HANDMADE) - 2
    assert cutflow["Valid muon in selected pair"] == cutflow["Valid tau in selected pair"]
    assert cutflow["Valid tau in selected pair"] == len(SELECTED)


def test_variables_of_a_handmade_event(skimmed):
    skim, _ = skimmed["mc"]
    row = skim[0]
    assert (row.pt_1, row.eta_1, row.q_1, row.iso_1) == (30.0, 0.5, -1, np.float32(0.02))
    assert (row.pt_2, row.eta_2, row.q_2, row.dm_2) == (35.0, np.float32(-0.4), 1, 1)
    assert (row.npv, row.pt_met, row.run) == (12, 25.0, 0)

    def p4(pt, eta, phi, m):
        px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
        return px, py, pz, math.sqrt(px * px + py * py + pz * pz + m * m)

    a = p4(30.0, 0.5, float(np.float32(0.3)), float(np.float32(0.10566)))
    b = p4(35.0, float(np.float32(-0.4)), 2.5, float(np.float32(0.8)))
    x, y, z, t = (u + v for u, v in zip(a, b))
    assert row.m_vis == pytest.approx(math.sqrt(t * t - x * x - y * y - z * z), rel=1e-6)
    assert row.pt_vis == pytest.approx(math.hypot(x, y), rel=1e-6)
    mt = math.sqrt(2 * 30.0 * 25.0 * (1 - math.cos(float(np.float32(0.3)) + 0.5)))
    assert row.mt_1 == pytest.approx(mt, rel=1e-6)
    assert (row.njets, row.jpt_1, row.mjj, row.jdeta) == (0, -999.0, -999.0, -999.0)
    assert row.weight == np.float32(19.6 / 476963 * LUMINOSITY_PB)


def test_jets_are_taken_in_file_order_after_their_selection(skimmed):
    skim, _ = skimmed["mc"]
    names = [HANDMADE[i - 1][0] for i in skim.event.to_list()]
    jets = skim[names.index("jets")]
    # good jets: the first (45 GeV) and the last (31 GeV); not re-sorted, no overlap removal
    assert (jets.njets, jets.jpt_1, jets.jpt_2) == (2, 45.0, 31.0)
    assert jets.jdeta == np.float32(1.5) - np.float32(-2.0)
    assert jets.mjj > 0 and jets.ptjj > 0
    one = skim[names.index("one jet")]
    assert (one.njets, one.jpt_1, one.jpt_2, one.mjj, one.ptjj) == (1, 45.0, -999, -999, -999)


def test_gen_match(skimmed):
    skim, _ = skimmed["mc"]
    names = [HANDMADE[i - 1][0] for i in skim.event.to_list()]
    match = dict(zip(names, skim.gen_match.to_list()))
    assert match["selected"] is True
    assert match["muon from a muon"] is False  # |pdgId| 13: a fake tau pair, ZLL
    assert match["no generator particle"] is False  # the original reads out of bounds here
    data, _ = skimmed["data"]
    assert not any(data.gen_match.to_list()) and set(data.weight.to_list()) == {1.0}
    assert len(data) == len(SELECTED)


def test_event_weight_needs_the_cross_section_and_the_events():
    assert event_weight({"is_data": True}, LUMINOSITY_PB) == np.float32(1.0)
    w = event_weight({"xsec": 3503.7, "nevents": 30458871}, LUMINOSITY_PB)
    assert w.dtype == np.float32 and w == np.float32(3503.7 / 30458871.0 * 11467.0)
    with pytest.raises(KeyError, match="nevents"):
        event_weight({"dataset": "DY", "xsec": 1.0}, LUMINOSITY_PB)


def test_nothing_selected_gives_an_empty_skim_and_no_histograms(tmp_path):
    """An empty skim keeps its columns and its source events; the histogram stage has no
    event to fill (the generic runner calls no chunk): its result holds no histogram, and
    the dataset can still be normalised."""
    path = tmp_path / "none.root"
    write_events(path, [event(HLT_IsoMu17_eta2p1_LooseIsoPFTau20=False)] * 3)
    meta = {"is_data": False, "xsec": 1.0, "process": "DY", "nevents": 3}
    fileset = {"DY": {"files": {str(path): "Events"}, "metadata": meta}}
    (output, record), (hists, hists_record) = run_chain(fileset, tmp_path)["DY"].values()
    skim = ak.from_parquet(record["skim"]["path"])
    assert len(skim) == 0 and skim.fields[:3] == ["njets", "npv", "pt_1"]
    assert record["skim"]["rows"] == 0
    assert output["cutflow"]["all"] == 3 and output["cutflow"]["Passes trigger"] == 0
    assert find_histograms(hists, "DY") == {}
    assert hists_record["stage"] == HISTOGRAMS and hists_record["source_events"] == {"DY": 3}
    assert scale_factor("DY", meta, hists_record, LUMINOSITY_PB, "events") == LUMINOSITY_PB / 3
