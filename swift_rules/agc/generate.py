"""Deterministic generator of NanoAOD-format events for the AGC CMS ttbar analysis.

The files it writes are real ROOT files (a TTree ``Events`` with NanoAOD branch
names and types) that uproot and coffea's ``NanoAODSchema`` read like CMS
NanoAOD. The physics is a fast, vectorised toy, good enough for the analysis to
see what it sees in the real samples:

* ttbar: top quarks with a falling pT spectrum and a rapidity spread, decayed
  ``t -> b W`` and ``W -> q q' / l nu / tau nu`` by two-body decays in the rest
  frames followed by boosts, so that the hadronic top gives a peak near 173 GeV
  in the three-jet mass; ISR jets (Poisson multiplicity, power-law pT) that the
  ttbar system recoils against; FSR that splits a fraction of a parton's pT off
  into a separate jet; a few pileup jets.
* single top: s-channel (t + b), t-channel (t + forward light jet, often with
  a soft second b), tW (t + W).
* W+jets: ``W -> l nu`` plus a steeply falling number of mostly light jets
  (few c, fewer b), so that few events reach four jets and fewer still pass a
  b-tag requirement.
* Jets are smeared (pT-dependent resolution, flavour-dependent response), get
  a jet mass, a jet ID bitmask and b-tag discriminants that depend on their
  hadron flavour. Prompt leptons mostly pass the tight identification; some
  non-prompt leptons (low pT, displaced, not isolated) are added as bystanders.
* The ttbar variations differ from nominal by a few percent: ``scaleup`` /
  ``scaledown`` have more / fewer ISR and FSR jets and a slightly harder /
  softer spectrum, ``ME_var`` a harder top-quark pT spectrum, ``PS_var`` a lower
  jet energy response, a worse resolution and a slightly lower b-tag efficiency.

Determinism: the events of a file depend only on (process, variation, file
index, number of events, seed). They are generated in fixed blocks of
:data:`BLOCK_SIZE` events, each from its own ``PCG64`` stream seeded by
``SeedSequence([seed, crc(process), crc(variation), file_index, block_index])``,
and the blocks are then cut into write chunks of any size: the chunking changes
the baskets, never the contents. (Bit-identical for a given NumPy version and
platform: NumPy does not promise its random distributions or SIMD math to be
bit-stable across versions and CPUs.) ``event`` numbers are ``file_index * 10**9 +
i + 1``, unique within a sample set, so that ``(run, luminosityBlock, event)``
can seed per-event random numbers downstream.

Usage::

    from swift_rules.agc.generate import generate_dataset, DEFAULT_SIZES
    events_per_file, files_per_sample = DEFAULT_SIZES["small"]
    fileset = generate_dataset("data/generated", events_per_file=events_per_file,
                               files_per_sample=files_per_sample)
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from swift_rules.agc import samples as _samples
from swift_rules.agc.presets import DEFAULT_SIZES, preset_total  # noqa: F401 (re-exported)
from swift_rules.atomic import atomic_path

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_SIZES",
    "VARIATIONS",
    "generate_arrays",
    "generate_dataset",
    "generate_file",
    "iter_chunks",
]

# Events per independently seeded generation block. Changing it changes the
# generated events (not their statistics): it is part of the format's identity.
BLOCK_SIZE = 50_000
# Events per uproot ``extend`` call (one basket per branch) unless told otherwise.
WRITE_CHUNK = 100_000
# event = file_index * EVENT_STRIDE + i + 1
EVENT_STRIDE = 10**9
GENERATOR_VERSION = 1
METADATA_KEY = "swift_rules_generator"

# compression name -> (uproot codec class, default level); "zlib:1" picks a level.
_COMPRESSION = {
    "zlib": (uproot.ZLIB, 4),
    "lz4": (uproot.LZ4, 1),
    "zstd": (uproot.ZSTD, 3),
    "lzma": (uproot.LZMA, 8),
    "none": (None, 0),
}

# ---------------------------------------------------------------------------
# Variations


@dataclasses.dataclass(frozen=True)
class _Knobs:
    top_pt_scale: float = 1.0  # scales the top (or W) pT spectrum
    isr_mean: float = 1.0  # multiplies the mean number of ISR jets
    isr_hardness: float = 1.0  # scales ISR jet pT
    fsr_prob: float = 0.12  # probability that a parton radiates a resolved FSR jet
    jes: float = 1.0  # jet energy response
    jer: float = 1.0  # jet energy resolution multiplier
    btag_eff: float = 1.0  # multiplies the b-jet b-tag "good track" fraction


VARIATIONS: dict[str, _Knobs] = {
    "nominal": _Knobs(),
    "scaleup": _Knobs(isr_mean=1.08, isr_hardness=1.03, fsr_prob=0.14, top_pt_scale=1.01),
    "scaledown": _Knobs(isr_mean=0.92, isr_hardness=0.97, fsr_prob=0.10, top_pt_scale=0.99),
    "ME_var": _Knobs(top_pt_scale=1.07, isr_mean=1.04),
    "PS_var": _Knobs(jes=0.975, jer=1.12, fsr_prob=0.14, btag_eff=0.96),
}

# ---------------------------------------------------------------------------
# Random streams


def _stable_int(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _block_rng(seed: int, process: str, variation: str, file_index: int, block_index: int):
    ss = np.random.SeedSequence(
        [int(seed), _stable_int(process), _stable_int(variation), int(file_index), int(block_index)]
    )
    return np.random.Generator(np.random.PCG64(ss))


# ---------------------------------------------------------------------------
# Kinematics. Four-vectors are tuples (E, px, py, pz) of float64 arrays.

M_TOP, W_TOP = 172.5, 1.4
M_W, W_W = 80.4, 2.1
M_B = 4.8
M_ELECTRON, M_MUON = 0.000511, 0.10566
TWO_PI = 2.0 * np.pi


def _breit_wigner(rng, n, mass, width, lo, hi):
    return np.clip(mass + 0.5 * width * rng.standard_cauchy(n), lo, hi)


def _p4_from_transverse(px, py, y, m):
    mt = np.sqrt(px * px + py * py + m * m)
    return (mt * np.cosh(y), px, py, mt * np.sinh(y))


def _boost(p, parent, parent_mass):
    """Boost ``p``, given in the parent's rest frame, to the frame where it is ``parent``."""
    e, x, y, z = p
    pe, px, py, pz = parent
    bx, by, bz = px / pe, py / pe, pz / pe
    gamma = pe / parent_mass
    b2 = bx * bx + by * by + bz * bz
    bp = bx * x + by * y + bz * z
    g2 = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    k = g2 * bp + gamma * e
    return (gamma * (e + bp), x + k * bx, y + k * by, z + k * bz)


def _decay2(rng, parent, mass, m1, m2):
    """Isotropic two-body decay of ``parent`` (mass ``mass``) into masses ``m1``, ``m2``."""
    n = len(mass)
    s = mass * mass
    pstar = np.sqrt(np.maximum((s - (m1 + m2) ** 2) * (s - (m1 - m2) ** 2), 0.0)) / (2.0 * mass)
    cos_t = rng.uniform(-1.0, 1.0, n)
    sin_t = np.sqrt(1.0 - cos_t * cos_t)
    phi = rng.uniform(0.0, TWO_PI, n)
    dx, dy, dz = pstar * sin_t * np.cos(phi), pstar * sin_t * np.sin(phi), pstar * cos_t
    e1 = np.sqrt(pstar * pstar + m1 * m1)
    e2 = np.sqrt(pstar * pstar + m2 * m2)
    d1 = _boost((e1, dx, dy, dz), parent, mass)
    d2 = _boost((e2, -dx, -dy, -dz), parent, mass)
    return d1, d2


def _take(p, index):
    return tuple(c[index] for c in p)


def _scale(p, factor):
    return tuple(c * factor for c in p)


def _choose(rng, n, probs):
    cum = np.cumsum(probs)
    cum = cum / cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(probs) - 1)


def _beta1(rng, b, n):
    """Beta(1, b) by inversion (much faster than ``rng.beta``), as float32."""
    exponent = (1.0 / np.asarray(b, dtype=np.float64)).astype(np.float32)
    return 1.0 - rng.random(n, dtype=np.float32) ** exponent


def _power_law(rng, n, pt_min, index, pt_max=2000.0):
    """pT with density ~ pT^-(index+1) above pt_min (P(pT > x) = (x/pt_min)^-index)."""
    u = rng.random(n)
    return np.minimum(pt_min * (1.0 - u) ** (-1.0 / index), pt_max)


# ---------------------------------------------------------------------------
# Event builder: collects partons, leptons and invisible momentum, then
# simulates the detector response and produces NanoAOD columns.

_W_INCLUSIVE = (0.6760, 0.1080, 0.1080, 0.1080)  # hadronic, e, mu, tau
_W_LEPTONIC = (0.0, 1.0, 1.0, 1.0)


class _Builder:
    def __init__(self, n: int, rng: np.random.Generator, knobs: _Knobs):
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
        pt = _power_law(rng, m, pt_min, index) * k.isr_hardness
        eta = rng.normal(0.0, 1.9, m)
        phi = rng.uniform(0.0, TWO_PI, m)
        flav = np.array([0, 4, 5], dtype=np.int32)[
            _choose(rng, m, (1 - b_frac - c_frac, c_frac, b_frac))
        ]
        self.add_jets_pt_eta_phi(evt, pt, eta, phi, flav)
        rx = np.bincount(evt, weights=pt * np.cos(phi), minlength=self.n)
        ry = np.bincount(evt, weights=pt * np.sin(phi), minlength=self.n)
        return rx, ry

    def decay_w(self, evt, w, mw, charge, probs=_W_INCLUSIVE):
        rng = self.rng
        m = len(evt)
        mode = _choose(rng, m, probs)
        f1, f2 = _decay2(rng, w, mw, 0.0, 0.0)
        had = np.flatnonzero(mode == 0)
        cs = rng.random(m) < 0.5
        self.add_jets(evt[had], _take(f1, had), np.where(cs, 4, 0).astype(np.int32)[had])
        self.add_jets(evt[had], _take(f2, had), 0)
        lep = np.flatnonzero((mode == 1) | (mode == 2))
        pdg = np.where(mode == 1, 11, 13).astype(np.int32)
        self.add_leptons(evt[lep], _take(f1, lep), pdg[lep], charge[lep])
        self.add_invisible(evt[lep], _take(f2, lep))
        # tau: 35% leptonic (softer e/mu), 65% hadronic (a light jet).
        tau = np.flatnonzero(mode == 3)
        t_evt, t_f1, t_charge = evt[tau], _take(f1, tau), charge[tau]
        self.add_invisible(t_evt, _take(f2, tau))
        k = len(t_evt)
        is_tl = rng.random(k) < 0.35
        tl, th = np.flatnonzero(is_tl), np.flatnonzero(~is_tl)
        z = np.where(is_tl, rng.beta(2.0, 3.0, k), rng.beta(4.0, 2.0, k))
        tau_pdg = np.where(rng.random(k) < 0.5, 11, 13).astype(np.int32)
        vis = _scale(t_f1, z)
        self.add_leptons(t_evt[tl], _take(vis, tl), tau_pdg[tl], t_charge[tl])
        self.add_jets(t_evt[th], _take(vis, th), 0)
        self.add_invisible(t_evt, _scale(t_f1, 1.0 - z))

    def decay_top(self, evt, top, mt, charge, probs=_W_INCLUSIVE):
        mw = _breit_wigner(self.rng, len(evt), M_W, W_W, 65.0, 95.0)
        w, b = _decay2(self.rng, top, mt, mw, M_B)
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
        z = (0.08 + 0.32 * _beta1(rng, 2.0, kf)).astype(f32)
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
        return _sorted_collection(evt[keep], {c: v[keep] for c, v in cols.items()}, n, _JET_TYPES)

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
        csv[hi_idx] = 1.0 - 0.55 * _beta1(rng, np.where(is_b[hi_idx], 6.0, 3.5), len(hi_idx))
        lo_shape = np.where(is_b[lo_idx], 2.2, np.where(is_c[lo_idx], 3.0, 5.5))
        csv[lo_idx] = 0.62 * _beta1(rng, lo_shape, len(lo_idx))
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
            _choose(rng, m, (0.02, 0.04, 0.06, 0.10, 0.78)),
            _choose(rng, m, (0.40, 0.30, 0.15, 0.10, 0.05)),
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
        electrons = _sorted_collection(
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
            _ELECTRON_TYPES,
        )
        muons = _sorted_collection(
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
            _MUON_TYPES,
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
            "MET_phi": _round_mantissa(np.arctan2(met_y, met_x).astype(np.float32), 12),
        }
        return {"scalars": scalars, "Jet": jets, "Electron": electrons, "Muon": muons}


# NanoAOD stores many floats with a reduced mantissa; so do we (it also makes
# the files compress like NanoAOD). ``None``: full float32 precision.
_JET_TYPES = {
    "pt": (np.float32, 10),
    "eta": (np.float32, 12),
    "phi": (np.float32, 12),
    "mass": (np.float32, 10),
    "btagCSVV2": (np.float32, 10),
    "btagDeepFlavB": (np.float32, 10),
    "jetId": (np.int32, None),
    "hadronFlavour": (np.int32, None),
}
_ELECTRON_TYPES = {
    "pt": (np.float32, None),
    "eta": (np.float32, 12),
    "phi": (np.float32, 12),
    "mass": (np.float32, None),
    "charge": (np.int32, None),
    "cutBased": (np.int32, None),
    "sip3d": (np.float32, 10),
    "pfRelIso03_all": (np.float32, 10),
}
_MUON_TYPES = {
    "pt": (np.float32, None),
    "eta": (np.float32, 12),
    "phi": (np.float32, 12),
    "mass": (np.float32, None),
    "charge": (np.int32, None),
    "tightId": (np.bool_, None),
    "sip3d": (np.float32, 10),
    "pfRelIso04_all": (np.float32, 10),
}


def _round_mantissa(x: np.ndarray, bits: int | None) -> np.ndarray:
    """Round float32 values to ``bits`` mantissa bits (as NanoAOD's ``precision``)."""
    if bits is None or bits >= 23:
        return x
    shift = 23 - bits
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # Round half up in the magnitude; values here are finite and far from float32's maximum.
    rounded = (u + np.uint32(1 << (shift - 1))) & np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF)
    return rounded.view(np.float32)


def _order_by_event_and_pt(evt, pt, bits):
    """Permutation sorting by event, then decreasing pT, ties by position: platform-independent."""
    m = len(evt)
    pt_bits = pt.view(np.uint32).astype(np.int64)  # monotonic in pT for pT >= 0
    if bits is not None and bits <= 10 and m < (1 << 20) and BLOCK_SIZE < (1 << 16):
        # Pack (event, rounded pT, position) into one unique int64 and sort the keys.
        pt_key = (1 << 18) - 1 - (pt_bits >> (23 - bits))
        key = (evt.astype(np.int64) << 38) | (pt_key << 20) | np.arange(m, dtype=np.int64)
        return np.sort(key) & ((1 << 20) - 1)
    key = (evt.astype(np.int64) << 32) | (0xFFFFFFFF - pt_bits)
    return np.argsort(key, kind="stable")


def _sorted_collection(evt, columns, n, types):
    """Cast and round the columns, sort by (event, decreasing pT); return (counts, columns)."""
    out = {}
    for name, (dtype, bits) in types.items():
        v = columns[name].astype(dtype)
        if bits is not None:
            v = _round_mantissa(v, bits)
        out[name] = v
    order = _order_by_event_and_pt(evt, out["pt"], types["pt"][1])
    out = {name: v[order] for name, v in out.items()}
    counts = np.bincount(evt, minlength=n).astype(np.int64)
    return counts, out


# ---------------------------------------------------------------------------
# Processes


def _tops_pair(b: _Builder, pt_theta):
    """Two recoiling heavy objects' transverse momenta and rapidities (pair production)."""
    rng, n, k = b.rng, b.n, b.knobs
    rx, ry = b.isr(1.4)
    pt1 = rng.gamma(2.1, pt_theta * k.top_pt_scale, n)
    phi1 = rng.uniform(0.0, TWO_PI, n)
    p1x, p1y = pt1 * np.cos(phi1), pt1 * np.sin(phi1)
    p2x, p2y = -p1x - rx, -p1y - ry
    y_sys = rng.normal(0.0, 0.8, n)
    dy = rng.normal(0.0, 1.25, n)
    return (p1x, p1y, y_sys + 0.5 * dy), (p2x, p2y, y_sys - 0.5 * dy)


def _gen_ttbar(b: _Builder):
    rng, n = b.rng, b.n
    evt = np.arange(n)
    (p1x, p1y, y1), (p2x, p2y, y2) = _tops_pair(b, 60.0)
    m1 = _breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    m2 = _breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    plus = np.ones(n, np.int32)
    b.decay_top(evt, _p4_from_transverse(p1x, p1y, y1, m1), m1, plus)
    b.decay_top(evt, _p4_from_transverse(p2x, p2y, y2, m2), m2, -plus)


def _single_top(b: _Builder, pt_theta, top_frac):
    rng, n, k = b.rng, b.n, b.knobs
    evt = np.arange(n)
    pt = rng.gamma(2.0, pt_theta * k.top_pt_scale, n)
    phi = rng.uniform(0.0, TWO_PI, n)
    y = rng.normal(0.0, 1.1, n)
    mt = _breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    charge = np.where(rng.random(n) < top_frac, 1, -1).astype(np.int32)
    return evt, pt * np.cos(phi), pt * np.sin(phi), y, mt, charge


def _gen_single_top_s(b: _Builder):
    rng, n = b.rng, b.n
    rx, ry = b.isr(0.7)
    evt, px, py, y, mt, charge = _single_top(b, 32.0, 0.65)
    b.decay_top(evt, _p4_from_transverse(px, py, y, mt), mt, charge, _W_LEPTONIC)
    yb = y + rng.normal(0.0, 1.2, n)
    b.add_jets(evt, _p4_from_transverse(-px - rx, -py - ry, yb, np.full(n, M_B)), 5)


def _gen_single_top_t(b: _Builder):
    rng, n = b.rng, b.n
    rx, ry = b.isr(0.6)
    evt, px, py, y, mt, charge = _single_top(b, 30.0, 0.62)
    b.decay_top(evt, _p4_from_transverse(px, py, y, mt), mt, charge)
    # Second b from gluon splitting (4-flavour scheme): soft, often lost.
    has_b = rng.random(n) < 0.75
    bpt = 8.0 + rng.exponential(22.0, n)
    bphi = rng.uniform(0.0, TWO_PI, n)
    beta = rng.normal(0.0, 1.6, n)
    bx, by = bpt * np.cos(bphi) * has_b, bpt * np.sin(bphi) * has_b
    b.add_jets_pt_eta_phi(evt[has_b], bpt[has_b], beta[has_b], bphi[has_b], 5)
    # Forward spectator light quark balances the rest.
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    eta_q = sign * np.abs(rng.normal(2.2, 1.0, n))
    qx, qy = -px - bx - rx, -py - by - ry
    b.add_jets(evt, _p4_from_transverse(qx, qy, eta_q, np.zeros(n)), 0)


def _gen_single_top_tw(b: _Builder):
    rng, n = b.rng, b.n
    rx, ry = b.isr(1.0)
    # At NLO, tW interferes with ttbar (gb -> tW b): often a second b-jet.
    has_b = rng.random(n) < 0.4
    bpt = 15.0 + rng.exponential(35.0, n)
    bphi = rng.uniform(0.0, TWO_PI, n)
    beta = rng.normal(0.0, 1.5, n)
    b.add_jets_pt_eta_phi(np.flatnonzero(has_b), bpt[has_b], beta[has_b], bphi[has_b], 5)
    rx = rx + np.where(has_b, bpt * np.cos(bphi), 0.0)
    ry = ry + np.where(has_b, bpt * np.sin(bphi), 0.0)
    evt, px, py, y, mt, charge = _single_top(b, 42.0, 0.5)
    b.decay_top(evt, _p4_from_transverse(px, py, y, mt), mt, charge)
    mw = _breit_wigner(rng, n, M_W, W_W, 65.0, 95.0)
    yw = y + rng.normal(0.0, 1.2, n)
    b.decay_w(evt, _p4_from_transverse(-px - rx, -py - ry, yw, mw), mw, -charge)


def _gen_wjets(b: _Builder):
    rng, n, k = b.rng, b.n, b.knobs
    evt = np.arange(n)
    # Steeply falling jet multiplicity (Berends-like: each extra jet costs ~0.34).
    nj = rng.geometric(1.0 - 0.34 * min(k.isr_mean, 1.5), n) - 1
    jevt = np.repeat(evt, nj)
    m = len(jevt)
    # Jets in events with more jets are harder.
    jpt = _power_law(rng, m, 20.0, 1.9) * k.isr_hardness * (1.0 + 0.12 * nj[jevt])
    jeta = rng.normal(0.0, 1.8, m)
    jphi = rng.uniform(0.0, TWO_PI, m)
    flav = np.array([0, 4, 5], dtype=np.int32)[_choose(rng, m, (0.89, 0.08, 0.03))]
    # W + b bbar: in some multi-jet events the two first jets come from g -> b bbar.
    rank = np.arange(m) - np.repeat(np.cumsum(nj) - nj, nj)
    wbb = (rng.random(n) < 0.08)[jevt] & (nj[jevt] >= 2) & (rank < 2)
    flav = np.where(wbb, 5, flav).astype(np.int32)
    b.add_jets_pt_eta_phi(jevt, jpt, jeta, jphi, flav)
    rx = np.bincount(jevt, weights=jpt * np.cos(jphi), minlength=n)
    ry = np.bincount(jevt, weights=jpt * np.sin(jphi), minlength=n)
    wpt = rng.gamma(1.5, 6.0, n)
    wphi = rng.uniform(0.0, TWO_PI, n)
    mw = _breit_wigner(rng, n, M_W, W_W, 50.0, 110.0)
    yw = rng.normal(0.0, 1.9, n)
    w = _p4_from_transverse(wpt * np.cos(wphi) - rx, wpt * np.sin(wphi) - ry, yw, mw)
    charge = np.where(rng.random(n) < 0.58, 1, -1).astype(np.int32)
    b.decay_w(evt, w, mw, charge, _W_LEPTONIC)


_PROCESSES = {
    "ttbar": _gen_ttbar,
    "single_top_s_chan": _gen_single_top_s,
    "single_top_t_chan": _gen_single_top_t,
    "single_top_tW": _gen_single_top_tw,
    "wjets": _gen_wjets,
}


def _check_sample(process: str, variation: str) -> None:
    if process not in _PROCESSES:
        raise ValueError(f"unknown process {process!r}; known: {sorted(_PROCESSES)}")
    if variation not in VARIATIONS:
        raise ValueError(f"unknown variation {variation!r}; known: {sorted(VARIATIONS)}")


# ---------------------------------------------------------------------------
# Blocks and chunks. A "chunk" is a dict: scalar name -> array of n, and
# collection name -> (counts, {field: flat array}).

_COLLECTIONS = ("Jet", "Electron", "Muon")


def _generate_block(process, variation, n, *, file_index, block_index, seed):
    rng = _block_rng(seed, process, variation, file_index, block_index)
    builder = _Builder(n, rng, VARIATIONS[variation])
    _PROCESSES[process](builder)
    out = builder.finish()
    start = block_index * BLOCK_SIZE
    chunk = {
        "run": np.ones(n, np.uint32),
        "luminosityBlock": np.full(n, file_index + 1, np.uint32),
        "event": (
            np.uint64(file_index) * np.uint64(EVENT_STRIDE)
            + np.arange(start + 1, start + n + 1, dtype=np.uint64)
        ),
        **out["scalars"],
    }
    for name in _COLLECTIONS:
        chunk[name] = out[name]
    return chunk


def _chunk_len(chunk) -> int:
    return len(chunk["run"])


def _slice_chunk(chunk, start, stop):
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            offsets = np.concatenate([[0], np.cumsum(counts)])
            lo, hi = offsets[start], offsets[stop]
            out[name] = (counts[start:stop], {c: v[lo:hi] for c, v in cols.items()})
        else:
            out[name] = value[start:stop]
    return out


def _concat_chunks(chunks):
    if len(chunks) == 1:
        return chunks[0]
    out = {}
    for name, value in chunks[0].items():
        if isinstance(value, tuple):
            counts = np.concatenate([c[name][0] for c in chunks])
            cols = {f: np.concatenate([c[name][1][f] for c in chunks]) for f in value[1]}
            out[name] = (counts, cols)
        else:
            out[name] = np.concatenate([c[name] for c in chunks])
    return out


def iter_chunks(
    process: str,
    variation: str,
    n_events: int,
    *,
    file_index: int = 0,
    seed: int = 42,
    chunk_size: int | None = None,
) -> Iterator[dict]:
    """Yield the events of one file as raw chunks of ``chunk_size`` events (the last may be short).

    Each chunk maps scalar branch names to arrays and ``Jet``/``Electron``/``Muon``
    to ``(counts, {field: flat array})``. The concatenated contents do not depend
    on ``chunk_size``.
    """
    _check_sample(process, variation)
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    if n_events >= EVENT_STRIDE:
        raise ValueError(f"at most {EVENT_STRIDE - 1} events per file, got {n_events}")
    if file_index < 0:
        raise ValueError(f"file_index must be >= 0, got {file_index}")
    chunk_size = int(chunk_size or WRITE_CHUNK)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")

    pending: list[dict] = []
    pending_n = 0
    n_blocks = -(-n_events // BLOCK_SIZE)
    for block_index in range(n_blocks):
        n = min(BLOCK_SIZE, n_events - block_index * BLOCK_SIZE)
        block = _generate_block(
            process, variation, n, file_index=file_index, block_index=block_index, seed=seed
        )
        pending.append(block)
        pending_n += n
        while pending_n >= chunk_size:
            merged = _concat_chunks(pending)
            yield _slice_chunk(merged, 0, chunk_size)
            rest = _slice_chunk(merged, chunk_size, pending_n)
            pending_n -= chunk_size
            pending = [rest] if pending_n else []
    if pending_n:
        yield _concat_chunks(pending)


def _record_type(types) -> ak.types.Type:
    fields = ", ".join(f"{name}: {np.dtype(dtype).name}" for name, (dtype, _) in types.items())
    return ak.types.from_datashape(f"var * {{{fields}}}", highlevel=False)


# TTree branch types, in NanoAOD order; collections become nX + X_field branches.
_BRANCH_TYPES = {
    "run": np.uint32,
    "luminosityBlock": np.uint32,
    "event": np.uint64,
    "genWeight": np.float32,
    "PV_npvs": np.int32,
    "MET_pt": np.float32,
    "MET_phi": np.float32,
    "Jet": _record_type(_JET_TYPES),
    "Electron": _record_type(_ELECTRON_TYPES),
    "Muon": _record_type(_MUON_TYPES),
}


def _to_uproot(chunk) -> dict:
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            out[name] = ak.unflatten(ak.zip(cols, depth_limit=1), counts)
        else:
            out[name] = value
    return out


def _to_awkward(chunk) -> dict[str, ak.Array]:
    """Flat branch-name view of a chunk (``nJet``, ``Jet_pt``, ...) as awkward/numpy arrays."""
    out = {}
    for name, value in chunk.items():
        if isinstance(value, tuple):
            counts, cols = value
            out[f"n{name}"] = counts.astype(np.int32)
            for field, flat in cols.items():
                out[f"{name}_{field}"] = ak.unflatten(flat, counts)
        else:
            out[name] = value
    return out


def generate_arrays(
    process: str, variation: str, n_events: int, *, file_index: int = 0, seed: int = 42
) -> dict:
    """The branches :func:`generate_file` would write, in memory, keyed by branch name."""
    chunks = list(
        iter_chunks(
            process,
            variation,
            n_events,
            file_index=file_index,
            seed=seed,
            chunk_size=max(n_events, 1),
        )
    )
    if not chunks:
        chunks = [
            _generate_block(process, variation, 0, file_index=file_index, block_index=0, seed=seed)
        ]
    return _to_awkward(_concat_chunks(chunks))


# ---------------------------------------------------------------------------
# Files


def _metadata_string(process, variation, n_events, file_index, seed) -> str:
    return json.dumps(
        {
            "generator": "swift_rules.agc.generate",
            "version": GENERATOR_VERSION,
            "block_size": BLOCK_SIZE,
            "process": process,
            "variation": variation,
            "n_events": int(n_events),
            "file_index": int(file_index),
            "seed": int(seed),
        },
        sort_keys=True,
    )


def _compression(spec: str):
    """``"zlib"``, ``"lz4"``, ``"zstd"``, ``"lzma"`` or ``"none"``, optionally ``":LEVEL"``."""
    name, _, level = str(spec).lower().partition(":")
    if name not in _COMPRESSION:
        raise ValueError(
            f"unknown compression {spec!r}; known: {sorted(_COMPRESSION)} (optionally NAME:LEVEL)"
        )
    codec, default_level = _COMPRESSION[name]
    if codec is None:
        return None
    try:
        return codec(int(level) if level else default_level)
    except ValueError as err:
        raise ValueError(f"bad compression {spec!r}: {err}") from None


def generate_file(
    path,
    process: str,
    variation: str,
    n_events: int,
    *,
    file_index: int = 0,
    seed: int = 42,
    compression: str = "zlib",
    chunk_size: int | None = None,
) -> int:
    """Write ``n_events`` events of one sample to the ROOT file ``path``; return the number written.

    The file is written atomically (a temporary file beside it, then renamed).
    ``chunk_size`` (events per basket, default :data:`WRITE_CHUNK`) does not
    change the contents.
    """
    _check_sample(process, variation)
    codec = _compression(compression)
    written = 0
    with atomic_path(path) as tmp, uproot.recreate(tmp, compression=codec) as f:
        f[METADATA_KEY] = _metadata_string(process, variation, n_events, file_index, seed)
        # mktree, not ``f["Events"] = ...``: uproot >= 5.7 would write an RNTuple.
        tree = f.mktree("Events", _BRANCH_TYPES, title="Events")
        for chunk in iter_chunks(
            process, variation, n_events, file_index=file_index, seed=seed, chunk_size=chunk_size
        ):
            tree.extend(_to_uproot(chunk))
            written += _chunk_len(chunk)
    return written


def _existing_events(path: Path, expected_meta: str) -> int | None:
    """Number of events in an existing, complete file made with the same settings, else None."""
    if not path.is_file():
        return None
    try:
        with uproot.open(path) as f:
            meta = f[METADATA_KEY]
            meta = str(meta)
            if json.loads(meta) != json.loads(expected_meta):
                return None
            return int(f["Events"].num_entries)
    except Exception:
        return None


def _normalise_samples(samples) -> list[tuple[str, str]]:
    if samples is None:
        samples = _samples.SAMPLE_SETS
    out = []
    for s in samples:
        if isinstance(s, str):
            out.append(_samples.split_sample_name(s))
        else:
            process, variation = s
            out.append((process, variation))
    return out


def _per_sample(value, name: str, what: str) -> int:
    if isinstance(value, Mapping):
        if name not in value:
            raise KeyError(f"{what} has no entry for sample {name!r} (keys: {sorted(value)})")
        value = value[name]
    value = int(value)
    if value < 0:
        raise ValueError(f"{what} for {name!r} must be >= 0, got {value}")
    return value


def generate_dataset(
    outdir,
    *,
    events_per_file: dict[str, int] | int,
    files_per_sample: dict[str, int] | int,
    seed: int = 42,
    compression: str = "zlib",
    samples: Iterable | None = None,
    fileset_name: str = "fileset.json",
    progress: bool = False,
) -> dict:
    """Write every sample set's files under ``outdir`` and a fileset JSON; return the fileset.

    Files are ``outdir/{process}__{variation}/{process}__{variation}_{i:04d}.root``;
    the fileset (``outdir/fileset_name``) has the AGC ``nanoaod_inputs.json``
    layout: ``{process: {variation: {"files": [{"path", "nevts"}], "nevts_total"}}}``.
    ``events_per_file`` and ``files_per_sample`` are ints or dicts keyed by
    sample name (``ttbar__nominal``). A file that already exists, was made with
    the same settings and holds the right number of events is not rewritten.
    """
    outdir = Path(outdir)
    sample_sets = _normalise_samples(samples)
    jobs = []
    for process, variation in sample_sets:
        _check_sample(process, variation)
        name = _samples.sample_name(process, variation)
        n = _per_sample(events_per_file, name, "events_per_file")
        nfiles = _per_sample(files_per_sample, name, "files_per_sample")
        for i in range(nfiles):
            path = outdir / name / f"{name}_{i:04d}.root"
            jobs.append((process, variation, i, n, path))

    fileset: dict = {}
    for process, variation in sample_sets:
        fileset.setdefault(process, {})[variation] = {"files": [], "nevts_total": 0}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(j[3] for j in jobs), unit="evt", unit_scale=True, desc="generate")
    t0 = time.perf_counter()
    generated = 0
    for process, variation, i, n, path in jobs:
        meta = _metadata_string(process, variation, n, i, seed)
        if _existing_events(path, meta) != n:
            generate_file(
                path, process, variation, n, file_index=i, seed=seed, compression=compression
            )
            generated += n
        entry = fileset[process][variation]
        entry["files"].append({"path": str(path), "nevts": n})
        entry["nevts_total"] += n
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(path.name)
    if bar is not None:
        bar.close()
        dt = time.perf_counter() - t0
        if generated:
            print(f"generated {generated} events in {dt:.1f} s ({generated / dt:,.0f} events/s)")

    target = outdir / fileset_name
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(fileset, indent=2) + "\n")
    return fileset


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--size", choices=sorted(DEFAULT_SIZES), default="small")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compression", default="zlib", help="zlib, lz4, zstd, lzma, none[:LEVEL]")
    args = parser.parse_args(argv)
    events, files = DEFAULT_SIZES[args.size]
    generate_dataset(
        args.outdir,
        events_per_file=events,
        files_per_sample=files,
        seed=args.seed,
        compression=args.compression,
        progress=True,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv[1:]))
