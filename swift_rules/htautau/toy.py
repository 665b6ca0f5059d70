"""The toy physics of the generated H -> tautau samples (``generate.py`` writes the files).

Each sample gets its signature:

* **DYJetsToLL**: Z/gamma* (Breit-Wigner, recoiling against ISR jets) to tau tau (70%),
  mu mu (20%), e e (10%); tau tau mostly to mu tau_h, whose visible mass peaks near
  60 GeV (ZTT); in Z -> mu mu a muon may also be reconstructed as a decay-mode-0 tau that
  seldom passes the anti-muon discriminator (ZLL, at the Z mass).
* **W1/2/3JetsToLNu**: W -> mu nu (70%), tau nu, e nu with 1, 2 or 3 hard jets, the
  leading one often looking like an isolated tau: a real isolated muon, a fake tau
  (opposite charge 60% of the time) and a large transverse mass.
* **TTbar**: t tbar -> b W b W, one W to mu nu or tau nu, the other to jets, tau nu, mu
  or e: b-tagged jets, many jets.
* **GluGluToHToTauTau**: H(125) -> tau tau (85% mu tau_h) recoiling against ISR jets.
* **VBF_HToTauTau**: H(125) -> tau tau with two forward tag jets in opposite hemispheres
  (large m_jj and Delta eta).
* **QCD** (in data only): a muon from a heavy-flavour jet and a back-to-back jet that
  looks like an isolated tau; opposite-sign : same-sign = 0.80, the factor of plot.py.

Common to all: pileup vertices (2012-like), muon and tau isolation and identification
(prompt vs. non-prompt muons, 2% without PF isolation (-999) as the tool writes them;
genuine taus vs. fakes from jets, muons and electrons with their discriminators),
calorimeter jets with response and resolution (a tau_h leaves a jet too, as in the real
files: nothing removes the overlap), b-tag discriminants by flavour (-1 outside the
tracker), MET from the neutrinos and the mismeasurement, the trigger bits emulated from
the reconstructed objects. Simulation has the tool's generator matching: each
reconstructed muon, electron and tau is matched to the nearest (Delta R of the visible
momentum, no threshold, the first on a tie) "interesting" generator particle (status-2
taus before status-1 muons and electrons), which is appended to ``GenPart``; a muon from a
tau decay ties with its tau and is matched to it (``|pdgId| == 15``), as ``gen_match`` of
``skim.cxx`` expects. Data has no ``GenPart``, and -1 for the indices.

A block of events is built in two steps: the truth of each process (:class:`Builder` and
the ``_gen_*`` functions), filtered at generator level (:func:`filtered_events`: a muon in
the trigger's reach and a second object that may be reconstructed as a tau), then the
detector (:meth:`Builder.finish`). Four-vectors are tuples ``(E, px, py, pz)`` of float64
arrays.
"""

from __future__ import annotations

import zlib

import numpy as np

from swift_rules.fourvectors import decay2
from swift_rules.htautau.inputs import COLLECTIONS

# ---------------------------------------------------------------------------
# Random streams and kinematics (four-vectors: tuples (E, px, py, pz) of float64 arrays)


def block_rng(seed: int, dataset: str, file_index: int, block_index: int):
    ss = np.random.SeedSequence(
        [int(seed), zlib.crc32(dataset.encode()), int(file_index), int(block_index)]
    )
    return np.random.Generator(np.random.PCG64(ss))


M_TAU, M_MUON, M_ELECTRON, M_PION = 1.77686, 0.10566, 0.000511, 0.13957
M_Z, W_Z, M_W, W_W, M_H, M_TOP, W_TOP, M_B = 91.19, 2.50, 80.38, 2.09, 125.0, 172.5, 1.4, 4.8
TWO_PI = 2.0 * np.pi
MUON, ELECTRON, HADRON = 0, 1, 2  # tau decays
PROMPT, FROM_TAU, NONPROMPT, FROM_QCD = 0, 1, 2, 3  # lepton origins
GENUINE, JET, FROM_MUON, FROM_ELECTRON, TAU_LIKE = 0, 1, 2, 3, 4  # tau candidate origins
LIGHT, CHARM, BOTTOM, TAU_JET = 0, 4, 5, 15  # jet flavours (TAU_JET: left by a tau_h)
TAU_LIKE_JET = -1  # a QCD jet that always seeds an isolated-looking tau candidate


def _wrap(phi):
    return np.mod(phi + np.pi, TWO_PI) - np.pi


def _pt_eta_phi(p):
    _, px, py, pz = p
    pt = np.hypot(px, py)
    return pt, np.arcsinh(pz / np.maximum(pt, 1e-9)), np.arctan2(py, px)


def _take(p, index):
    return tuple(c[index] for c in p)


def _breit_wigner(rng, n, mass, width, lo, hi):
    u = rng.uniform(
        np.arctan((lo - mass) / (0.5 * width)), np.arctan((hi - mass) / (0.5 * width)), n
    )
    return mass + 0.5 * width * np.tan(u)


def choose(rng, n, probs):
    cum = np.cumsum(probs)
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(n), side="right"), len(probs) - 1)


def _power_law(rng, n, pt_min, index, pt_max=1000.0):
    return np.minimum(pt_min * (1.0 - rng.random(n)) ** (-1.0 / index), pt_max)


# Visible energy fraction of tau -> l nu nu (unpolarised): dN/dz = (5 - 9 z^2 + 4 z^3) / 3.
_Z_GRID = np.linspace(0.0, 1.0, 2001)
_Z_CDF = (5 * _Z_GRID - 3 * _Z_GRID**3 + _Z_GRID**4) / 3.0


def _leptonic_fraction(rng, n):
    return np.interp(rng.random(n), _Z_CDF, _Z_GRID)


# HPS decay modes of hadronic taus and their visible masses.
_DECAY_MODES = np.array([0, 1, 2, 10], dtype=np.int32)
_DECAY_MODE_P = (0.22, 0.48, 0.12, 0.18)


def _visible_mass(rng, dm):
    n = len(dm)
    out = np.full(n, M_PION)
    out = np.where(dm == 1, np.clip(rng.normal(0.77, 0.15, n), 0.3, 1.3), out)
    out = np.where(dm == 2, np.clip(rng.normal(0.95, 0.2, n), 0.4, 1.5), out)
    return np.where(dm == 10, np.clip(rng.normal(1.15, 0.2, n), 0.8, 1.6), out)


# ---------------------------------------------------------------------------
# Event builder: truth objects of a block of events, then the detector and the format.


class _Chunks:
    """Columns added in pieces: ``add(evt=..., pt=...)``, ``cat()`` -> dict of arrays."""

    def __init__(self, **dtypes):
        self.dtypes = {"evt": np.int64, **dtypes}
        self.parts: list[dict] = []

    def add(self, **columns):
        n = len(columns["evt"])
        self.parts.append({k: np.broadcast_to(np.asarray(v), (n,)) for k, v in columns.items()})

    def cat(self) -> dict[str, np.ndarray]:
        return {
            k: np.concatenate([p[k] for p in self.parts]).astype(t)
            if self.parts
            else np.zeros(0, t)
            for k, t in self.dtypes.items()
        }

    def extend(self, other: _Chunks, new_index: np.ndarray) -> None:
        """Append ``other``'s objects of the events where ``new_index >= 0``, renumbered."""
        cols = other.cat()
        keep = new_index[cols["evt"]] >= 0 if len(cols["evt"]) else np.zeros(0, bool)
        cols = {k: v[keep] for k, v in cols.items()}
        cols["evt"] = new_index[cols["evt"]]
        self.parts.append(cols)


class Builder:
    def __init__(self, n: int, rng: np.random.Generator, is_data: bool):
        self.n, self.rng, self.is_data = n, rng, is_data
        f8, i4 = np.float64, np.int32
        self.muons = _Chunks(pt=f8, eta=f8, phi=f8, charge=i4, origin=i4)
        self.electrons = _Chunks(pt=f8, eta=f8, phi=f8, charge=i4, origin=i4)
        self.taus = _Chunks(pt=f8, eta=f8, phi=f8, mass=f8, charge=i4, dm=i4, origin=i4)
        self.jets = _Chunks(pt=f8, eta=f8, phi=f8, flavour=i4, fakes=bool, charge=i4)
        self.gen = _Chunks(pt=f8, eta=f8, phi=f8, mass=f8, pdg=i4, status=i4, veta=f8, vphi=f8)
        self.inv_x, self.inv_y = np.zeros(n), np.zeros(n)
        self.npv = rng.poisson(rng.gamma(8.0, 1.9, n)).astype(np.int32) + 1

    _TRUTH = ("muons", "electrons", "taus", "jets", "gen")

    def extend(self, other: Builder, new_index: np.ndarray) -> None:
        """Take over ``other``'s events where ``new_index >= 0`` as events ``new_index``."""
        for name in self._TRUTH:
            getattr(self, name).extend(getattr(other, name), new_index)
        kept = np.flatnonzero(new_index >= 0)
        for name in ("inv_x", "inv_y", "npv"):
            getattr(self, name)[new_index[kept]] = getattr(other, name)[kept]

    def filtered(self, min_muon_pt=16.0, max_muon_eta=2.2, min_seed_pt=18.0, max_seed_eta=2.4):
        """The generator-level filter of the toy samples: a muon in the trigger's reach and a
        second object (tau_h, lepton or jet) that may be reconstructed as a tau."""
        n = self.n
        mu = self.muons.cat()
        in_reach = (mu["pt"] > min_muon_pt) & (np.abs(mu["eta"]) < max_muon_eta)
        lead = np.bincount(mu["evt"], weights=in_reach, minlength=n) > 0

        def seeds(name):
            obj = getattr(self, name).cat()
            ok = (obj["pt"] > min_seed_pt) & (np.abs(obj["eta"]) < max_seed_eta)
            return np.bincount(obj["evt"], weights=ok, minlength=n)

        other = seeds("taus") + seeds("electrons") + seeds("jets")
        return lead & ((other > 0) | (seeds("muons") >= 2))

    # -- truth ---------------------------------------------------------------
    def invisible(self, evt, p):
        self.inv_x += np.bincount(evt, weights=p[1], minlength=self.n)
        self.inv_y += np.bincount(evt, weights=p[2], minlength=self.n)

    def add_gen(self, evt, kinematics, mass, pdg, status, vis=None):
        """An "interesting" generator particle; ``vis``: the (eta, phi) of its visible part."""
        pt, eta, phi = kinematics
        veta, vphi = (eta, phi) if vis is None else vis
        self.gen.add(
            evt=evt,
            pt=pt,
            eta=eta,
            phi=phi,
            mass=mass,
            pdg=pdg,
            status=status,
            veta=veta,
            vphi=vphi,
        )

    def lepton(self, evt, kinematics, charge, flavour, origin):
        """A muon or electron of (pt, eta, phi); simulation also records it as a status-1
        generator particle."""
        pt, eta, phi = kinematics
        target = self.muons if flavour == MUON else self.electrons
        target.add(evt=evt, pt=pt, eta=eta, phi=phi, charge=charge, origin=origin)
        if not self.is_data:
            base = 13 if flavour == MUON else 11
            mass = M_MUON if flavour == MUON else M_ELECTRON
            self.add_gen(evt, kinematics, mass, np.where(charge < 0, base, -base), 1)

    def jet(self, evt, pt, eta, phi, flavour, fakes=True, charge=0):
        """A jet (parton level); ``fakes``: it may seed a fake tau candidate."""
        self.jets.add(evt=evt, pt=pt, eta=eta, phi=phi, flavour=flavour, fakes=fakes, charge=charge)

    def isr(self, evt, mean, pt_min=20.0, index=2.2):
        """ISR jets of the events ``evt``; returns the (px, py) they carry, per event of evt."""
        rng = self.rng
        counts = rng.poisson(mean, len(evt))
        jet_evt = np.repeat(evt, counts)
        owner = np.repeat(np.arange(len(evt)), counts)
        m = len(jet_evt)
        pt = _power_law(rng, m, pt_min, index)
        phi = rng.uniform(-np.pi, np.pi, m)
        flavour = np.array([LIGHT, CHARM, BOTTOM], np.int32)[choose(rng, m, (0.9, 0.07, 0.03))]
        self.jet(jet_evt, pt, rng.normal(0.0, 1.9, m), phi, flavour)
        rx = np.bincount(owner, weights=pt * np.cos(phi), minlength=len(evt))
        ry = np.bincount(owner, weights=pt * np.sin(phi), minlength=len(evt))
        return rx, ry

    def boson(self, evt, mass, rx, ry, y_sigma):
        """A boson of ``mass`` recoiling against (rx, ry), rapidity ~ N(0, y_sigma)."""
        rng, n = self.rng, len(evt)
        px = -rx + rng.normal(0.0, 4.0, n)
        py = -ry + rng.normal(0.0, 4.0, n)
        y = rng.normal(0.0, y_sigma, n)
        mt = np.sqrt(mass * mass + px * px + py * py)
        return (mt * np.cosh(y), px, py, mt * np.sinh(y))

    def tau(self, evt, p, charge, mode):
        """A tau (four-momentum ``p``) decaying collinearly to a muon, electron or tau_h."""
        rng, n = self.rng, len(evt)
        pt, eta, phi = _pt_eta_phi(p)
        if not self.is_data:
            pdg = np.where(charge < 0, 15, -15)
            self.add_gen(evt, (pt, eta, phi), M_TAU, pdg, 2, vis=(eta, phi))
        if mode == HADRON:
            dm = _DECAY_MODES[choose(rng, n, _DECAY_MODE_P)]
            m_vis = _visible_mass(rng, dm)
            r = (m_vis / M_TAU) ** 2
            z = r + (1.0 - r) * rng.random(n)
        else:
            z = np.maximum(_leptonic_fraction(rng, n), 1e-3)
        self.invisible(evt, tuple(c * (1.0 - z) for c in p))
        if mode == HADRON:
            vpt = pt * z
            self.taus.add(
                evt=evt, pt=vpt, eta=eta, phi=phi, mass=m_vis, charge=charge, dm=dm, origin=GENUINE
            )
            self.jet(evt, vpt, eta, phi, TAU_JET, fakes=False)
        else:
            # collinear: exactly the tau's direction, so that the tool's matching ties
            # between the tau's visible part and the lepton, and takes the tau (listed first)
            self.lepton(evt, (pt * z, eta, phi), charge, mode, FROM_TAU)

    def tau_pair(self, evt, parent, mass, modes):
        """parent -> tau tau; ``modes``: {(mode 1, mode 2): probability}."""
        rng, n = self.rng, len(evt)
        t1, t2 = decay2(rng, parent, mass, M_TAU, M_TAU)
        charge = np.where(rng.random(n) < 0.5, -1, 1).astype(np.int32)
        pairs = list(modes)
        which = choose(rng, n, list(modes.values()))
        swap = rng.random(n) < 0.5  # which tau gets which decay
        first = tuple(np.where(swap, c2, c1) for c1, c2 in zip(t1, t2, strict=True))
        second = tuple(np.where(swap, c1, c2) for c1, c2 in zip(t1, t2, strict=True))
        charge = np.where(swap, -charge, charge)
        for i, (m1, m2) in enumerate(pairs):
            sel = np.flatnonzero(which == i)
            self.tau(evt[sel], _take(first, sel), charge[sel], m1)
            self.tau(evt[sel], _take(second, sel), -charge[sel], m2)

    def w_decay(self, evt, w, mw, charge, probs):
        """W -> (mu nu, e nu, tau nu, q q'), ``probs`` in that order."""
        rng, n = self.rng, len(evt)
        mode = choose(rng, n, probs)
        f1, f2 = decay2(rng, w, mw, 0.0, 0.0)
        for code, flavour in ((0, MUON), (1, ELECTRON)):
            sel = np.flatnonzero(mode == code)
            self.lepton(evt[sel], _pt_eta_phi(_take(f1, sel)), charge[sel], flavour, PROMPT)
            self.invisible(evt[sel], _take(f2, sel))
        sel = np.flatnonzero(mode == 2)
        taus = _take(f1, sel)
        e, px, py, pz = taus  # give the tau its mass
        p = np.sqrt(px * px + py * py + pz * pz)
        k = np.sqrt(np.maximum(e * e - M_TAU**2, 1e-6)) / np.maximum(p, 1e-9)
        taus = (e, px * k, py * k, pz * k)
        self.invisible(evt[sel], _take(f2, sel))
        tau_mode = choose(rng, len(sel), (0.174, 0.178, 0.648))
        for code in (MUON, ELECTRON, HADRON):
            s = np.flatnonzero(tau_mode == code)
            self.tau(evt[sel][s], _take(taus, s), charge[sel][s], code)
        sel = np.flatnonzero(mode == 3)
        for q in (f1, f2):
            pt, eta, phi = _pt_eta_phi(_take(q, sel))
            flavour = np.where(rng.random(len(sel)) < 0.3, CHARM, LIGHT).astype(np.int32)
            self.jet(evt[sel], pt, eta, phi, flavour)

    # -- detector ------------------------------------------------------------
    def finish(self) -> dict:
        n = self.n
        jets = self.jets.cat()
        self._non_prompt_muons(jets)
        muons = self._muons()
        electrons = self._electrons()
        taus = self._taus(muons, electrons, jets)
        jets = self._calo_jets(jets)
        scalars = self._event(muons, taus, jets)
        out = {"scalars": scalars, "Muon": muons, "Electron": electrons, "Tau": taus, "Jet": jets}
        if not self.is_data:
            out["GenPart"] = self._gen_matching(muons, electrons, taus, jets)
        for name in ("Muon", "Electron", "Tau", "Jet", "GenPart"):
            if name in out:
                out[name] = _finish_collection(out[name], n, COLLECTIONS[name])
        return out

    def _non_prompt_muons(self, jets):
        """Muons from heavy-flavour (and a few light) jets: soft, displaced, not isolated."""
        rng = self.rng
        p = np.select([jets["flavour"] == BOTTOM, jets["flavour"] == CHARM], [0.12, 0.06], 0.004)
        sel = np.flatnonzero(rng.random(len(p)) < p)
        z = rng.beta(2.0, 5.0, len(sel))
        eta = jets["eta"][sel] + rng.normal(0.0, 0.05, len(sel))
        phi = jets["phi"][sel] + rng.normal(0.0, 0.05, len(sel))
        charge = np.where(rng.random(len(sel)) < 0.5, -1, 1).astype(np.int32)
        self.lepton(jets["evt"][sel], (jets["pt"][sel] * z, eta, phi), charge, MUON, NONPROMPT)
        jets["pt"][sel] *= 1.0 - z

    def _muons(self):
        rng = self.rng
        t = self.muons.cat()
        m = len(t["evt"])
        pt = t["pt"] * (1.0 + (0.01 + 0.0002 * t["pt"]) * rng.standard_normal(m))
        eta = t["eta"] + rng.normal(0.0, 0.002, m)
        phi = _wrap(t["phi"] + rng.normal(0.0, 0.002, m))
        origin = t["origin"]
        prompt = (origin == PROMPT) | (origin == FROM_TAU)
        npv = self.npv[t["evt"]]
        iso = np.select(
            [prompt, origin == FROM_QCD],
            [rng.exponential(0.02 + 0.001 * npv), rng.exponential(0.09, m)],
            0.04 + rng.exponential(0.45, m),
        )
        tight = rng.random(m) < np.where(prompt | (origin == FROM_QCD), 0.96, 0.75)
        not_pf = rng.random(m) < 0.02  # no valid PF isolation: the tool writes -999
        iso = np.where(not_pf, -999.0, iso)
        tight &= ~not_pf
        displaced = np.where(prompt, 0.002, 0.04)
        keep = (np.abs(eta) < 2.4) & (pt > 3.0)
        cols = {
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": np.full(m, M_MUON),
            "charge": t["charge"],
            "pfRelIso03_all": iso,
            "pfRelIso04_all": np.where(not_pf, -999.0, iso * rng.uniform(1.1, 1.6, m)),
            "tightId": tight,
            "softId": rng.random(m) < 0.98,
            "dxy": rng.normal(0.0, 1.0, m) * displaced,
            "dxyErr": np.abs(rng.normal(0.002, 0.0005, m)),
            "dz": rng.normal(0.0, 2.5, m) * displaced,
            "dzErr": np.abs(rng.normal(0.004, 0.001, m)),
            "origin": origin,
        }
        return _select(t["evt"], cols, keep)

    def _electrons(self):
        rng = self.rng
        t = self.electrons.cat()
        m = len(t["evt"])
        pt = t["pt"] * (1.0 + 0.03 * rng.standard_normal(m))
        prompt = t["origin"] != NONPROMPT
        iso = np.where(prompt, rng.exponential(0.03, m), 0.05 + rng.exponential(0.4, m))
        keep = (np.abs(t["eta"]) < 2.5) & (pt > 5.0)
        cols = {
            "pt": pt,
            "eta": t["eta"] + rng.normal(0.0, 0.003, m),
            "phi": _wrap(t["phi"] + rng.normal(0.0, 0.003, m)),
            "mass": np.full(m, M_ELECTRON),
            "charge": t["charge"],
            "pfRelIso03_all": iso,
            "dxy": rng.normal(0.0, 0.003, m),
            "dxyErr": np.abs(rng.normal(0.003, 0.001, m)),
            "dz": rng.normal(0.0, 0.008, m),
            "dzErr": np.abs(rng.normal(0.006, 0.001, m)),
            "cutBasedId": rng.random(m) < np.where(prompt, 0.9, 0.3),
            "pfId": rng.random(m) < np.where(prompt, 0.95, 0.6),
            "origin": t["origin"],
        }
        return _select(t["evt"], cols, keep)

    def _taus(self, muons, electrons, jets):
        """Tau candidates: genuine tau_h, and fakes from muons, electrons and jets."""
        rng = self.rng
        t = self.taus.cat()
        m = len(t["evt"])
        reco = rng.random(m) < 0.85
        # charge mis-measurement: 1% of one-prong, 5% of three-prong taus
        flip = rng.random(m) < np.where(t["dm"] == 10, 0.05, 0.01)
        parts = [
            {
                "evt": t["evt"],
                "pt": t["pt"] * rng.normal(0.97, 0.06, m),
                "eta": t["eta"],
                "phi": t["phi"],
                "mass": np.where(t["dm"] == 0, M_PION, t["mass"]),
                "charge": np.where(flip, -t["charge"], t["charge"]),
                "dm": t["dm"],
                "origin": t["origin"],
                "keep": reco,
            }
        ]
        for leptons, origin, prob in ((muons, FROM_MUON, 0.4), (electrons, FROM_ELECTRON, 0.6)):
            src = (leptons["origin"] == PROMPT) | (leptons["origin"] == FROM_TAU)
            k = len(leptons["evt"])
            dm = np.where((origin == FROM_ELECTRON) & (rng.random(k) < 0.4), 1, 0).astype(np.int32)
            parts.append(
                {
                    "evt": leptons["evt"],
                    "pt": leptons["pt"] * rng.normal(1.0, 0.02, k),
                    "eta": leptons["eta"],
                    "phi": leptons["phi"],
                    "mass": np.where(dm == 0, M_PION, 0.3 + 0.3 * rng.random(k)),
                    "charge": leptons["charge"],
                    "dm": dm,
                    "origin": np.full(k, origin),
                    "keep": src & (rng.random(k) < prob),
                }
            )
        # Jets: each may seed a candidate; TAU_LIKE jets (QCD) always do, and look genuine.
        k = len(jets["evt"])
        like = jets["flavour"] == TAU_LIKE_JET
        seeded = jets["fakes"] & (rng.random(k) < 0.3) | like
        dm = np.array([0, 1, 2, 10, 5, 6], np.int32)[
            choose(rng, k, (0.30, 0.30, 0.10, 0.20, 0.05, 0.05))
        ]
        dm = np.where(like, _DECAY_MODES[choose(rng, k, _DECAY_MODE_P)], dm)
        charge = np.where(rng.random(k) < 0.5, -1, 1).astype(np.int32)
        charge = np.where(np.isin(dm, (5, 6)) & (rng.random(k) < 0.5), 0, charge)
        parts.append(
            {
                "evt": jets["evt"],
                "pt": jets["pt"] * rng.uniform(0.55, 0.95, k),
                "eta": jets["eta"],
                "phi": jets["phi"],
                "mass": np.where(dm == 0, M_PION, _visible_mass(rng, dm)),
                "charge": np.where(like, jets["charge"], charge),
                "dm": dm,
                "origin": np.where(like, TAU_LIKE, JET).astype(np.int32),
                "keep": seeded,
            }
        )
        t = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
        keep = t.pop("keep") & (t["pt"] > 15.0) & (np.abs(t["eta"]) < 2.5)
        t = {c: v[keep] for c, v in t.items()}
        m = len(t["evt"])
        origin = t["origin"]
        tau_like = (
            (origin == GENUINE)
            | (origin == TAU_LIKE)
            | (origin == FROM_MUON)
            | (origin == FROM_ELECTRON)
        )
        npv = self.npv[t["evt"]]
        rel_iso = np.where(
            tau_like, rng.exponential(0.02 + 0.001 * npv), rng.exponential(0.7, m)
        ) * np.where(origin == TAU_LIKE, 1.5, 1.0)
        raw = rel_iso * t["pt"] * rng.uniform(0.7, 1.0, m)
        u_e, u_mu = rng.random(m), rng.random(m)
        # Pass probabilities (Loose, Medium, Tight) of the anti-lepton discriminators.
        anti_e = (
            np.select([origin == FROM_ELECTRON], [0.2], 0.99),
            np.select([origin == FROM_ELECTRON], [0.05], 0.97),
            np.select([origin == FROM_ELECTRON], [0.01], 0.93),
        )
        anti_mu = (
            np.select([origin == FROM_MUON], [0.3], 0.995),
            np.select([origin == FROM_MUON], [0.1], 0.99),
            np.select([origin == FROM_MUON], [0.07], 0.985),
        )
        eta = t["eta"] + rng.normal(0.0, 0.01, m)
        cols = {
            "pt": t["pt"],
            "eta": eta,
            "phi": _wrap(t["phi"] + rng.normal(0.0, 0.01, m)),
            "mass": t["mass"],
            "charge": t["charge"],
            "decayMode": t["dm"],
            "relIso_all": rel_iso,
            "idDecayMode": np.isin(t["dm"], _DECAY_MODES),
            "idIsoRaw": raw,
            "idIsoVLoose": raw < 3.0,
            "idIsoLoose": raw < 2.0,
            "idIsoMedium": raw < 1.0,
            "idIsoTight": raw < 0.8,
            "idAntiEleLoose": u_e < anti_e[0],
            "idAntiEleMedium": u_e < anti_e[1],
            "idAntiEleTight": u_e < anti_e[2],
            "idAntiMuLoose": u_mu < anti_mu[0],
            "idAntiMuMedium": u_mu < anti_mu[1],
            "idAntiMuTight": u_mu < anti_mu[2],
        }
        return _select(t["evt"], cols, np.ones(m, bool))

    def _calo_jets(self, t):
        """Calorimeter jets (the tool keeps pT > 15): response, resolution, mass, b-tag."""
        rng, n = self.rng, self.n
        pu = rng.poisson(0.02 * self.npv)
        pu_evt = np.repeat(np.arange(n), pu)
        k = len(pu_evt)
        evt = np.concatenate([t["evt"], pu_evt])
        pt = np.concatenate([t["pt"], 12.0 + rng.exponential(6.0, k)])
        eta = np.concatenate([t["eta"], rng.uniform(-4.7, 4.7, k)])
        phi = np.concatenate([t["phi"], rng.uniform(-np.pi, np.pi, k)])
        flavour = np.concatenate([t["flavour"], np.zeros(k, np.int32)])
        is_pu = np.concatenate([np.zeros(len(t["evt"]), bool), np.ones(k, bool)])
        m = len(evt)
        resolution = 0.08 + 1.0 / np.sqrt(np.maximum(pt, 1.0))
        reco = pt * np.maximum(0.92 + resolution * rng.standard_normal(m), 0.05)
        self._mismeasured(evt, pt - reco, phi)
        mass = reco * np.clip(rng.normal(0.12, 0.04, m), 0.02, 0.4)
        b, c = flavour == BOTTOM, flavour == CHARM
        btag = np.select(
            [b, c],
            [1.0 - 0.6 * rng.beta(1.0, 4.0, m), rng.beta(2.0, 3.0, m)],
            0.8 * rng.beta(1.0, 8.0, m),
        )
        btag = np.where(np.abs(eta) > 2.4, -1.0, btag)
        puid = rng.random(m) < np.where(is_pu, 0.8, 0.97)
        keep = (reco > 15.0) & (np.abs(eta) < 5.0)
        cols = {"pt": reco, "eta": eta, "phi": _wrap(phi), "mass": mass, "puId": puid, "btag": btag}
        return _select(evt, cols, keep)

    def _mismeasured(self, evt, dpt, phi):
        self.inv_x += np.bincount(evt, weights=dpt * np.cos(phi), minlength=self.n)
        self.inv_y += np.bincount(evt, weights=dpt * np.sin(phi), minlength=self.n)

    def _event(self, muons, taus, jets):
        rng, n = self.rng, self.n
        sigma = 6.0 + 0.35 * self.npv
        mx = self.inv_x + sigma * rng.standard_normal(n)
        my = self.inv_y + sigma * rng.standard_normal(n)
        met = np.hypot(mx, my)
        sumet = 150.0 + 12.0 * self.npv * rng.uniform(0.5, 1.5, n)
        sumet += np.bincount(jets["evt"], weights=jets["pt"], minlength=n)
        # Trigger: HLT_IsoMu17_eta2p1_LooseIsoPFTau20 from an online-like muon and tau leg.
        mu_pt = muons["pt"] * (1.0 + 0.01 * rng.standard_normal(len(muons["pt"])))
        iso = muons["pfRelIso03_all"]
        mu_iso = (iso > -1.0) & (iso < 0.15) & (np.abs(muons["eta"]) < 2.1)
        leg_mu17 = _any(muons["evt"], mu_iso & (mu_pt > 17.0), n)
        leg_mu24 = _any(muons["evt"], mu_iso & (mu_pt > 24.0), n)
        leg_mu24_wide = _any(muons["evt"], (iso > -1.0) & (iso < 0.15) & (mu_pt > 24.0), n)
        tau_pt = taus["pt"] * (1.0 + 0.05 * rng.standard_normal(len(taus["pt"])))
        leg_tau = _any(
            taus["evt"],
            (tau_pt > 20.0) & (taus["relIso_all"] < 0.3) & (np.abs(taus["eta"]) < 2.3),
            n,
        )
        u = rng.random((3, n))
        return {
            "HLT_IsoMu24_eta2p1": (leg_mu24 & (u[0] < 0.92)) | (u[0] > 0.999),
            "HLT_IsoMu24": (leg_mu24_wide & (u[1] < 0.92)) | (u[1] > 0.999),
            "HLT_IsoMu17_eta2p1_LooseIsoPFTau20": (leg_mu17 & leg_tau & (u[2] < 0.9))
            | (u[2] > 0.998),
            "PV_npvs": self.npv,
            "PV_x": rng.normal(0.07, 0.01, n),
            "PV_y": rng.normal(0.06, 0.01, n),
            "PV_z": rng.normal(0.0, 5.0, n),
            "MET_pt": met,
            "MET_phi": np.arctan2(my, mx),
            "MET_sumet": sumet,
            "MET_significance": met * met / (2.0 * sigma * sigma),
            "MET_CovXX": sigma * sigma,
            "MET_CovXY": 0.1 * sigma * sigma * rng.standard_normal(n),
            "MET_CovYY": sigma * sigma * rng.uniform(0.9, 1.1, n),
        }

    def _gen_matching(self, muons, electrons, taus, jets):
        """``Muon/Electron/Tau_genPartIdx`` and ``_jetIdx`` as the tool fills them (simulation
        only), and the ``GenPart`` collection: one entry per matched object."""
        n = self.n
        gen = self.gen.cat()
        # The tool's list of interesting particles: status-2 taus first (mothers precede their
        # daughters in genParticles), then status-1 leptons, each in the order made.
        order = np.lexsort((np.arange(len(gen["evt"])), gen["status"] != 2, gen["evt"]))
        gen = {c: v[order] for c, v in gen.items()}
        gcounts = np.bincount(gen["evt"], minlength=n)
        jcounts = np.bincount(jets["evt"], minlength=n)
        parts, offset = [], np.zeros(n, np.int64)
        for coll in (muons, electrons, taus):
            slot = _nearest(
                coll["evt"],
                coll["eta"],
                coll["phi"],
                gen["evt"],
                gen["veta"],
                gen["vphi"],
                gcounts,
                n,
            )
            within = _position(coll["evt"], n)
            matched = slot >= 0
            coll["genPartIdx"] = np.where(matched, offset[coll["evt"]] + within, -1)
            offset += np.bincount(coll["evt"][matched], minlength=n)
            gstart = np.concatenate([[0], np.cumsum(gcounts)])[coll["evt"]]
            g = np.where(matched, gstart + slot, 0)[matched]
            parts.append((coll["evt"][matched], coll["genPartIdx"][matched], g))
            coll["jetIdx"] = _nearest(
                coll["evt"],
                coll["eta"],
                coll["phi"],
                jets["evt"],
                jets["eta"],
                jets["phi"],
                jcounts,
                n,
            )
        evt = np.concatenate([p[0] for p in parts])
        pos = np.concatenate([p[1] for p in parts])
        g = np.concatenate([p[2] for p in parts])
        order = np.lexsort((pos, evt))
        g = g[order]
        cols = {
            "pt": gen["pt"][g],
            "eta": gen["eta"][g],
            "phi": gen["phi"][g],
            "mass": gen["mass"][g],
            "pdgId": gen["pdg"][g],
            "status": gen["status"][g],
        }
        return {"evt": evt[order], **cols}


def _any(evt, mask, n) -> np.ndarray:
    return np.bincount(evt[mask], minlength=n) > 0


def _position(evt, n) -> np.ndarray:
    """Position of each object within its event (objects sorted by event)."""
    counts = np.bincount(evt, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    return np.arange(len(evt)) - starts[evt]


def _nearest(evt, eta, phi, tevt, teta, tphi, tcounts, n) -> np.ndarray:
    """Index (within the event) of the target nearest in Delta R, the first on a tie; -1
    where the event has none. Targets sorted by event."""
    width = int(tcounts.max()) if len(tcounts) and tcounts.max() > 0 else 0
    out = np.full(len(evt), -1, dtype=np.int64)
    if width == 0 or len(evt) == 0:
        return out
    pad_eta = np.full((n, width), np.nan)
    pad_phi = np.full((n, width), np.nan)
    pos = _position(tevt, n)
    pad_eta[tevt, pos], pad_phi[tevt, pos] = teta, tphi
    deta = eta[:, None] - pad_eta[evt]
    dphi = np.abs(phi[:, None] - pad_phi[evt])  # both in [-pi, pi]: |difference| < 2 pi
    dphi = np.where(dphi > np.pi, TWO_PI - dphi, dphi)
    dr2 = deta * deta + dphi * dphi
    dr2 = np.where(np.isnan(dr2), np.inf, dr2)
    best = np.argmin(dr2, axis=1)
    has = tcounts[evt] > 0
    out[has] = best[has]
    return out


def _select(evt, cols, keep):
    """The kept objects, sorted by event and decreasing pT (the tool's collections are)."""
    keep = np.flatnonzero(keep)
    evt = evt[keep]
    cols = {c: v[keep] for c, v in cols.items()}
    order = np.lexsort((-cols["pt"], evt))
    return {"evt": evt[order], **{c: v[order] for c, v in cols.items()}}


def _finish_collection(coll, n, fields) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    counts = np.bincount(coll["evt"], minlength=n).astype(np.uint32)
    out = {}
    for field, dtype in fields.items():
        if field in ("genPartIdx", "jetIdx") and field not in coll:
            out[field] = np.full(len(coll["evt"]), -1, np.int32)
        else:
            out[field] = np.asarray(coll[field]).astype(dtype)
    return counts, out


# ---------------------------------------------------------------------------
# The processes


def _gen_dy(b: Builder, evt):
    rng, n = b.rng, len(evt)
    rx, ry = b.isr(evt, 0.7)
    mass = _breit_wigner(rng, n, M_Z, W_Z, 50.0, 150.0)
    z = b.boson(evt, mass, rx, ry, 1.7)
    channel = choose(rng, n, (0.7, 0.2, 0.1))
    sel = np.flatnonzero(channel == 0)
    b.tau_pair(
        evt[sel],
        _take(z, sel),
        mass[sel],
        {
            (MUON, HADRON): 0.80,
            (MUON, MUON): 0.05,
            (ELECTRON, HADRON): 0.05,
            (HADRON, HADRON): 0.05,
            (ELECTRON, MUON): 0.05,
        },
    )
    for code, flavour, m in ((1, MUON, M_MUON), (2, ELECTRON, M_ELECTRON)):
        sel = np.flatnonzero(channel == code)
        l1, l2 = decay2(rng, _take(z, sel), mass[sel], m, m)
        q = np.where(rng.random(len(sel)) < 0.5, -1, 1).astype(np.int32)
        b.lepton(evt[sel], _pt_eta_phi(l1), q, flavour, PROMPT)
        b.lepton(evt[sel], _pt_eta_phi(l2), -q, flavour, PROMPT)


def _gen_w(b: Builder, evt, njets: int):
    rng, n = b.rng, len(evt)
    pt = _power_law(rng, n * njets, 20.0, 2.0)
    phi = rng.uniform(-np.pi, np.pi, n * njets)
    jet_evt = np.repeat(evt, njets)
    owner = np.repeat(np.arange(n), njets)
    flavour = np.array([LIGHT, CHARM, BOTTOM], np.int32)[choose(rng, n * njets, (0.85, 0.1, 0.05))]
    charge = np.where(rng.random(n) < 0.6, 1, -1).astype(np.int32)
    # The filtered sample is rich in jets that look like an isolated tau (the leading one
    # here); its charge is opposite to the muon's more often than not, as for quark jets.
    like = np.zeros(n * njets, bool)
    like[::njets] = rng.random(n) < 0.8
    jet_charge = np.repeat(np.where(rng.random(n) < 0.6, -charge, charge), njets)
    flavour = np.where(like, TAU_LIKE_JET, flavour).astype(np.int32)
    b.jet(
        jet_evt, pt, rng.normal(0.0, 2.0, n * njets), phi, flavour, fakes=~like, charge=jet_charge
    )
    rx = np.bincount(owner, weights=pt * np.cos(phi), minlength=n)
    ry = np.bincount(owner, weights=pt * np.sin(phi), minlength=n)
    ix, iy = b.isr(evt, 0.2)
    mass = _breit_wigner(rng, n, M_W, W_W, 50.0, 110.0)
    w = b.boson(evt, mass, rx + ix, ry + iy, 1.9)
    b.w_decay(evt, w, mass, charge, (0.7, 0.1, 0.2, 0.0))


def _gen_tt(b: Builder, evt):
    rng, n = b.rng, len(evt)
    rx, ry = b.isr(evt, 0.8)
    m1 = _breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    m2 = _breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    mtt = m1 + m2 + rng.gamma(2.0, 60.0, n)
    system = b.boson(evt, mtt, rx, ry, 1.0)
    t1, t2 = decay2(rng, system, mtt, m1, m2)
    charge = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int32)
    for top, mt, q, probs in (
        (t1, m1, charge, (0.6, 0.0, 0.4, 0.0)),
        (t2, m2, -charge, (0.1, 0.1, 0.4, 0.4)),
    ):
        mw = _breit_wigner(rng, n, M_W, W_W, 65.0, 95.0)
        w, bq = decay2(rng, top, mt, mw, M_B)
        pt, eta, phi = _pt_eta_phi(bq)
        b.jet(evt, pt, eta, phi, BOTTOM)
        b.w_decay(evt, w, mw, q, probs)


def _gen_higgs(b: Builder, evt, vbf: bool):
    rng, n = b.rng, len(evt)
    if vbf:
        pt = 25.0 + rng.gamma(2.0, 22.0, 2 * n)
        aeta = np.clip(rng.normal(2.7, 0.9, 2 * n), 0.3, 4.9)
        sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        eta = aeta * np.stack([sign, -sign], axis=1).reshape(-1)
        phi = rng.uniform(-np.pi, np.pi, 2 * n)
        owner = np.repeat(np.arange(n), 2)
        b.jet(evt[owner], pt, eta, phi, LIGHT)
        rx = np.bincount(owner, weights=pt * np.cos(phi), minlength=n)
        ry = np.bincount(owner, weights=pt * np.sin(phi), minlength=n)
        ix, iy = b.isr(evt, 0.3)
        rx, ry = rx + ix, ry + iy
    else:
        rx, ry = b.isr(evt, 1.0, index=1.8)
    mass = np.full(n, M_H)
    h = b.boson(evt, mass, rx, ry, 1.3 if vbf else 1.7)
    b.tau_pair(
        evt,
        h,
        mass,
        {
            (MUON, HADRON): 0.85,
            (MUON, MUON): 0.04,
            (ELECTRON, HADRON): 0.05,
            (HADRON, HADRON): 0.04,
            (ELECTRON, MUON): 0.02,
        },
    )


QCD_OS_FRACTION = 0.80 / 1.80  # opposite-sign : same-sign = 0.80, plot.py's QCD factor


def _gen_qcd(b: Builder, evt):
    """Multijet: a muon from a heavy-flavour jet and a jet faking an isolated tau."""
    rng, n = b.rng, len(evt)
    mu_pt = 17.0 + rng.exponential(9.0, n)
    z = rng.uniform(0.55, 0.95, n)
    jet1 = mu_pt / z
    eta1, phi1 = rng.normal(0.0, 1.6, n), rng.uniform(-np.pi, np.pi, n)
    jet2 = np.maximum(jet1 * rng.normal(1.0, 0.25, n), 20.0)
    eta2, phi2 = rng.normal(0.0, 1.6, n), _wrap(phi1 + np.pi + rng.normal(0.0, 0.3, n))
    charge = np.where(rng.random(n) < 0.5, -1, 1).astype(np.int32)
    tau_charge = np.where(rng.random(n) < QCD_OS_FRACTION, -charge, charge)
    mu = (mu_pt, eta1 + rng.normal(0.0, 0.03, n), _wrap(phi1 + rng.normal(0.0, 0.03, n)))
    b.lepton(evt, mu, charge, MUON, FROM_QCD)
    flavour = np.where(rng.random(n) < 0.6, BOTTOM, CHARM).astype(np.int32)
    b.jet(evt, jet1 * (1.0 - z), eta1, phi1, flavour, fakes=False)
    b.jet(evt, jet2, eta2, phi2, TAU_LIKE_JET, fakes=False, charge=tau_charge)
    b.isr(evt, 0.5)


PROCESSES = {
    "GluGluToHToTauTau": lambda b, evt: _gen_higgs(b, evt, vbf=False),
    "VBF_HToTauTau": lambda b, evt: _gen_higgs(b, evt, vbf=True),
    "DYJetsToLL": _gen_dy,
    "TTbar": _gen_tt,
    "W1JetsToLNu": lambda b, evt: _gen_w(b, evt, 1),
    "W2JetsToLNu": lambda b, evt: _gen_w(b, evt, 2),
    "W3JetsToLNu": lambda b, evt: _gen_w(b, evt, 3),
    "QCD": _gen_qcd,
}


def filtered_events(builder: Builder, process: str, events: np.ndarray) -> None:
    """Fill ``events`` of ``builder`` with events of ``process`` that pass the generator-level
    filter: candidates are made in batches from the builder's stream until enough pass."""
    need, filled = len(events), 0
    for _ in range(1000):
        if filled >= need:
            return
        batch = max(4 * (need - filled), 64)
        candidates = Builder(batch, builder.rng, builder.is_data)
        PROCESSES[process](candidates, np.arange(batch))
        passed = np.flatnonzero(candidates.filtered())[: need - filled]
        new_index = np.full(batch, -1, dtype=np.int64)
        new_index[passed] = events[filled : filled + len(passed)]
        builder.extend(candidates, new_index)
        filled += len(passed)
    raise RuntimeError(f"the generator-level filter of {process} passes (almost) no events")
