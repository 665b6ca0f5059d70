"""The event builder of the AGC generator: parton-level inputs to NanoAOD columns.

A process (:mod:`swift_rules.agc.processes`) adds the partons, leptons and invisible
momentum of a block of events to an :class:`EventBuilder`, including the decays of
tops (``t -> b W``) and W bosons (``W -> q q' / l nu / tau nu``);
:meth:`EventBuilder.finish` then simulates a toy detector, good enough for the
analysis to see what it sees in the real samples:

* jets: FSR splits a fraction of a parton's pT off into a separate jet, a few pileup
  jets are added, partons too soft or outside the calorimeter are lost into the MET;
  the jets are smeared (pT-dependent resolution, flavour-dependent response), get a
  jet mass, a jet ID bitmask and b-tag discriminants that depend on their hadron
  flavour;
* leptons: prompt leptons are smeared and mostly pass the tight identification; some
  non-prompt leptons (low pT, displaced, not isolated) are added as bystanders;
* MET: the invisible momentum, what was lost or mismeasured, and a resolution term.

:class:`Knobs` are what a variation (:data:`swift_rules.agc.processes.VARIATIONS`)
changes. All random numbers come from the builder's generator, in a fixed order: the
events depend on it as much as on the physics.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from swift_rules.agc.kinematics import (
    M_B,
    M_ELECTRON,
    M_MUON,
    M_W,
    TWO_PI,
    W_W,
    beta1,
    breit_wigner,
    choose,
    decay2,
    power_law,
    scale,
    take,
)
from swift_rules.agc.nanoaod import (
    ELECTRON_TYPES,
    JET_TYPES,
    MUON_TYPES,
    round_mantissa,
    sorted_collection,
)

# W decay probabilities (hadronic, e, mu, tau): all modes, and leptonic only.
W_INCLUSIVE = (0.6760, 0.1080, 0.1080, 0.1080)
W_LEPTONIC = (0.0, 1.0, 1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Knobs:
    """What a variation changes, as factors and probabilities (nominal: the defaults)."""

    top_pt_scale: float = 1.0  # scales the top (or W) pT spectrum
    isr_mean: float = 1.0  # multiplies the mean number of ISR jets
    isr_hardness: float = 1.0  # scales ISR jet pT
    fsr_prob: float = 0.12  # probability that a parton radiates a resolved FSR jet
    jes: float = 1.0  # jet energy response
    jer: float = 1.0  # jet energy resolution multiplier
    btag_eff: float = 1.0  # multiplies the b-jet b-tag "good track" fraction


class EventBuilder:
    """A block of ``n`` events under construction; every random number comes from ``rng``.

    The ``add_*`` methods, ``isr`` and ``decay_*`` collect the generator-level jets
    (partons), leptons and invisible momentum, each entry with its event index;
    :meth:`finish` simulates the detector and returns the NanoAOD columns.
    """

    def __init__(self, n: int, rng: np.random.Generator, knobs: Knobs):
        self.n, self.rng, self.knobs = n, rng, knobs
        self.jets: list[tuple] = []  # (evt, px, py, pz, flavour)
        self.leptons: list[tuple] = []  # (evt, px, py, pz, pdg, charge)
        self.inv_x = np.zeros(n)
        self.inv_y = np.zeros(n)

    # -- inputs -------------------------------------------------------------
    def add_jets(self, evt, p, flavour):
        flavour = np.broadcast_to(np.asarray(flavour, dtype=np.int32), evt.shape)
        f32 = np.float32
        self.jets.append((evt, p[1].astype(f32), p[2].astype(f32), p[3].astype(f32), flavour))

    def add_jets_pt_eta_phi(self, evt, pt, eta, phi, flavour):
        p = (None, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta))
        self.add_jets(evt, p, flavour)

    def add_leptons(self, evt, p, pdg, charge):
        self.leptons.append((evt, p[1], p[2], p[3], pdg, charge))

    def add_invisible(self, evt, p):
        self.inv_x += np.bincount(evt, weights=p[1], minlength=self.n)
        self.inv_y += np.bincount(evt, weights=p[2], minlength=self.n)

    def isr(self, mean, pt_min=20.0, index=1.7, b_frac=0.02, c_frac=0.05):
        """Add ISR jets; return the (px, py) they carry, for the hard system to recoil against."""
        rng, k = self.rng, self.knobs
        counts = rng.poisson(mean * k.isr_mean, self.n)
        evt = np.repeat(np.arange(self.n), counts)
        m = len(evt)
        pt = power_law(rng, m, pt_min, index) * k.isr_hardness
        eta = rng.normal(0.0, 1.9, m)
        phi = rng.uniform(0.0, TWO_PI, m)
        flav = np.array([0, 4, 5], dtype=np.int32)[
            choose(rng, m, (1 - b_frac - c_frac, c_frac, b_frac))
        ]
        self.add_jets_pt_eta_phi(evt, pt, eta, phi, flav)
        rx = np.bincount(evt, weights=pt * np.cos(phi), minlength=self.n)
        ry = np.bincount(evt, weights=pt * np.sin(phi), minlength=self.n)
        return rx, ry

    def decay_w(self, evt, w, mw, charge, probs=W_INCLUSIVE):
        rng = self.rng
        m = len(evt)
        mode = choose(rng, m, probs)
        f1, f2 = decay2(rng, w, mw, 0.0, 0.0)
        had = np.flatnonzero(mode == 0)
        cs = rng.random(m) < 0.5
        self.add_jets(evt[had], take(f1, had), np.where(cs, 4, 0).astype(np.int32)[had])
        self.add_jets(evt[had], take(f2, had), 0)
        lep = np.flatnonzero((mode == 1) | (mode == 2))
        pdg = np.where(mode == 1, 11, 13).astype(np.int32)
        self.add_leptons(evt[lep], take(f1, lep), pdg[lep], charge[lep])
        self.add_invisible(evt[lep], take(f2, lep))
        # tau: 35% leptonic (softer e/mu), 65% hadronic (a light jet).
        tau = np.flatnonzero(mode == 3)
        t_evt, t_f1, t_charge = evt[tau], take(f1, tau), charge[tau]
        self.add_invisible(t_evt, take(f2, tau))
        k = len(t_evt)
        is_tl = rng.random(k) < 0.35
        tl, th = np.flatnonzero(is_tl), np.flatnonzero(~is_tl)
        z = np.where(is_tl, rng.beta(2.0, 3.0, k), rng.beta(4.0, 2.0, k))
        tau_pdg = np.where(rng.random(k) < 0.5, 11, 13).astype(np.int32)
        vis = scale(t_f1, z)
        self.add_leptons(t_evt[tl], take(vis, tl), tau_pdg[tl], t_charge[tl])
        self.add_jets(t_evt[th], take(vis, th), 0)
        self.add_invisible(t_evt, scale(t_f1, 1.0 - z))

    def decay_top(self, evt, top, mt, charge, probs=W_INCLUSIVE):
        mw = breit_wigner(self.rng, len(evt), M_W, W_W, 65.0, 95.0)
        w, b = decay2(self.rng, top, mt, mw, M_B)
        self.add_jets(evt, b, 5)
        self.decay_w(evt, w, mw, charge, probs)

    # -- detector -----------------------------------------------------------
    def _finish_jets(self):
        rng, k, n = self.rng, self.knobs, self.n
        f32 = np.float32
        evt = np.concatenate([j[0] for j in self.jets])
        px = np.concatenate([j[1] for j in self.jets])
        py = np.concatenate([j[2] for j in self.jets])
        pz = np.concatenate([j[3] for j in self.jets])
        flav = np.concatenate([j[4] for j in self.jets])
        pt = np.hypot(px, py)
        eta = np.arcsinh(pz / np.maximum(pt, f32(1e-6)))
        phi = np.arctan2(py, px)

        # FSR: a parton gives a fraction of its pT to a resolved jet nearby.
        fsr = np.flatnonzero(rng.random(len(evt), dtype=f32) < k.fsr_prob)
        kf = len(fsr)
        z = (0.08 + 0.32 * beta1(rng, 2.0, kf)).astype(f32)
        dr = (0.4 + rng.exponential(0.35, kf)).astype(f32)
        ang = rng.uniform(0.0, TWO_PI, kf).astype(f32)
        f_evt = evt[fsr]
        f_pt = pt[fsr] * z
        f_eta = eta[fsr] + dr * np.cos(ang)
        f_phi = np.mod(phi[fsr] + dr * np.sin(ang) + f32(np.pi), f32(TWO_PI)) - f32(np.pi)
        pt[fsr] *= 1.0 - z
        # Pileup jets.
        npu = rng.poisson(0.25, n)
        pu_evt = np.repeat(np.arange(n), npu)
        mp = len(pu_evt)
        pu_pt = (12.0 + rng.exponential(7.0, mp)).astype(f32)
        pu_eta = rng.uniform(-4.7, 4.7, mp).astype(f32)
        pu_phi = rng.uniform(-np.pi, np.pi, mp).astype(f32)

        n_hard = len(evt) + kf
        evt = np.concatenate([evt, f_evt, pu_evt])
        pt = np.concatenate([pt, f_pt, pu_pt])
        eta = np.concatenate([eta, f_eta, pu_eta])
        phi = np.concatenate([phi, f_phi, pu_phi])
        flav = np.concatenate([flav, np.zeros(kf + mp, np.int32)])
        # Partons too soft to give a 15 GeV jet, or outside the calorimeter, are unclustered.
        vis = (pt > 7.0) & (np.abs(eta) < 4.7)
        lost = np.flatnonzero(~vis)
        self._add_mismeasured(evt[lost], pt[lost], phi[lost])
        vis = np.flatnonzero(vis)
        is_pu = vis >= n_hard
        evt, pt, eta, phi, flav = evt[vis], pt[vis], eta[vis], phi[vis], flav[vis]
        m = len(evt)

        # Energy response and resolution: sigma/pT = N/pT (+) S/sqrt(pT) (+) C.
        is_b = flav == 5
        response = np.where(is_b, f32(0.985 * k.jes), f32(k.jes))
        rel = f32(k.jer) * np.sqrt(f32(9.0) / (pt * pt) + f32(1.0) / pt + f32(0.045**2))
        smear = response + rel * rng.standard_normal(m, dtype=f32)
        reco_pt = pt * np.maximum(smear, f32(0.05))
        # Mismeasurement of the visible pT enters the MET.
        self._add_mismeasured(evt, pt - reco_pt, phi)

        mass_frac = np.where(is_b, f32(0.12), f32(0.09))
        mass_frac += f32(0.035) * rng.standard_normal(m, dtype=f32)
        reco_mass = reco_pt * np.clip(mass_frac, f32(0.01), f32(0.3))

        # Jet ID bitmask: 6 = tight + tight-lepton-veto, 2 = tight only, 0 = fails;
        # pileup jets fail more often.
        u = rng.random(m, dtype=f32)
        u = np.where(is_pu, f32(1.0) - f32(0.3) * u, u)
        jet_id = np.where(u < 0.965, 6, np.where(u < 0.992, 2, 0)).astype(np.int32)

        csv, deep = self._btag(flav, eta, m)

        keep = np.flatnonzero(reco_pt > 15.0)
        cols = {
            "pt": reco_pt,
            "eta": eta,
            "phi": phi,
            "mass": reco_mass,
            "btagCSVV2": csv,
            "btagDeepFlavB": deep,
            "jetId": jet_id,
            "hadronFlavour": flav,
        }
        return sorted_collection(evt[keep], {c: v[keep] for c, v in cols.items()}, n, JET_TYPES)

    def _add_mismeasured(self, evt, dpt, phi):
        """Add the transverse momentum ``dpt`` (true - measured) along ``phi`` to the MET."""
        self.inv_x += np.bincount(evt, weights=dpt * np.cos(phi), minlength=self.n)
        self.inv_y += np.bincount(evt, weights=dpt * np.sin(phi), minlength=self.n)

    def _btag(self, flav, eta, m):
        rng, k = self.rng, self.knobs
        f32 = np.float32
        # Probability that the jet looks b-like (well-measured displaced tracks).
        is_b, is_c = flav == 5, flav == 4
        good = np.where(is_b, f32(0.84 * k.btag_eff), np.where(is_c, f32(0.26), f32(0.035)))
        good[np.abs(eta) > 2.5] = 0.0  # outside the tracker
        tagged = rng.random(m, dtype=f32) < good
        hi_idx = np.flatnonzero(tagged)
        lo_idx = np.flatnonzero(~tagged)
        csv = np.empty(m, f32)
        # b-like: 1 - Beta(1, b) * 0.55, in ~0.45..1; otherwise Beta(1, b) * 0.62.
        csv[hi_idx] = 1.0 - 0.55 * beta1(rng, np.where(is_b[hi_idx], 6.0, 3.5), len(hi_idx))
        lo_shape = np.where(is_b[lo_idx], 2.2, np.where(is_c[lo_idx], 3.0, 5.5))
        csv[lo_idx] = 0.62 * beta1(rng, lo_shape, len(lo_idx))
        deep = csv * csv * np.sqrt(csv) + f32(0.03) * rng.standard_normal(m, dtype=f32)
        return csv, np.clip(deep, f32(0.0), f32(1.0))

    def _finish_leptons(self):
        rng, n = self.rng, self.n
        parts = self.leptons
        evt = np.concatenate([p[0] for p in parts])
        px = np.concatenate([p[1] for p in parts])
        py = np.concatenate([p[2] for p in parts])
        pz = np.concatenate([p[3] for p in parts])
        pdg = np.concatenate([p[4] for p in parts])
        charge = np.concatenate([p[5] for p in parts]).astype(np.int32)
        pt = np.hypot(px, py)
        eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
        phi = np.arctan2(py, px)
        m = len(evt)
        prompt = np.ones(m, bool)
        # Non-prompt leptons (heavy-flavour decays, fakes): soft, displaced, not isolated.
        ne = rng.poisson(0.12, n)
        nm = rng.poisson(0.22, n)
        np_evt = np.concatenate([np.repeat(np.arange(n), ne), np.repeat(np.arange(n), nm)])
        k = len(np_evt)
        np_pdg = np.concatenate([np.full(ne.sum(), 11), np.full(nm.sum(), 13)]).astype(np.int32)
        np_pt = np.where(np_pdg == 11, 5.0, 3.0) + rng.exponential(7.0, k)
        evt = np.concatenate([evt, np_evt])
        pt = np.concatenate([pt, np_pt])
        eta = np.concatenate([eta, rng.uniform(-2.5, 2.5, k)])
        phi = np.concatenate([phi, rng.uniform(-np.pi, np.pi, k)])
        pdg = np.concatenate([pdg, np_pdg])
        charge = np.concatenate([charge, np.where(rng.random(k) < 0.5, -1, 1).astype(np.int32)])
        prompt = np.concatenate([prompt, np.zeros(k, bool)])
        m = len(evt)

        is_e = pdg == 11
        reco_pt = pt * (1.0 + np.where(is_e, 0.02, 0.015) * rng.standard_normal(m))
        reco_eta = eta + 0.002 * rng.standard_normal(m)
        reco_phi = np.mod(phi + 0.002 * rng.standard_normal(m) + np.pi, TWO_PI) - np.pi
        found = rng.random(m) < np.where(prompt, 0.96, 1.0)
        accepted = found & np.where(
            is_e,
            (reco_pt > 5.0) & (np.abs(reco_eta) < 2.5),
            (reco_pt > 3.0) & (np.abs(reco_eta) < 2.4),
        )
        # Visible leptons that are not reconstructed go to the MET as well.
        lost = ~accepted & prompt
        self.inv_x += np.bincount(evt[lost], weights=(pt * np.cos(phi))[lost], minlength=n)
        self.inv_y += np.bincount(evt[lost], weights=(pt * np.sin(phi))[lost], minlength=n)

        # Identification and isolation.
        cut_based = np.where(
            prompt,
            choose(rng, m, (0.02, 0.04, 0.06, 0.10, 0.78)),
            choose(rng, m, (0.40, 0.30, 0.15, 0.10, 0.05)),
        ).astype(np.int32)
        tight_id = rng.random(m) < np.where(prompt, 0.93, 0.5)
        tail = rng.random(m) < 0.03
        sip3d = np.where(
            prompt,
            np.where(tail, 2.0 + rng.exponential(4.0, m), np.abs(rng.normal(0.0, 1.2, m))),
            0.5 + rng.exponential(4.0, m),
        )
        iso_tail = rng.random(m) < 0.05
        iso = np.where(
            prompt,
            np.where(iso_tail, rng.exponential(0.3, m), rng.exponential(0.025, m)),
            rng.exponential(0.6, m),
        )

        sel_e = accepted & is_e
        sel_m = accepted & ~is_e
        electrons = sorted_collection(
            evt[sel_e],
            {
                "pt": reco_pt[sel_e],
                "eta": reco_eta[sel_e],
                "phi": reco_phi[sel_e],
                "mass": np.full(sel_e.sum(), M_ELECTRON),
                "charge": charge[sel_e],
                "cutBased": cut_based[sel_e],
                "sip3d": sip3d[sel_e],
                "pfRelIso03_all": iso[sel_e],
            },
            n,
            ELECTRON_TYPES,
        )
        muons = sorted_collection(
            evt[sel_m],
            {
                "pt": reco_pt[sel_m],
                "eta": reco_eta[sel_m],
                "phi": reco_phi[sel_m],
                "mass": np.full(sel_m.sum(), M_MUON),
                "charge": charge[sel_m],
                "tightId": tight_id[sel_m],
                "sip3d": sip3d[sel_m],
                "pfRelIso04_all": iso[sel_m],
            },
            n,
            MUON_TYPES,
        )
        return electrons, muons

    def finish(self) -> dict:
        rng, n = self.rng, self.n
        jets = self._finish_jets()
        electrons, muons = self._finish_leptons()
        met_x = self.inv_x + rng.normal(0.0, 12.0, n)
        met_y = self.inv_y + rng.normal(0.0, 12.0, n)
        scalars = {
            "genWeight": np.ones(n, np.float32),
            "PV_npvs": (rng.poisson(11.0, n) + 1).astype(np.int32),
            "MET_pt": np.hypot(met_x, met_y).astype(np.float32),
            "MET_phi": round_mantissa(np.arctan2(met_y, met_x).astype(np.float32), 12),
        }
        return {"scalars": scalars, "Jet": jets, "Electron": electrons, "Muon": muons}
