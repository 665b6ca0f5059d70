"""The toy events of generator.py, written as NanoAOD-format ROOT files.

- `signal`: Z -> mu mu. The pair's mass follows a Breit-Wigner at 91.19 GeV (width
  2.50 GeV, 60-120 GeV), the muons are isolated, of opposite charge, measured with a
  1.5-2.5 % pT resolution; few jets (initial-state radiation).
- `background`: muon pairs from heavy-flavour decays in ttbar-like events. A falling
  mass continuum from 12 GeV, less isolated muons of either charge, more jets, often
  b-tagged.
- `data`: a mixture of both in the proportions of their cross sections, drawn with
  random numbers of its own (not copies of the simulated events).

Branches, named and typed as in CMS NanoAOD: `run`, `luminosityBlock` (uint32), `event`
(uint64), `genWeight` (float32, simulation only), `nMuon` and `Muon_pt`, `Muon_eta`,
`Muon_phi`, `Muon_mass`, `Muon_pfRelIso04_all` (float32), `Muon_charge` (int32),
`Muon_tightId` (bool), `nJet` and `Jet_pt`, `Jet_eta`, `Jet_phi`, `Jet_mass`,
`Jet_btagDeepFlavB` (float32). Objects are ordered by decreasing pT; muons outside
|eta| < 2.4 or below 3 GeV are not reconstructed.

Deterministic: the events of a file depend only on (seed, dataset, file index, events),
and so do its bytes (swift-rules' `recreate`: no fresh UUID, no time stamp of the write).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
from swift_rules.rootfile import recreate

from {{ cookiecutter.package_name }}.generator import DATASETS

MUON_MASS = 0.105658
Z_MASS, Z_WIDTH = 91.1876, 2.4952
SIGNAL_RANGE = (60.0, 120.0)
EVENT_STRIDE = 10_000_000  # event numbers of file i: i * EVENT_STRIDE + 1, 2, ...
COMPRESSION = {"zlib": uproot.ZLIB, "lz4": uproot.LZ4}

MUON_FIELDS = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32,
               "charge": np.int32, "pfRelIso04_all": np.float32, "tightId": np.bool_}  # fmt: skip
JET_FIELDS = {"pt": np.float32, "eta": np.float32, "phi": np.float32, "mass": np.float32,
              "btagDeepFlavB": np.float32}  # fmt: skip


def _collection_type(fields):
    record = ", ".join(f"{name}: {np.dtype(dtype).name}" for name, dtype in fields.items())
    return ak.types.from_datashape("var * {" + record + "}", highlevel=False)


def branch_types(is_data: bool) -> dict:
    """The TTree's branch types (uproot's `mktree`); collections give nX and X_field."""
    types = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}
    if not is_data:
        types["genWeight"] = np.float32
    types["Muon"] = _collection_type(MUON_FIELDS)
    types["Jet"] = _collection_type(JET_FIELDS)
    return types


def _rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(dataset.encode()), index])


def _decay(rng, mass, pt, rapidity):
    """Two muons from parents of `mass`, `pt`, `rapidity`: isotropic in the parent's
    rest frame, boosted to the laboratory. Returns ((pt, eta, phi) of each)."""
    n = len(mass)
    phi = rng.uniform(-np.pi, np.pi, n)
    mt = np.sqrt(mass**2 + pt**2)
    energy = mt * np.cosh(rapidity)
    beta = np.stack([pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(rapidity)], 1)
    beta /= energy[:, None]
    gamma = energy / mass
    p_star = np.sqrt(np.maximum(mass**2 / 4 - MUON_MASS**2, 0.0))
    cos_theta = rng.uniform(-1.0, 1.0, n)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    phi_star = rng.uniform(-np.pi, np.pi, n)
    k = p_star[:, None] * np.stack(
        [sin_theta * np.cos(phi_star), sin_theta * np.sin(phi_star), cos_theta], 1
    )
    b2 = (beta**2).sum(1)
    coefficient = np.where(b2 > 0, (gamma - 1) / np.where(b2 > 0, b2, 1.0), 0.0)
    muons = []
    for sign in (1.0, -1.0):
        bk = sign * (beta * k).sum(1)
        p = sign * k + (coefficient * bk + gamma * mass / 2)[:, None] * beta
        pt_lab = np.hypot(p[:, 0], p[:, 1])
        muons.append((pt_lab, np.arcsinh(p[:, 2] / pt_lab), np.arctan2(p[:, 1], p[:, 0])))
    return muons


def _signal_mass(rng, n):
    """Breit-Wigner masses within SIGNAL_RANGE (inverse transform of its cumulative)."""
    lo, hi = (0.5 + np.arctan(2 * (m - Z_MASS) / Z_WIDTH) / np.pi for m in SIGNAL_RANGE)
    return Z_MASS + Z_WIDTH / 2 * np.tan(np.pi * (rng.uniform(lo, hi, n) - 0.5))


def _muons(rng, n, signal: bool):
    """The reconstructed muons of `n` events: the pair, sometimes a soft third muon."""
    if signal:
        mass = _signal_mass(rng, n)
        pair_pt, rapidity = rng.exponential(8.0, n), rng.normal(0.0, 1.6, n)
    else:
        mass = 12.0 + rng.exponential(50.0, n)
        pair_pt, rapidity = rng.exponential(40.0, n), rng.normal(0.0, 1.2, n)
    (pt1, eta1, phi1), (pt2, eta2, phi2) = _decay(rng, mass, pair_pt, rapidity)
    charge1 = rng.choice(np.array([-1, 1], np.int32), n)
    opposite = np.ones(n, bool) if signal else rng.random(n) < 0.6
    charge2 = np.where(opposite, -charge1, charge1)
    extra = rng.random(n) < (0.02 if signal else 0.2)  # more often from heavy flavour
    k = int(extra.sum())
    fields = {
        "pt": np.concatenate([pt1, pt2, 3.0 + rng.exponential(6.0, k)]),
        "eta": np.concatenate([eta1, eta2, rng.uniform(-2.6, 2.6, k)]),
        "phi": np.concatenate([phi1, phi2, rng.uniform(-np.pi, np.pi, k)]),
        "charge": np.concatenate([charge1, charge2, rng.choice(np.array([-1, 1], np.int32), k)]),
    }
    m = len(fields["pt"])
    resolution = np.where(np.abs(fields["eta"]) < 1.2, 0.015, 0.025)
    fields["pt"] = fields["pt"] * (1.0 + resolution * rng.normal(0.0, 1.0, m))
    prompt = np.concatenate([np.full(2 * n, signal), np.zeros(k, bool)])
    fields["pfRelIso04_all"] = np.where(prompt, rng.exponential(0.03, m), rng.exponential(0.06, m))
    fields["tightId"] = rng.random(m) < np.where(prompt, 0.97, 0.9)
    fields["mass"] = np.full(m, MUON_MASS)
    event = np.concatenate([np.arange(n), np.arange(n), np.flatnonzero(extra)])
    seen = (fields["pt"] > 3.0) & (np.abs(fields["eta"]) < 2.4)
    return _by_event(event[seen], {f: v[seen] for f, v in fields.items()}, n, MUON_FIELDS)


def _jets(rng, n, signal: bool):
    counts = rng.poisson(0.5 if signal else 2.6, n)
    m = int(counts.sum())
    pt = 20.0 + rng.exponential(25.0 if signal else 45.0, m)
    b_like = rng.random(m) < (0.03 if signal else 0.45)
    fields = {
        "pt": pt,
        "eta": rng.uniform(-2.5, 2.5, m),
        "phi": rng.uniform(-np.pi, np.pi, m),
        "mass": pt * rng.uniform(0.05, 0.2, m),
        "btagDeepFlavB": np.where(b_like, rng.beta(5.0, 1.5, m), rng.beta(0.6, 8.0, m)),
    }
    return _by_event(np.repeat(np.arange(n), counts), fields, n, JET_FIELDS)


def _by_event(event, fields, n, types) -> ak.Array:
    """Objects of events `event` as a list per event, by decreasing pT, typed `types`."""
    order = np.lexsort((-fields["pt"], event))
    typed = {f: fields[f][order].astype(dtype) for f, dtype in types.items()}
    return ak.unflatten(ak.zip(typed, depth_limit=1), np.bincount(event, minlength=n))


def _events(rng, n: int, process: str) -> dict[str, ak.Array]:
    signal = process == "signal"
    return {"Muon": _muons(rng, n, signal), "Jet": _jets(rng, n, signal)}


def generate_events(dataset: str, n: int, *, index: int = 0, seed: int = 42) -> dict:
    """The branches of `n` events of file `index` of `dataset`, as uproot writes them."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r} of the toy; known: {sorted(DATASETS)}")
    is_data = DATASETS[dataset]["is_data"]
    rng = _rng(seed, dataset, index)
    if is_data:
        # The simulation's proportions (as many signal events as the cross sections say),
        # in random order.
        xsec = {p: m["xsec"] for p, m in DATASETS.items() if not m["is_data"]}
        n_signal = round(n * xsec["signal"] / sum(xsec.values()))
        parts = [_events(rng, n_signal, "signal"), _events(rng, n - n_signal, "background")]
        order = rng.permutation(n)
        objects = {c: ak.concatenate([p[c] for p in parts])[order] for c in ("Muon", "Jet")}
    else:
        objects = _events(rng, n, dataset)
    branches = {
        "run": np.full(n, 2 if is_data else 1, np.uint32),
        "luminosityBlock": np.full(n, index + 1, np.uint32),
        "event": np.uint64(index) * np.uint64(EVENT_STRIDE) + np.arange(1, n + 1, dtype=np.uint64),
    }
    if not is_data:
        branches["genWeight"] = np.ones(n, np.float32)
    return {**branches, **objects}


def write_file(path, dataset: str, n: int, *, index: int = 0, seed: int = 42,
               compression: str = "zlib") -> int:  # fmt: skip
    """Write `n` events of file `index` of `dataset` to the ROOT file `path`; returns `n`."""
    branches = generate_events(dataset, n, index=index, seed=seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # uproot.recreate, but the same bytes every time (UUIDs from the name, a fixed time).
    with recreate(path, compression=COMPRESSION[compression](1)) as f:
        # mktree with explicit types, not f["Events"] = ...: uproot >= 5.7 would write an
        # RNTuple there, and NanoAOD is a TTree.
        tree = f.mktree("Events", branch_types(DATASETS[dataset]["is_data"]), title="Events")
        if n:
            tree.extend(branches)
    return n
