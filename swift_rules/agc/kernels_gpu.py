"""CUDA kernel of the AGC ttbar selection (numba.cuda): one thread per event.

A line-by-line mirror of ``kernels.select_regions`` (keep the two in step: the parity
test compares them). Two differences: the jet-pT smearing factors come in precomputed,
one per jet (``smearing.resolution_factors`` on the device), and the selected jets'
four-momenta go to scratch arrays at the event's own jet slots (``offsets[e]`` on),
so that any number of jets fits without a fixed-size local array.

Works on CuPy arrays on a GPU, and on NumPy arrays under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set before numba.cuda is first imported).
"""

from __future__ import annotations

import math

from numba import cuda

from swift_rules.agc.kernels import N_LEADING, REGION_4J1B, REGION_4J2B

THREADS_PER_BLOCK = 128


@cuda.jit
def _select_regions(
    one_lepton, jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, jet_btag, jet_id,
    btag_threshold, pt_scale, smear, factors, px, py, pz, en, tagged,
    region, observable, leading_pt,
):  # fmt: skip
    e = cuda.grid(1)
    if e >= region.shape[0] or not one_lepton[e]:
        return
    first = jet_offsets[e]
    n_good = 0
    n_b = 0
    ht = 0.0
    for i in range(first, jet_offsets[e + 1]):
        if not (abs(jet_eta[i]) < 2.4 and jet_id[i] == 6):
            continue
        pt = jet_pt[i] * pt_scale
        if smear:
            pt *= factors[i]
        if not pt > 30.0:
            continue
        if n_good < N_LEADING:
            leading_pt[e, n_good] = pt
        s = first + n_good
        b = jet_btag[i] > btag_threshold
        tagged[s] = b
        if b:
            n_b += 1
        ht += pt
        eta, phi, m = float(jet_eta[i]), float(jet_phi[i]), float(jet_mass[i])
        px[s] = pt * math.cos(phi)
        py[s] = pt * math.sin(phi)
        pz[s] = pt * math.sinh(eta)
        en[s] = math.sqrt(px[s] ** 2 + py[s] ** 2 + pz[s] ** 2 + m * m)
        n_good += 1
    if n_good < 4 or n_b == 0:
        return
    if n_b == 1:
        region[e] = REGION_4J1B
        observable[e] = ht
        return
    region[e] = REGION_4J2B
    best_pt2 = -1.0
    best_mass = 0.0
    for i in range(first, first + n_good - 2):
        for j in range(i + 1, first + n_good - 1):
            for k in range(j + 1, first + n_good):
                if not (tagged[i] or tagged[j] or tagged[k]):
                    continue
                sx = px[i] + px[j] + px[k]
                sy = py[i] + py[j] + py[k]
                pt2 = sx * sx + sy * sy
                if pt2 > best_pt2:
                    sz = pz[i] + pz[j] + pz[k]
                    se = en[i] + en[j] + en[k]
                    best_pt2 = pt2
                    best_mass = math.sqrt(max(se * se - pt2 - sz * sz, 0.0))
    observable[e] = best_mass


def select_regions(
    xp, one_lepton, jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, jet_btag, jet_id,
    btag_threshold, pt_scale, factors=None,
):  # fmt: skip
    """Region, observable and leading selected-jet pTs of every event, on the device.

    Same meaning as ``kernels.select_regions``; ``factors`` are per-jet smearing
    factors (None: no smearing). ``xp`` allocates the outputs on the arrays' device.
    """
    n_events = len(jet_offsets) - 1
    region = xp.zeros(n_events, dtype=xp.int8)
    observable = xp.zeros(n_events, dtype=xp.float64)
    leading_pt = xp.zeros((n_events, N_LEADING), dtype=xp.float64)
    if n_events == 0:
        return region, observable, leading_pt
    n_jets = len(jet_pt)
    scratch = [xp.empty(max(n_jets, 1), dtype=xp.float64) for _ in range(4)]
    tagged = xp.empty(max(n_jets, 1), dtype=xp.bool_)
    smear = factors is not None
    if not smear:
        factors = xp.ones(1, dtype=xp.float64)
    blocks = (n_events + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    _select_regions[blocks, THREADS_PER_BLOCK](
        one_lepton, jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, jet_btag, jet_id,
        float(btag_threshold), float(pt_scale), smear, factors, *scratch, tagged,
        region, observable, leading_pt,
    )  # fmt: skip
    return region, observable, leading_pt
