"""Four-vectors, two-body decays and random sampling helpers of the AGC generator.

Four-vectors are tuples ``(E, px, py, pz)`` of float64 arrays, one entry per
particle; every helper is vectorised over those arrays and checks nothing (a decay
below threshold gets a zero momentum, not an error). The helpers that draw random
numbers take the generator to draw from: the order and number of their draws are
part of the generated events' identity (changing one changes every file, not only its
statistics). Particle masses and widths in GeV.
"""

from __future__ import annotations

import numpy as np

from swift_rules.fourvectors import boost, decay2  # noqa: F401 - the AGC's generator uses them

M_TOP, W_TOP = 172.5, 1.4
M_W, W_W = 80.4, 2.1
M_B = 4.8
M_ELECTRON, M_MUON = 0.000511, 0.10566
TWO_PI = 2.0 * np.pi


def breit_wigner(rng, n, mass, width, lo, hi):
    """``n`` masses from a Breit-Wigner (Cauchy) of ``mass`` and ``width``, clipped to [lo, hi]."""
    return np.clip(mass + 0.5 * width * rng.standard_cauchy(n), lo, hi)


def p4_from_transverse(px, py, y, m):
    """The four-vector of transverse momentum (px, py), rapidity ``y`` and mass ``m``."""
    mt = np.sqrt(px * px + py * py + m * m)
    return (mt * np.cosh(y), px, py, mt * np.sinh(y))


def take(p, index):
    """The particles ``index`` (an index array or mask) of the four-vector ``p``."""
    return tuple(c[index] for c in p)


def scale(p, factor):
    """The four-vector ``p`` times ``factor`` (per particle or one number)."""
    return tuple(c * factor for c in p)


def choose(rng, n, probs):
    """``n`` indices into ``probs``, drawn with those (unnormalised) probabilities."""
    cum = np.cumsum(probs)
    cum = cum / cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(probs) - 1)


def beta1(rng, b, n):
    """Beta(1, b) by inversion (much faster than ``rng.beta``), as float32."""
    exponent = (1.0 / np.asarray(b, dtype=np.float64)).astype(np.float32)
    return 1.0 - rng.random(n, dtype=np.float32) ** exponent


def power_law(rng, n, pt_min, index, pt_max=2000.0):
    """pT with density ~ pT^-(index+1) above pt_min (P(pT > x) = (x/pt_min)^-index)."""
    u = rng.random(n)
    return np.minimum(pt_min * (1.0 - u) ** (-1.0 / index), pt_max)
