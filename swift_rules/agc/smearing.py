"""Jet pT smearing seeded from each event's own identity.

The AGC reference draws the resolution smearing from an unseeded global RNG, so
its ``pt_res_up`` histograms change from run to run and with the chunking. Here
every jet's random number is a hash of (run, luminosityBlock, event, jet index):
the same jet gets the same factor whatever the chunking, executor, worker count
or device. Written against the array namespace ``xp`` (numpy or cupy), so the
GPU variant draws the very same numbers.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_TWO_POW_53 = float(2**53)


def splitmix64(x, xp=np):
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + xp.uint64(_GOLDEN)
    x = (x ^ (x >> xp.uint64(30))) * xp.uint64(_MIX1)
    x = (x ^ (x >> xp.uint64(27))) * xp.uint64(_MIX2)
    return x ^ (x >> xp.uint64(31))


def event_keys(run, luminosity_block, event, xp=np):
    """One 64-bit key per event from its (run, luminosityBlock, event) identity."""
    key = splitmix64(xp.asarray(run).astype(xp.uint64), xp)
    key = splitmix64(key ^ xp.asarray(luminosity_block).astype(xp.uint64), xp)
    return splitmix64(key ^ xp.asarray(event).astype(xp.uint64), xp)


def _unit_interval(bits, xp):
    """Map 64 random bits to a float64 in the open interval (0, 1)."""
    return ((bits >> xp.uint64(11)).astype(xp.float64) + 0.5) / _TWO_POW_53


def jet_normal(keys, offsets, xp=np):
    """A standard-normal number per jet, from its event key and its index in the event.

    ``offsets`` are the jet collection's offsets (length n_events + 1).
    """
    offsets = xp.asarray(offsets, dtype=xp.int64)
    jet = xp.arange(int(offsets[0]), int(offsets[-1]), dtype=xp.int64)
    # The event of each jet. (Not xp.repeat: CuPy refuses an array of repeat counts.)
    jet_event = xp.searchsorted(offsets, jet, side="right") - 1
    jet_event_key = keys[jet_event]
    local_index = jet - offsets[jet_event]
    bits1 = splitmix64(jet_event_key ^ splitmix64(local_index.astype(xp.uint64), xp), xp)
    bits2 = splitmix64(bits1, xp)
    u1 = _unit_interval(bits1, xp)
    u2 = _unit_interval(bits2, xp)
    # Box-Muller: exact in distribution, and the same formula on every device.
    return xp.sqrt(-2.0 * xp.log(u1)) * xp.cos(2.0 * np.pi * u2)


def resolution_factors(run, luminosity_block, event, offsets, width=0.05, xp=np):
    """Per-jet pT factors drawn from Normal(1, width), reproducible per event."""
    keys = event_keys(run, luminosity_block, event, xp)
    return 1.0 + width * jet_normal(keys, offsets, xp)
