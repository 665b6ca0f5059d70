"""Per-event kernels of the AGC ttbar selection, compiled with numba.

The columnar code in ``ttbar.py`` hands these flat NanoAOD columns (contents plus
offsets, as awkward holds them). One pass per event does what would otherwise take
many jagged-array passes: object selection, b-tag counting, HT, and the trijet
combinatorics of the 4j2b region.
"""

from __future__ import annotations

import math

import numba
import numpy as np

NO_REGION, REGION_4J1B, REGION_4J2B = 0, 1, 2
N_LEADING = 4  # jets whose pT drives the b-tag weight variations


@numba.njit(cache=True, nogil=True)
def count_leptons(
    ele_offsets, ele_pt, ele_eta, ele_cut_based, ele_sip3d,
    mu_offsets, mu_pt, mu_eta, mu_tight_id, mu_sip3d, mu_iso,
):  # fmt: skip
    """Number of selected electrons plus muons per event."""
    n_events = len(ele_offsets) - 1
    n_leptons = np.zeros(n_events, dtype=np.int32)
    for e in range(n_events):
        n = 0
        for i in range(ele_offsets[e], ele_offsets[e + 1]):
            if (
                ele_pt[i] > 30.0
                and abs(ele_eta[i]) < 2.1
                and ele_cut_based[i] == 4
                and ele_sip3d[i] < 4.0
            ):
                n += 1
        for i in range(mu_offsets[e], mu_offsets[e + 1]):
            if (
                mu_pt[i] > 30.0
                and abs(mu_eta[i]) < 2.1
                and mu_tight_id[i]
                and mu_sip3d[i] < 4.0
                and mu_iso[i] < 0.15
            ):
                n += 1
        n_leptons[e] = n
    return n_leptons


@numba.njit(cache=True, nogil=True)
def select_regions(
    one_lepton, jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, jet_btag, jet_id,
    btag_threshold,
):  # fmt: skip
    """Region, observable and leading selected-jet pTs of every event.

    ``jet_pt`` is the (possibly varied) float64 pT. Returns ``region`` (0: none,
    1: 4j1b, 2: 4j2b), ``observable`` (HT in 4j1b, trijet mass in 4j2b) and
    ``leading_pt`` (pT of the four leading selected jets, for b-tag weights).
    The trijet is the one of largest pT among those with at least one b-tagged
    jet; ties keep the first in (i < j < k) order, as ``ak.argmax`` does.
    """
    n_events = len(jet_offsets) - 1
    region = np.zeros(n_events, dtype=np.int8)
    observable = np.zeros(n_events, dtype=np.float64)
    leading_pt = np.zeros((n_events, N_LEADING), dtype=np.float64)
    max_jets = 0
    for e in range(n_events):
        max_jets = max(max_jets, jet_offsets[e + 1] - jet_offsets[e])
    px = np.empty(max_jets)
    py = np.empty(max_jets)
    pz = np.empty(max_jets)
    en = np.empty(max_jets)
    tagged = np.empty(max_jets, dtype=np.bool_)
    for e in range(n_events):
        if not one_lepton[e]:
            continue
        n_good = 0
        n_b = 0
        ht = 0.0
        for i in range(jet_offsets[e], jet_offsets[e + 1]):
            pt = jet_pt[i]
            if not (pt > 30.0 and abs(jet_eta[i]) < 2.4 and jet_id[i] == 6):
                continue
            if n_good < N_LEADING:
                leading_pt[e, n_good] = pt
            b = jet_btag[i] > btag_threshold
            tagged[n_good] = b
            n_b += b
            ht += pt
            px[n_good] = pt * math.cos(jet_phi[i])
            py[n_good] = pt * math.sin(jet_phi[i])
            pz[n_good] = pt * math.sinh(jet_eta[i])
            m = jet_mass[i]
            en[n_good] = math.sqrt(px[n_good] ** 2 + py[n_good] ** 2 + pz[n_good] ** 2 + m * m)
            n_good += 1
        if n_good < 4 or n_b == 0:
            continue
        if n_b == 1:
            region[e] = REGION_4J1B
            observable[e] = ht
            continue
        region[e] = REGION_4J2B
        best_pt2 = -1.0
        best_mass = 0.0
        for i in range(n_good - 2):
            for j in range(i + 1, n_good - 1):
                for k in range(j + 1, n_good):
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
    return region, observable, leading_pt


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, nogil=True, inline="always")
def _splitmix64(x):
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def resolution_factors(run, luminosity_block, event, offsets, width):
    """Per-jet Normal(1, width) factors: ``smearing.resolution_factors`` in one pass.

    Same hash, same Box-Muller formula; agrees with the array version to a few ulp
    (libm versus numpy's vectorised log/cos), and is itself deterministic.
    """
    factors = np.empty(offsets[-1] - offsets[0], dtype=np.float64)
    scale = 1.0 / 9007199254740992.0  # 2**-53
    for e in range(len(offsets) - 1):
        key = _splitmix64(np.uint64(run[e]))
        key = _splitmix64(key ^ np.uint64(luminosity_block[e]))
        key = _splitmix64(key ^ np.uint64(event[e]))
        for i in range(offsets[e], offsets[e + 1]):
            local = np.uint64(i - offsets[e])
            bits1 = _splitmix64(key ^ _splitmix64(local))
            bits2 = _splitmix64(bits1)
            u1 = (float(bits1 >> np.uint64(11)) + 0.5) * scale
            u2 = (float(bits2 >> np.uint64(11)) + 0.5) * scale
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
            factors[i - offsets[0]] = 1.0 + width * z
    return factors
