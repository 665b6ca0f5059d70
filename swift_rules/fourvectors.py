"""Four-vectors for the toy models of data generators: boosts and two-body decays.

Four-vectors are tuples ``(E, px, py, pz)`` of float64 arrays, one entry per particle;
every function is vectorised over them and checks nothing (a decay below threshold gets
a zero momentum, not an error). ``decay2`` draws from the generator it is given: the
order and number of its draws are part of the generated events' identity.
"""

from __future__ import annotations

import numpy as np

__all__ = ["boost", "decay2"]

TWO_PI = 2.0 * np.pi


def boost(p, parent, parent_mass):
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


def decay2(rng, parent, mass, m1, m2):
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
    d1 = boost((e1, dx, dy, dz), parent, mass)
    d2 = boost((e2, -dx, -dy, -dz), parent, mass)
    return d1, d2
