"""The NanoAOD layout that the AGC generator writes.

The TTree branches and their types in NanoAOD order (:data:`BRANCH_TYPES`), the
fields of the ``Jet``, ``Electron`` and ``Muon`` collections with the reduced float
precision that NanoAOD stores them with (:func:`round_mantissa`), and the order of a
collection's entries: by event, then decreasing pT (:func:`sorted_collection`).
Only what the AGC ttbar analysis reads; not a general NanoAOD schema. Changing a type,
a precision or the order changes the generated files.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

# The collections of an event; a TTree collection X becomes nX + X_field branches.
COLLECTIONS = ("Jet", "Electron", "Muon")

# NanoAOD stores many floats with a reduced mantissa; so do we (it also makes
# the files compress like NanoAOD). ``None``: full float32 precision.
JET_TYPES = {
    "pt": (np.float32, 10),
    "eta": (np.float32, 12),
    "phi": (np.float32, 12),
    "mass": (np.float32, 10),
    "btagCSVV2": (np.float32, 10),
    "btagDeepFlavB": (np.float32, 10),
    "jetId": (np.int32, None),
    "hadronFlavour": (np.int32, None),
}
ELECTRON_TYPES = {
    "pt": (np.float32, None),
    "eta": (np.float32, 12),
    "phi": (np.float32, 12),
    "mass": (np.float32, None),
    "charge": (np.int32, None),
    "cutBased": (np.int32, None),
    "sip3d": (np.float32, 10),
    "pfRelIso03_all": (np.float32, 10),
}
MUON_TYPES = {
    "pt": (np.float32, None),
    "eta": (np.float32, 12),
    "phi": (np.float32, 12),
    "mass": (np.float32, None),
    "charge": (np.int32, None),
    "tightId": (np.bool_, None),
    "sip3d": (np.float32, 10),
    "pfRelIso04_all": (np.float32, 10),
}


def round_mantissa(x: np.ndarray, bits: int | None) -> np.ndarray:
    """Round float32 values to ``bits`` mantissa bits (as NanoAOD's ``precision``)."""
    if bits is None or bits >= 23:
        return x
    shift = 23 - bits
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # Round half up in the magnitude; values here are finite and far from float32's maximum.
    rounded = (u + np.uint32(1 << (shift - 1))) & np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF)
    return rounded.view(np.float32)


def order_by_event_and_pt(evt, pt, bits, n_events):
    """Permutation sorting by event, then decreasing pT, ties by position: platform-independent.

    ``evt``: event indices in ``range(n_events)``; ``bits``: the mantissa bits ``pt`` is
    rounded to (None: full precision).
    """
    m = len(evt)
    pt_bits = pt.view(np.uint32).astype(np.int64)  # monotonic in pT for pT >= 0
    if bits is not None and bits <= 10 and m < (1 << 20) and n_events < (1 << 16):
        # Pack (event, rounded pT, position) into one unique int64 and sort the keys.
        pt_key = (1 << 18) - 1 - (pt_bits >> (23 - bits))
        key = (evt.astype(np.int64) << 38) | (pt_key << 20) | np.arange(m, dtype=np.int64)
        return np.sort(key) & ((1 << 20) - 1)
    key = (evt.astype(np.int64) << 32) | (0xFFFFFFFF - pt_bits)
    return np.argsort(key, kind="stable")


def sorted_collection(evt, columns, n, types):
    """Cast and round the columns, sort by (event, decreasing pT); return (counts, columns)."""
    out = {}
    for name, (dtype, bits) in types.items():
        v = columns[name].astype(dtype)
        if bits is not None:
            v = round_mantissa(v, bits)
        out[name] = v
    order = order_by_event_and_pt(evt, out["pt"], types["pt"][1], n)
    out = {name: v[order] for name, v in out.items()}
    counts = np.bincount(evt, minlength=n).astype(np.int64)
    return counts, out


def record_type(types) -> ak.types.Type:
    """The awkward type of a collection's records: ``var * {field: dtype, ...}``."""
    fields = ", ".join(f"{name}: {np.dtype(dtype).name}" for name, (dtype, _) in types.items())
    return ak.types.from_datashape(f"var * {{{fields}}}", highlevel=False)


# TTree branch types, in NanoAOD order; collections become nX + X_field branches.
BRANCH_TYPES = {
    "run": np.uint32,
    "luminosityBlock": np.uint32,
    "event": np.uint64,
    "genWeight": np.float32,
    "PV_npvs": np.int32,
    "MET_pt": np.float32,
    "MET_phi": np.float32,
    "Jet": record_type(JET_TYPES),
    "Electron": record_type(ELECTRON_TYPES),
    "Muon": record_type(MUON_TYPES),
}
