"""The arithmetic of ``skim.cxx``, operation for operation, as numba ufuncs.

The original computes in mixed float/double C++, and a histogram bin edge or the
``mt_1 < 30`` cut can fall between two roundings, so these kernels repeat its types
and its order of operations rather than a mathematically equal formula:

* ``Helper::DeltaPhi<float>``: the difference of two floats (float), ``std::fmod`` of
  it in double with ``2 * c``, ``c = float(M_PI)``, the wrap in double, returned as a
  float.
* The pair's Delta R: ``sqrt(pow(eta_1 - eta_2, 2) + pow(DeltaPhi, 2))`` in double of
  the float difference and the float Delta phi.
* ``compute_mt``: ``std::sqrt(2.0 * pt_1 * pt_met * (1.0 - std::cos(dphi)))``, where
  ``dphi`` is a float, so ``std::cos`` is the single-precision ``cosf``. numba calls
  the C library's ``cosf`` for a float32 ``math.cos`` (NumPy's float32 cosine is its
  own SIMD code and differs from it in the last bit for about 1 value in 6): the
  result is bit-identical to the compiled original on the same platform.
* ``ROOT::Math::PtEtaPhiMVector`` sums: each vector built from floats in double
  (phi restricted to (-pi, pi], negative masses restricted as GenVector does), summed
  in Cartesian coordinates (px, py, pz, E), and the sum's mass and pT taken as
  ``PxPyPzE4D`` does; ``float(p4.M())`` and ``float(p4.Pt())``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Helper::DeltaPhi's default argument `const T c = M_PI` with T = float.
PI_FLOAT = float(np.float32(math.pi))
TWO_PI_FLOAT = 2.0 * PI_FLOAT
# ROOT::Math::etaMax<double>(): the pseudorapidity GenVector gives a vector with pT 0.
ETA_MAX = 22756.0


@numba.njit(cache=True, nogil=True, inline="always")
def _delta_phi(v1, v2):
    r = np.fmod(np.float64(v2 - v1), TWO_PI_FLOAT)
    if r < -PI_FLOAT:
        r += TWO_PI_FLOAT
    elif r > PI_FLOAT:
        r -= TWO_PI_FLOAT
    return np.float32(r)


@numba.vectorize(["float32(float32, float32)"], cache=True, nopython=True)
def delta_phi(v1, v2):
    """``Helper::DeltaPhi(v1, v2)`` of floats: v2 - v1 wrapped into [-pi, pi]."""
    return _delta_phi(v1, v2)


@numba.vectorize(["float64(float32, float32, float32, float32)"], cache=True, nopython=True)
def delta_r(eta_1, phi_1, eta_2, phi_2):
    """The Delta R of ``FindMuonTauPair``, in double."""
    deta = np.float64(eta_1 - eta_2)
    dphi = np.float64(_delta_phi(phi_1, phi_2))
    return math.sqrt(deta * deta + dphi * dphi)


@numba.vectorize(["float64(float32, float32, float32, float32)"], cache=True, nopython=True)
def transverse_mass(pt, phi, pt_met, phi_met):
    """``compute_mt(pt, phi, pt_met, phi_met)``: a double, with the float cosine."""
    dphi = _delta_phi(phi, phi_met)
    return math.sqrt(2.0 * pt * pt_met * (1.0 - math.cos(dphi)))


@numba.njit(cache=True, nogil=True, inline="always")
def _pxpypze(pt32, eta32, phi32, m32):
    """(px, py, pz, E) of ``PtEtaPhiMVector(pt, eta, phi, m)``, as GenVector computes them."""
    pt, eta, phi, m = np.float64(pt32), np.float64(eta32), np.float64(phi32), np.float64(m32)
    if phi <= -math.pi or phi > math.pi:  # RestrictPhi
        phi = phi - math.floor(phi / (2 * math.pi) + 0.5) * 2 * math.pi
    if pt > 0:
        p = pt * math.cosh(eta)
        pz = pt * math.sinh(eta)
    else:
        if eta > ETA_MAX:
            p = eta - ETA_MAX
        elif eta < -ETA_MAX:
            p = -eta - ETA_MAX
        else:
            p = 0.0
        if eta == 0:
            pz = 0.0
        elif eta > 0:
            pz = eta - ETA_MAX
        else:
            pz = eta + ETA_MAX
    if m < 0 and p * p - m * m < 0:  # RestrictNegMass
        m = -p
    m2 = m * m if m >= 0 else -m * m
    e2 = p * p + m2
    e = math.sqrt(e2 if e2 > 0 else 0.0)
    return pt * math.cos(phi), pt * math.sin(phi), pz, e


@numba.njit(cache=True, nogil=True)
def _pair_mass_pt(pt_1, eta_1, phi_1, m_1, pt_2, eta_2, phi_2, m_2, mass, pt):
    for i in range(len(pt_1)):
        x1, y1, z1, t1 = _pxpypze(pt_1[i], eta_1[i], phi_1[i], m_1[i])
        x2, y2, z2, t2 = _pxpypze(pt_2[i], eta_2[i], phi_2[i], m_2[i])
        x, y, z, t = x1 + x2, y1 + y2, z1 + z2, t1 + t2
        mm = t * t - x * x - y * y - z * z
        mass[i] = np.float32(math.sqrt(mm) if mm >= 0 else -math.sqrt(-mm))
        pt[i] = np.float32(math.sqrt(x * x + y * y))


def pair_mass_pt(pt_1, eta_1, phi_1, m_1, pt_2, eta_2, phi_2, m_2):
    """``float(p4.M())`` and ``float(p4.Pt())`` of ``p4 = p4_1 + p4_2``, float32 arrays."""
    cols = [np.ascontiguousarray(c, dtype=np.float32) for c in (pt_1, eta_1, phi_1, m_1)]
    cols += [np.ascontiguousarray(c, dtype=np.float32) for c in (pt_2, eta_2, phi_2, m_2)]
    mass = np.empty(len(cols[0]), dtype=np.float32)
    pt = np.empty(len(cols[0]), dtype=np.float32)
    _pair_mass_pt(*cols, mass, pt)
    return mass, pt


def root_bin(x, nbins: int, low: float, high: float) -> np.ndarray:
    """The bin ``TH1::Fill`` puts each value in (``TAxis::FindBin``): 0 underflow, 1..nbins,
    nbins + 1 overflow (NaN too), from ``1 + int(nbins * (x - low) / (high - low))``."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), nbins + 1, dtype=np.int64)
    under = x < low
    inside = ~under & (x < high)
    out[under] = 0
    out[inside] = 1 + np.trunc(nbins * (x[inside] - low) / (high - low)).astype(np.int64)
    return out


def bin_values(x, nbins: int, low: float, high: float) -> np.ndarray:
    """Values that a ``hist`` regular axis puts in the bins ROOT would: the centre of
    ROOT's bin, -inf for its underflow and +inf for its overflow."""
    bins = root_bin(x, nbins, low, high)
    centres = low + (bins - 0.5) * ((high - low) / nbins)
    return np.where(bins == 0, -np.inf, np.where(bins == nbins + 1, np.inf, centres))
