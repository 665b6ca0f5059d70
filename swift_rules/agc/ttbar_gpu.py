"""The AGC CMS ttbar stage, GPU variant: the CPU variant's results, computed with CUDA.

Files are read and unpacked on the CPU exactly as in ``ttbar.py`` (flat contents plus
offsets). Each chunk's columns then go to the device once; there, CuPy element-wise
and reduction kernels count the leptons and draw the seeded smearing
(``smearing.py``), a numba.cuda kernel (``kernels_gpu.py``, one thread per event)
does the jet selection, HT and the trijet combinatorics, and ``bincount`` fills every
(region, variation) histogram at once. Only the bin sums come back to the host, as the
same ``hist`` object the CPU variant returns.

Histograms equal the CPU variant's: counts exactly, weighted sums up to the order of
floating-point additions (atomics on the device). CuPy is imported on first use, so
importing this module needs none; the array namespace ``xp`` can be replaced (NumPy
under numba's CUDA simulator, which is how it is tested without a GPU).
"""

from __future__ import annotations

import hist

from swift_rules.agc import kernels_gpu, smearing
from swift_rules.agc.kernels import N_LEADING
from swift_rules.agc.samples import BINS, HIGH, LOW, REGIONS
from swift_rules.agc.ttbar import (
    BTAG_WEIGHT_STEP,
    WJETS_SCALE_STEP,
    TtbarProcessor,
    new_histogram,
    pt_variations,
)

# Region codes of the kernel (0: none, 1: 4j1b, 2: 4j2b) index the first axis of the
# device histogram array; code 0 collects the unselected events and is dropped.
REGION_CODES = {"4j1b": 1, "4j2b": 2}
N_FLOW_BINS = BINS + 2


def bin_index(x, xp):
    """Bin of each value on the observable axis, flow bins included (0: underflow,
    BINS + 1: overflow or NaN), computed as boost-histogram's regular axis does."""
    z = (x - LOW) / (HIGH - LOW)
    index = xp.where(z >= 0, xp.floor(z * BINS) + 1, 0.0)
    return xp.where(z < 1, index, BINS + 1).astype(xp.int64)


class TtbarProcessorGPU(TtbarProcessor):
    """GPU variant of ``agc::ttbar``: same options, same output as ``TtbarProcessor``."""

    xp = None  # array namespace; None: CuPy, imported on first use

    @classmethod
    def namespace(cls):
        if cls.xp is not None:
            return cls.xp
        import cupy

        return cupy

    def to_device(self, columns: dict) -> dict:
        """Copy a chunk's host columns (``TtbarProcessor.columns``) to the device."""
        xp = self.namespace()
        return {
            key: tuple(map(xp.asarray, value))
            if key == "ids"
            else {name: xp.asarray(array) for name, array in value.items()}
            for key, value in columns.items()
        }

    def histograms(self, columns: dict, process_name: str, variation: str) -> hist.Hist:
        return self.device_histograms(self.to_device(columns), process_name, variation)

    def device_histograms(self, columns: dict, process_name: str, variation: str) -> hist.Hist:
        """``histograms`` of columns already on the device."""
        xp = self.namespace()
        jets, ids = columns["Jet"], columns["ids"]
        one_lepton = count_leptons(columns["Electron"], columns["Muon"], xp) == 1
        h = new_histogram(process_name, variation)
        names = list(h.axes["variation"])
        index, weight = [], []  # flat histogram index and weight of every fill

        def fill(name, region, observable, w=None):
            slot = region.astype(xp.int64) * len(names) + names.index(name)
            index.append(slot * N_FLOW_BINS + bin_index(observable, xp))
            weight.append(xp.ones(len(observable)) if w is None else w)

        for pt_var, (pt_scale, smear_width) in pt_variations(variation).items():
            factors = None
            if smear_width > 0:
                factors = smearing.resolution_factors(*ids, jets["offsets"], smear_width, xp)
            region, observable, leading_pt = kernels_gpu.select_regions(
                xp, one_lepton, jets["offsets"], jets["pt"], jets["eta"], jets["phi"],
                jets["mass"], jets[self.btag_branch], jets["jetId"], self.btag_threshold,
                pt_scale, factors,
            )  # fmt: skip
            if pt_var != "nominal":
                fill(pt_var, region, observable)
                continue
            fill(variation, region, observable)
            if variation != "nominal":
                continue
            for i in range(N_LEADING):
                step = BTAG_WEIGHT_STEP * leading_pt[:, i] / 50.0
                fill(f"btag_var_{i}_up", region, observable, 1.0 + step)
                fill(f"btag_var_{i}_down", region, observable, 1.0 - step)
            if process_name == "wjets":
                for name, factor in (
                    ("up", 1.0 + WJETS_SCALE_STEP),
                    ("down", 1.0 - WJETS_SCALE_STEP),
                ):
                    fill(f"scale_var_{name}", region, observable, xp.full(len(observable), factor))

        size = (1 + len(REGION_CODES)) * len(names) * N_FLOW_BINS
        index, weight = xp.concatenate(index), xp.concatenate(weight)
        # Leave out the unselected events (region code 0, the first slots): atomic adds
        # of most events into the same few bins would serialise on the device.
        selected = index >= len(names) * N_FLOW_BINS
        index, weight = index[selected], weight[selected]
        sums = [xp.bincount(index, weights=w, minlength=size) for w in (weight, weight * weight)]
        shape = (1 + len(REGION_CODES), len(names), N_FLOW_BINS)
        values, variances = (to_host(s, xp).reshape(shape) for s in sums)
        view = h.view(flow=True)  # axes: observable, region, process, variation
        for region_name in REGIONS:
            r, code = h.axes["region"].index(region_name), REGION_CODES[region_name]
            view.value[:, r, 0, :] = values[code].T
            view.variance[:, r, 0, :] = variances[code].T
        return h


def count_leptons(ele: dict, mu: dict, xp):
    """Selected electrons plus muons per event (``kernels.count_leptons``), with
    element-wise masks and a cumulative sum over the flat columns."""
    f64 = xp.float64  # compare in float64, as the numba kernel does
    ele_ok = (
        (ele["pt"].astype(f64) > 30.0)
        & (xp.abs(ele["eta"].astype(f64)) < 2.1)
        & (ele["cutBased"] == 4)
        & (ele["sip3d"].astype(f64) < 4.0)
    )
    mu_ok = (
        (mu["pt"].astype(f64) > 30.0)
        & (xp.abs(mu["eta"].astype(f64)) < 2.1)
        & mu["tightId"].astype(xp.bool_)
        & (mu["sip3d"].astype(f64) < 4.0)
        & (mu["pfRelIso04_all"].astype(f64) < 0.15)
    )
    return _per_event_sum(ele_ok, ele["offsets"], xp) + _per_event_sum(mu_ok, mu["offsets"], xp)


def _per_event_sum(flags, offsets, xp):
    running = xp.concatenate([xp.zeros(1, dtype=xp.int64), xp.cumsum(flags, dtype=xp.int64)])
    base = offsets - offsets[0]
    return running[base[1:]] - running[base[:-1]]


def to_host(array, xp):
    """A device array as a NumPy array (a NumPy array stays as it is)."""
    return array.get() if hasattr(array, "get") else xp.asarray(array)
