"""``htautau::skim``: the skimming step of the H -> tautau analysis (``skim.cxx``), columnar.

For each event, in the order of ``skim.cxx``:

1. ``HLT_IsoMu17_eta2p1_LooseIsoPFTau20``, ``nMuon > 0``, ``nTau > 0``;
2. good muons: ``|eta| < 2.1``, ``pt > 17``, ``tightId``; good taus: ``charge != 0``,
   ``|eta| < 2.3``, ``pt > 20``, ``idDecayMode``, ``idIsoTight``, ``idAntiEleTight``,
   ``idAntiMuTight``; at least one of each;
3. the muon-tau pair (:func:`choose_pair`): of the (good muon, good tau) combinations
   with Delta R > 0.5, the muon of highest pT, then the tau of lowest ``relIso_all``
   paired with that muon; the first one wins a tie;
4. the variables of ``finalVariables`` with the original's types
   (:data:`swift_rules.htautau.variables.FINAL_VARIABLES`), ``gen_match`` and ``weight``.

Comparisons of a float with a decimal constant (``|eta| < 2.1``) are made in double, as
C++ promotes them (in float, a muon at eta = float(2.1) would pass). The arithmetic is
in :mod:`swift_rules.htautau.kernels`. The output keeps the input's event order.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
from coffea import processor

from swift_rules.htautau import kernels
from swift_rules.htautau.samples import LUMINOSITY_PB
from swift_rules.htautau.variables import SKIM_COLUMNS, SKIM_CUTS

TRIGGER = "HLT_IsoMu17_eta2p1_LooseIsoPFTau20"
MUON_COLUMNS = ("pt", "eta", "phi", "mass", "pfRelIso03_all", "charge", "tightId")
TAU_COLUMNS = (
    "pt",
    "eta",
    "phi",
    "mass",
    "relIso_all",
    "charge",
    "decayMode",
    "idDecayMode",
    "idIsoTight",
    "idAntiEleTight",
    "idAntiMuTight",
)
JET_COLUMNS = ("pt", "eta", "phi", "mass", "btag", "puId")
EVENT_COLUMNS = ("run", "luminosityBlock", "event", "PV_npvs", "MET_pt", "MET_phi", TRIGGER)
DEFAULT = np.float32(-999.0)  # get_first / get_second / compute_mjj ... when jets are missing


class MissingBranchError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _f64(array) -> np.ndarray | ak.Array:
    """A float column in double, for a comparison with a double constant as C++ makes it."""
    return ak.values_astype(array, np.float64)


def _offsets(jagged) -> np.ndarray:
    counts = ak.to_numpy(ak.num(jagged, axis=1)).astype(np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _pick(jagged, index: np.ndarray) -> np.ndarray:
    """``x[index]`` of each event's list (``Muon_pt[idx_1]``), ``index`` valid everywhere."""
    flat = ak.to_numpy(ak.flatten(jagged, axis=1))
    return flat[_offsets(jagged)[:-1] + index]


def _nth(jagged, n: int) -> np.ndarray:
    """The n-th element of each list, or -999 (``get_first`` / ``get_second``)."""
    padded = ak.pad_none(jagged, n + 1, axis=1, clip=True)[:, n]
    return ak.to_numpy(ak.fill_none(padded, DEFAULT)).astype(np.float32)


def _lookup(values, index: np.ndarray) -> np.ndarray:
    """``values[index]`` per event where ``0 <= index < len``; 0 elsewhere (no gen particle:
    the original reads out of bounds there, undefined behaviour)."""
    flat = ak.to_numpy(ak.flatten(values, axis=1))
    offsets = _offsets(values)
    ok = (index >= 0) & (index < offsets[1:] - offsets[:-1])
    out = np.zeros(len(index), dtype=flat.dtype)
    out[ok] = flat[offsets[:-1][ok] + index[ok]]
    return out


def choose_pair(mu_pt, mu_eta, mu_phi, good_mu, tau_eta, tau_phi, tau_iso, good_tau):
    """``FindMuonTauPair``: indices ``(idx_1, idx_2)`` (numpy, -1 where none) per event.

    Jagged inputs per event: the muons' pT, eta, phi and goodness, the taus' eta, phi,
    ``relIso_all`` and goodness. As the original's three loops over
    ``Combinations(Muon_pt, Tau_eta)`` (muon-major): a pair is valid if both are good and
    Delta R > 0.5; ``idx_1`` is the muon of a valid pair with the highest pT (starting
    from -1, replaced only by a strictly higher pT: the first wins a tie); ``idx_2`` the
    tau of a valid pair with ``idx_1`` with the lowest isolation (starting from 999,
    replaced only by a strictly lower one).
    """
    mu = ak.zip({"pt": mu_pt, "eta": mu_eta, "phi": mu_phi, "good": good_mu})
    tau = ak.zip({"eta": tau_eta, "phi": tau_phi, "iso": tau_iso, "good": good_tau})
    m, t = ak.unzip(ak.cartesian([mu, tau], axis=1, nested=True))  # events x muons x taus
    valid = m.good & t.good & (kernels.delta_r(m.eta, m.phi, t.eta, t.phi) > 0.5)
    # maxPt = -1, `if (maxPt < pt_1[tmp])`: a NaN or a pT <= -1 is never chosen.
    muon_ok = ak.any(valid, axis=2) & (mu_pt > np.float32(-1.0))
    idx_1 = ak.argmax(ak.mask(mu_pt, muon_ok), axis=1, keepdims=True)
    # minIso = 999, `if (minIso > iso_2[tmp])`: only isolations below 999 are chosen.
    with_muon = ak.firsts(valid[idx_1], axis=1)
    tau_ok = with_muon & (tau_iso < np.float32(999.0))
    idx_2 = ak.argmin(ak.mask(tau_iso, ak.fill_none(tau_ok, False)), axis=1)
    idx_1 = ak.to_numpy(ak.fill_none(ak.flatten(idx_1, axis=1), -1)).astype(np.int64)
    idx_2 = ak.to_numpy(ak.fill_none(idx_2, -1)).astype(np.int64)
    idx_2[idx_1 < 0] = -1
    return idx_1, idx_2


def event_weight(metadata, luminosity: float) -> np.float32:
    """``eventWeights[sample]``: xsec / N x integratedLuminosity for simulation (computed
    in double from the float luminosity, stored as a float), 1 for data."""
    if metadata.get("is_data"):
        return np.float32(1.0)
    missing = [k for k in ("xsec", "nevents") if metadata.get(k) is None]
    if missing:
        raise KeyError(
            f"dataset {metadata.get('dataset')!r} is simulation without {' and '.join(missing)}"
            " in its metadata: the skim's weight column needs the cross section (pb) and "
            "the dataset's total number of events"
        )
    return np.float32(float(metadata["xsec"]) / float(metadata["nevents"]) * float(luminosity))


class HttSkim(processor.ProcessorABC):
    """The skim of ``skim.cxx``: returns ``{"skim": records, "cutflow": {cut: events}}``.

    ``luminosity`` (pb^-1) goes into the ``weight`` column only (xsec x luminosity /
    nevents, with ``nevents`` from the dataset's metadata); the default is the
    original's 11.467 fb^-1 as a float.
    """

    def __init__(self, luminosity: float = LUMINOSITY_PB):
        self.luminosity = float(np.float32(luminosity))

    def required_branches(self) -> list[str]:
        """The branches read, which every file of the outreach format has (data included:
        its ``*_genPartIdx`` are -1); simulation also needs ``GenPart_pdgId``, which the
        stage checks itself, as data files have no ``GenPart``."""
        branches = [*EVENT_COLUMNS, "nMuon", "nTau", "nJet", "Muon_genPartIdx", "Tau_genPartIdx"]
        branches += [f"Muon_{c}" for c in MUON_COLUMNS] + [f"Tau_{c}" for c in TAU_COLUMNS]
        return branches + [f"Jet_{c}" for c in JET_COLUMNS]

    @staticmethod
    def _check(events, is_data: bool) -> None:
        fields = set(events.fields)
        missing = []
        for name, columns in (("Muon", MUON_COLUMNS), ("Tau", TAU_COLUMNS), ("Jet", JET_COLUMNS)):
            have = set(events[name].fields) if name in fields else set()
            missing += [f"{name}_{c}" for c in columns if c not in have]
        if "HLT" not in fields or TRIGGER[4:] not in events.HLT.fields:
            missing.append(TRIGGER)
        if not is_data:
            if "GenPart" not in fields or "pdgId" not in events.GenPart.fields:
                missing.append("GenPart_pdgId")
            for name in ("Muon", "Tau"):
                if name in fields and "genPartIdx" not in events[name].fields:
                    missing.append(f"{name}_genPartIdx")
        if missing:
            raise MissingBranchError(
                f"file {events.metadata.get('filename')}: branch(es) {', '.join(missing)} "
                "missing (needed by htautau::skim)"
            )

    def process(self, events):
        meta = events.metadata
        is_data = bool(meta.get("is_data", False))
        weight = event_weight(meta, self.luminosity)
        self._check(events, is_data)
        cutflow = {"all": len(events)}

        # MinimalSelection
        keep = ak.to_numpy(events.HLT[TRIGGER[4:]]) == True  # noqa: E712 (as the original)
        cutflow[SKIM_CUTS[0]] = int(keep.sum())
        keep &= ak.to_numpy(ak.num(events.Muon, axis=1)) > 0
        cutflow[SKIM_CUTS[1]] = int(keep.sum())
        keep &= ak.to_numpy(ak.num(events.Tau, axis=1)) > 0
        cutflow[SKIM_CUTS[2]] = int(keep.sum())
        ev = events[keep]

        # FindGoodMuons, FindGoodTaus, FilterGoodEvents
        muon, tau = ev.Muon, ev.Tau
        good_mu = (_f64(abs(muon.eta)) < 2.1) & (muon.pt > 17) & muon.tightId
        good_tau = (
            (tau.charge != 0)
            & (_f64(abs(tau.eta)) < 2.3)
            & (tau.pt > 20)
            & tau.idDecayMode
            & tau.idIsoTight
            & tau.idAntiEleTight
            & tau.idAntiMuTight
        )
        has_tau = ak.to_numpy(ak.sum(good_tau, axis=1)) > 0
        cutflow[SKIM_CUTS[3]] = int(has_tau.sum())
        has_both = has_tau & (ak.to_numpy(ak.sum(good_mu, axis=1)) > 0)
        cutflow[SKIM_CUTS[4]] = int(has_both.sum())
        ev, muon, tau = ev[has_both], muon[has_both], tau[has_both]
        good_mu, good_tau = good_mu[has_both], good_tau[has_both]

        # FindMuonTauPair
        idx_1, idx_2 = choose_pair(
            muon.pt, muon.eta, muon.phi, good_mu, tau.eta, tau.phi, tau.relIso_all, good_tau
        )
        cutflow[SKIM_CUTS[5]] = int((idx_1 != -1).sum())
        selected = (idx_1 != -1) & (idx_2 != -1)
        cutflow[SKIM_CUTS[6]] = int(selected.sum())
        ev, muon, tau = ev[selected], muon[selected], tau[selected]
        idx_1, idx_2 = idx_1[selected], idx_2[selected]

        columns = self._variables(ev, muon, tau, idx_1, idx_2)
        if is_data:
            columns["gen_match"] = np.zeros(len(ev), dtype=bool)
        else:
            pdg_1 = _lookup(ev.GenPart.pdgId, _pick(muon.genPartIdx, idx_1))
            pdg_2 = _lookup(ev.GenPart.pdgId, _pick(tau.genPartIdx, idx_2))
            columns["gen_match"] = (np.abs(pdg_1) == 15) & (np.abs(pdg_2) == 15)
        columns["run"] = ak.to_numpy(ev.run)
        columns["weight"] = np.full(len(ev), weight, dtype=np.float32)
        columns["luminosityBlock"] = ak.to_numpy(ev.luminosityBlock)
        columns["event"] = ak.to_numpy(ev.event)
        skim = ak.zip(
            {name: np.asarray(columns[name], dtype=dtype) for name, dtype in SKIM_COLUMNS.items()},
            depth_limit=1,
        )
        return {"skim": skim, "cutflow": cutflow}

    @staticmethod
    def _variables(ev, muon, tau, idx_1, idx_2) -> dict[str, np.ndarray]:
        """DeclareVariables: the pair's, the jets' and the event's variables."""
        out = {"npv": ak.to_numpy(ev.PV.npvs)}
        for name, column in (("pt", "pt"), ("eta", "eta"), ("phi", "phi"), ("m", "mass")):
            out[f"{name}_1"] = _pick(muon[column], idx_1)
            out[f"{name}_2"] = _pick(tau[column], idx_2)
        out["iso_1"] = _pick(muon.pfRelIso03_all, idx_1)
        out["q_1"] = _pick(muon.charge, idx_1)
        out["iso_2"] = _pick(tau.relIso_all, idx_2)
        out["q_2"] = _pick(tau.charge, idx_2)
        out["dm_2"] = _pick(tau.decayMode, idx_2)
        out["pt_met"] = pt_met = ak.to_numpy(ev.MET.pt)
        out["phi_met"] = phi_met = ak.to_numpy(ev.MET.phi)
        out["mt_1"] = kernels.transverse_mass(out["pt_1"], out["phi_1"], pt_met, phi_met)
        out["mt_2"] = kernels.transverse_mass(out["pt_2"], out["phi_2"], pt_met, phi_met)
        pair = [out[f"{v}_{i}"] for i in (1, 2) for v in ("pt", "eta", "phi", "m")]
        out["m_vis"], out["pt_vis"] = kernels.pair_mass_pt(*pair)

        jet = ev.Jet
        good = jet.puId & (_f64(abs(jet.eta)) < 4.7) & (jet.pt > 30)
        jets = jet[good]
        out["njets"] = ak.to_numpy(ak.sum(good, axis=1))
        for i in (1, 2):
            for name, column in (
                ("pt", "pt"),
                ("eta", "eta"),
                ("phi", "phi"),
                ("m", "mass"),
                ("btag", "btag"),
            ):
                out[f"j{name}_{i}"] = _nth(jets[column], i - 1)
        two = out["njets"] >= 2
        mjj, ptjj = kernels.pair_mass_pt(
            *(out[f"j{v}_{i}"] for i in (1, 2) for v in ("pt", "eta", "phi", "m"))
        )
        out["mjj"] = np.where(two, mjj, DEFAULT)
        out["ptjj"] = np.where(two, ptjj, DEFAULT)
        out["jdeta"] = np.where(two, out["jeta_1"] - out["jeta_2"], DEFAULT)
        return out

    def postprocess(self, accumulator):
        return accumulator
