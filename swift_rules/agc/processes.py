"""The physics processes of the AGC generator's samples, and the ttbar variations.

A fast, vectorised toy of each process of the AGC fileset, built on the
:class:`~swift_rules.agc.events.EventBuilder`:

* ttbar: top quarks with a falling pT spectrum and a rapidity spread, decayed
  ``t -> b W`` and ``W -> q q' / l nu / tau nu`` by two-body decays in the rest
  frames followed by boosts, so that the hadronic top gives a peak near 173 GeV
  in the three-jet mass; ISR jets (Poisson multiplicity, power-law pT) that the
  ttbar system recoils against;
* single top: s-channel (t + b), t-channel (t + forward light jet, often with
  a soft second b), tW (t + W);
* W+jets: ``W -> l nu`` plus a steeply falling number of mostly light jets
  (few c, fewer b), so that few events reach four jets and fewer still pass a
  b-tag requirement.

:data:`VARIATIONS`: the ttbar variations differ from nominal by a few percent:
``scaleup`` / ``scaledown`` have more / fewer ISR and FSR jets and a slightly harder /
softer spectrum, ``ME_var`` a harder top-quark pT spectrum, ``PS_var`` a lower jet
energy response, a worse resolution and a slightly lower b-tag efficiency. Any
variation goes with any process (the AGC fileset has them for ttbar only).
"""

from __future__ import annotations

import numpy as np

from swift_rules.agc.events import W_LEPTONIC, EventBuilder, Knobs
from swift_rules.agc.kinematics import (
    M_B,
    M_TOP,
    M_W,
    TWO_PI,
    W_TOP,
    W_W,
    breit_wigner,
    choose,
    p4_from_transverse,
    power_law,
)

# The knobs of each variation (any process); the AGC fileset has them for ttbar only.
VARIATIONS: dict[str, Knobs] = {
    "nominal": Knobs(),
    "scaleup": Knobs(isr_mean=1.08, isr_hardness=1.03, fsr_prob=0.14, top_pt_scale=1.01),
    "scaledown": Knobs(isr_mean=0.92, isr_hardness=0.97, fsr_prob=0.10, top_pt_scale=0.99),
    "ME_var": Knobs(top_pt_scale=1.07, isr_mean=1.04),
    "PS_var": Knobs(jes=0.975, jer=1.12, fsr_prob=0.14, btag_eff=0.96),
}


def _tops_pair(b: EventBuilder, pt_theta):
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


def _gen_ttbar(b: EventBuilder):
    rng, n = b.rng, b.n
    evt = np.arange(n)
    (p1x, p1y, y1), (p2x, p2y, y2) = _tops_pair(b, 60.0)
    m1 = breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    m2 = breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    plus = np.ones(n, np.int32)
    b.decay_top(evt, p4_from_transverse(p1x, p1y, y1, m1), m1, plus)
    b.decay_top(evt, p4_from_transverse(p2x, p2y, y2, m2), m2, -plus)


def _single_top(b: EventBuilder, pt_theta, top_frac):
    rng, n, k = b.rng, b.n, b.knobs
    evt = np.arange(n)
    pt = rng.gamma(2.0, pt_theta * k.top_pt_scale, n)
    phi = rng.uniform(0.0, TWO_PI, n)
    y = rng.normal(0.0, 1.1, n)
    mt = breit_wigner(rng, n, M_TOP, W_TOP, 160.0, 185.0)
    charge = np.where(rng.random(n) < top_frac, 1, -1).astype(np.int32)
    return evt, pt * np.cos(phi), pt * np.sin(phi), y, mt, charge


def _gen_single_top_s(b: EventBuilder):
    rng, n = b.rng, b.n
    rx, ry = b.isr(0.7)
    evt, px, py, y, mt, charge = _single_top(b, 32.0, 0.65)
    b.decay_top(evt, p4_from_transverse(px, py, y, mt), mt, charge, W_LEPTONIC)
    yb = y + rng.normal(0.0, 1.2, n)
    b.add_jets(evt, p4_from_transverse(-px - rx, -py - ry, yb, np.full(n, M_B)), 5)


def _gen_single_top_t(b: EventBuilder):
    rng, n = b.rng, b.n
    rx, ry = b.isr(0.6)
    evt, px, py, y, mt, charge = _single_top(b, 30.0, 0.62)
    b.decay_top(evt, p4_from_transverse(px, py, y, mt), mt, charge)
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
    b.add_jets(evt, p4_from_transverse(qx, qy, eta_q, np.zeros(n)), 0)


def _gen_single_top_tw(b: EventBuilder):
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
    b.decay_top(evt, p4_from_transverse(px, py, y, mt), mt, charge)
    mw = breit_wigner(rng, n, M_W, W_W, 65.0, 95.0)
    yw = y + rng.normal(0.0, 1.2, n)
    b.decay_w(evt, p4_from_transverse(-px - rx, -py - ry, yw, mw), mw, -charge)


def _gen_wjets(b: EventBuilder):
    rng, n, k = b.rng, b.n, b.knobs
    evt = np.arange(n)
    # Steeply falling jet multiplicity (Berends-like: each extra jet costs ~0.34).
    nj = rng.geometric(1.0 - 0.34 * min(k.isr_mean, 1.5), n) - 1
    jevt = np.repeat(evt, nj)
    m = len(jevt)
    # Jets in events with more jets are harder.
    jpt = power_law(rng, m, 20.0, 1.9) * k.isr_hardness * (1.0 + 0.12 * nj[jevt])
    jeta = rng.normal(0.0, 1.8, m)
    jphi = rng.uniform(0.0, TWO_PI, m)
    flav = np.array([0, 4, 5], dtype=np.int32)[choose(rng, m, (0.89, 0.08, 0.03))]
    # W + b bbar: in some multi-jet events the two first jets come from g -> b bbar.
    rank = np.arange(m) - np.repeat(np.cumsum(nj) - nj, nj)
    wbb = (rng.random(n) < 0.08)[jevt] & (nj[jevt] >= 2) & (rank < 2)
    flav = np.where(wbb, 5, flav).astype(np.int32)
    b.add_jets_pt_eta_phi(jevt, jpt, jeta, jphi, flav)
    rx = np.bincount(jevt, weights=jpt * np.cos(jphi), minlength=n)
    ry = np.bincount(jevt, weights=jpt * np.sin(jphi), minlength=n)
    wpt = rng.gamma(1.5, 6.0, n)
    wphi = rng.uniform(0.0, TWO_PI, n)
    mw = breit_wigner(rng, n, M_W, W_W, 50.0, 110.0)
    yw = rng.normal(0.0, 1.9, n)
    w = p4_from_transverse(wpt * np.cos(wphi) - rx, wpt * np.sin(wphi) - ry, yw, mw)
    charge = np.where(rng.random(n) < 0.58, 1, -1).astype(np.int32)
    b.decay_w(evt, w, mw, charge, W_LEPTONIC)


_PROCESSES = {
    "ttbar": _gen_ttbar,
    "single_top_s_chan": _gen_single_top_s,
    "single_top_t_chan": _gen_single_top_t,
    "single_top_tW": _gen_single_top_tw,
    "wjets": _gen_wjets,
}


def check_sample(process: str, variation: str) -> None:
    """Raise ValueError unless ``process`` and ``variation`` are known to the generator."""
    if process not in _PROCESSES:
        raise ValueError(f"unknown process {process!r}; known: {sorted(_PROCESSES)}")
    if variation not in VARIATIONS:
        raise ValueError(f"unknown variation {variation!r}; known: {sorted(VARIATIONS)}")


def simulate(process: str, variation: str, n: int, rng: np.random.Generator) -> dict:
    """The NanoAOD columns of ``n`` events of one sample, drawn from ``rng``.

    Returns :meth:`EventBuilder.finish`'s ``{"scalars": {name: array}, "Jet": (counts,
    {field: flat array}), "Electron": ..., "Muon": ...}``.
    """
    builder = EventBuilder(n, rng, VARIATIONS[variation])
    _PROCESSES[process](builder)
    return builder.finish()
