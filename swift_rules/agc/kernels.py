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
    btag_threshold, pt_scale, smear_width, run, luminosity_block, event,
):  # fmt: skip
    """Region, observable and leading selected-jet pTs of every event, for one jet-pT
    variation: ``select_regions_varied`` with a single (pt_scale, smear_width)."""
    region, observable, leading_pt = select_regions_varied(
        one_lepton, jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, jet_btag, jet_id,
        btag_threshold, np.array([pt_scale]), np.array([smear_width]),
        run, luminosity_block, event,
    )  # fmt: skip
    return region[0], observable[0], leading_pt[0]


@numba.njit(cache=True, nogil=True)
def select_regions_varied(
    one_lepton, jet_offsets, jet_pt, jet_eta, jet_phi, jet_mass, jet_btag, jet_id,
    btag_threshold, pt_scales, smear_widths, run, luminosity_block, event,
):  # fmt: skip
    """Region, observable and leading selected-jet pTs of every event, for every jet-pT
    variation ``v`` at once (one pass over the events; a jet's trigonometry is computed
    once and shared by the variations, which changes no bit of the results).

    Jet pT is varied on the fly: multiplied by ``pt_scales[v]`` and, when
    ``smear_widths[v]`` > 0, by a Normal(1, width) factor seeded from the event's
    (run, luminosityBlock, event) and the jet's index (see ``resolution_factors``);
    only jets that can be selected draw one. Returns ``region[v, e]`` (0: none,
    1: 4j1b, 2: 4j2b), ``observable[v, e]`` (HT in 4j1b, trijet mass in 4j2b) and
    ``leading_pt[v, e]`` (pT of the four leading selected jets, for b-tag weights).
    The trijet is the one of largest pT among those with at least one b-tagged jet;
    ties keep the first in (i < j < k) order, as ``ak.argmax`` does.
    """
    n_events = len(jet_offsets) - 1
    n_var = len(pt_scales)
    region = np.zeros((n_var, n_events), dtype=np.int8)
    observable = np.zeros((n_var, n_events), dtype=np.float64)
    leading_pt = np.zeros((n_var, n_events, N_LEADING), dtype=np.float64)
    smeared = False
    for v in range(n_var):
        smeared = smeared or smear_widths[v] > 0.0
    max_jets = 0
    for e in range(n_events):
        max_jets = max(max_jets, jet_offsets[e + 1] - jet_offsets[e])
    # Per jet of the event: cos(phi), sin(phi), sinh(eta), once computed.
    cos_phi = np.empty(max_jets)
    sin_phi = np.empty(max_jets)
    sinh_eta = np.empty(max_jets)
    known = np.zeros(max_jets, dtype=np.bool_)
    px = np.empty(max_jets)
    py = np.empty(max_jets)
    pz = np.empty(max_jets)
    en = np.empty(max_jets)
    tagged = np.empty(max_jets, dtype=np.bool_)
    key = np.uint64(0)
    for e in range(n_events):
        if not one_lepton[e]:
            continue
        first = jet_offsets[e]
        known[: jet_offsets[e + 1] - first] = False
        if smeared:
            key = event_key(run[e], luminosity_block[e], event[e])
        for v in range(n_var):
            pt_scale, smear_width = pt_scales[v], smear_widths[v]
            n_good = 0
            n_b = 0
            ht = 0.0
            for i in range(first, jet_offsets[e + 1]):
                if not (abs(jet_eta[i]) < 2.4 and jet_id[i] == 6):
                    continue
                pt = jet_pt[i] * pt_scale
                if smear_width > 0.0:
                    pt *= 1.0 + smear_width * jet_normal(key, i - first)
                if not pt > 30.0:
                    continue
                if n_good < N_LEADING:
                    leading_pt[v, e, n_good] = pt
                b = jet_btag[i] > btag_threshold
                tagged[n_good] = b
                n_b += b
                ht += pt
                # float64 trigonometry: float32 libm results differ between libraries
                # (and CUDA), float64 ones agree to an ulp, so every device bins the same.
                local = i - first
                if not known[local]:
                    cos_phi[local] = math.cos(float(jet_phi[i]))
                    sin_phi[local] = math.sin(float(jet_phi[i]))
                    sinh_eta[local] = math.sinh(float(jet_eta[i]))
                    known[local] = True
                m = float(jet_mass[i])
                px[n_good] = pt * cos_phi[local]
                py[n_good] = pt * sin_phi[local]
                pz[n_good] = pt * sinh_eta[local]
                en[n_good] = math.sqrt(px[n_good] ** 2 + py[n_good] ** 2 + pz[n_good] ** 2 + m * m)
                n_good += 1
            if n_good < 4 or n_b == 0:
                continue
            if n_b == 1:
                region[v, e] = REGION_4J1B
                observable[v, e] = ht
                continue
            region[v, e] = REGION_4J2B
            observable[v, e] = _best_trijet_mass(px, py, pz, en, tagged, n_good)
    return region, observable, leading_pt


@numba.njit(cache=True, nogil=True, inline="always")
def _best_trijet_mass(px, py, pz, en, tagged, n_good):
    """Mass of the trijet of largest pT among those with a b-tagged jet."""
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
    return best_mass


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0


@numba.njit(cache=True, nogil=True, inline="always")
def _splitmix64(x):
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@numba.njit(cache=True, nogil=True, inline="always")
def event_key(run, luminosity_block, event):
    """64-bit key of an event's identity: ``smearing.event_keys`` for one event."""
    key = _splitmix64(np.uint64(run))
    key = _splitmix64(key ^ np.uint64(luminosity_block))
    return _splitmix64(key ^ np.uint64(event))


@numba.njit(cache=True, nogil=True, inline="always")
def jet_normal(key, local_index):
    """Standard-normal number of jet ``local_index`` of the event with ``key``."""
    bits1 = _splitmix64(key ^ _splitmix64(np.uint64(local_index)))
    bits2 = _splitmix64(bits1)
    u1 = (float(bits1 >> np.uint64(11)) + 0.5) * _TWO_POW_MINUS_53
    u2 = (float(bits2 >> np.uint64(11)) + 0.5) * _TWO_POW_MINUS_53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@numba.njit(cache=True, nogil=True)
def resolution_factors(run, luminosity_block, event, offsets, width):
    """Per-jet Normal(1, width) factors for every jet, as ``select_regions`` draws them.

    Same hash and Box-Muller formula as the array version ``smearing.resolution_factors``
    (numpy or cupy); they agree to a few ulp (libm versus numpy's vectorised log/cos).
    """
    factors = np.empty(offsets[-1] - offsets[0], dtype=np.float64)
    for e in range(len(offsets) - 1):
        key = event_key(run[e], luminosity_block[e], event[e])
        for i in range(offsets[e], offsets[e + 1]):
            factors[i - offsets[0]] = 1.0 + width * jet_normal(key, i - offsets[e])
    return factors
