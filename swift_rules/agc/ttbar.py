"""The AGC CMS ttbar stage (CPU variant): selection, observables, systematics.

Columnar: NanoEvents reads only the branches used; the per-event work (object
selection, b-tag counting, trijet combinatorics) runs in the numba kernels of
``kernels.py`` over flat columns, and histograms are filled with ``hist``.
Histograms are left unnormalised (weight 1 x systematic factors) per sample;
the cross-section normalisation needs the events processed over the whole
sample, so it is applied after merging (``swift_rules.agc.histograms``).
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
from coffea import processor

from swift_rules.agc import kernels
from swift_rules.agc.jet_id import JET_ID_INPUTS, tight_lepton_veto_id
from swift_rules.agc.samples import BINS, HIGH, LOW, REGIONS, split_sample_name
from swift_rules.inputs import NOTES_KEY

JET_COLUMNS = ("pt", "eta", "phi", "mass")
ELECTRON_COLUMNS = ("pt", "eta", "cutBased", "sip3d")
MUON_COLUMNS = ("pt", "eta", "tightId", "sip3d", "pfRelIso04_all")
# NanoEvents builds lepton collections only when these exist, even if unused here.
CANDIDATE_COLUMNS = ("phi", "mass", "charge")
EVENT_COLUMNS = ("run", "luminosityBlock", "event")

BTAG_WEIGHT_STEP = 0.075  # per 50 GeV of the i-th leading jet's pT
WJETS_SCALE_STEP = 0.025
JES_FACTOR = 1.03
JER_WIDTH = 0.05


def sample_variations(process: str, variation: str) -> list[str]:
    """The histogram variations one sample fills."""
    if variation != "nominal":
        return [variation]
    names = ["nominal"]
    names += [f"btag_var_{i}_{d}" for i in range(kernels.N_LEADING) for d in ("up", "down")]
    if process == "wjets":
        names += ["scale_var_up", "scale_var_down"]
    return [*names, "pt_scale_up", "pt_res_up"]


def new_histogram(process: str, variation: str) -> hist.Hist:
    """Empty histogram of one sample, its categories already present (so that a sample
    with no selected event still yields its zero histograms)."""
    return hist.Hist(
        hist.axis.Regular(BINS, LOW, HIGH, name="observable", label="observable [GeV]"),
        hist.axis.StrCategory(REGIONS, name="region", growth=True),
        hist.axis.StrCategory([process], name="process", growth=True),
        hist.axis.StrCategory(sample_variations(process, variation), name="variation", growth=True),
        storage=hist.storage.Weight(),
    )


def pt_variations(variation: str) -> dict[str, tuple[float, float]]:
    """(pT scale, resolution smearing width) of each jet-pT variation a sample fills."""
    out = {"nominal": (1.0, 0.0)}
    if variation == "nominal":
        out["pt_scale_up"] = (JES_FACTOR, 0.0)
        out["pt_res_up"] = (1.0, JER_WIDTH)
    return out


class MissingBranchError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _flat(array: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Contents and offsets of a jagged NanoAOD column: its own buffers where it is a
    plain list of numbers (no copy, and ~5x less time than flatten and num)."""
    layout = ak.materialize(array, highlevel=False)
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(
        layout.content, ak.contents.NumpyArray
    ):
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        content = np.asarray(layout.content.data)
        if offsets[0] == 0 and len(content) == offsets[-1]:
            return content, offsets
    counts = ak.to_numpy(ak.num(array, axis=1))
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return ak.to_numpy(ak.flatten(array, axis=1)), offsets


class TtbarProcessor(processor.ProcessorABC):
    """AGC v2 ttbar analysis: 4j1b (HT) and 4j2b (m_bjj) regions with systematics.

    ``btag_branch``/``btag_threshold`` choose the tagger, so real files without
    ``Jet_btagCSVV2`` (NanoAOD v12: ``btagDeepFlavB``) can be analysed too.
    """

    def __init__(self, btag_branch: str = "btagCSVV2", btag_threshold: float = 0.5):
        self.btag_branch = btag_branch
        self.btag_threshold = float(btag_threshold)

    def required_branches(self) -> list:
        """The branches read, for an up-front check with a clear error. The jet ID is
        ``Jet_jetId``, or (NanoAOD v15, which has none) the inputs of its recipe."""
        return [
            *EVENT_COLUMNS,
            *(f"Jet_{c}" for c in (*JET_COLUMNS, self.btag_branch)),
            [("Jet_jetId",), tuple(f"Jet_{c}" for c in JET_ID_INPUTS)],
            *(f"Electron_{c}" for c in (*ELECTRON_COLUMNS, *CANDIDATE_COLUMNS)),
            *(f"Muon_{c}" for c in (*MUON_COLUMNS, *CANDIDATE_COLUMNS)),
        ]

    def _columns(self, events, collection: str, names) -> dict[str, np.ndarray]:
        coll = events[collection]
        out = {}
        for name in names:
            if name not in coll.fields:
                raise MissingBranchError(
                    f"file {events.metadata.get('filename')}: branch {collection}_{name} "
                    f"is missing (needed by agc::ttbar)"
                )
            out[name], out["offsets"] = _flat(coll[name])
        return out

    def columns(self, events) -> dict:
        """The flat host columns the selection needs: per collection a dict of
        contents plus ``offsets``, and ``ids`` (run, luminosityBlock, event)."""
        jets = self._columns(events, "Jet", (*JET_COLUMNS, self.btag_branch))
        if "jetId" in events.Jet.fields:
            jets["jetId"] = _flat(events.Jet.jetId)[0]
        else:
            recipe = self._columns(events, "Jet", JET_ID_INPUTS)
            jets["jetId"] = tight_lepton_veto_id(recipe)
        return {
            "Jet": jets,
            "Electron": self._columns(events, "Electron", ELECTRON_COLUMNS),
            "Muon": self._columns(events, "Muon", MUON_COLUMNS),
            "ids": tuple(ak.to_numpy(events[c]) for c in EVENT_COLUMNS),
        }

    def notes(self, events) -> dict:
        """What the record says of this chunk: files whose jet ID was recomputed."""
        if "jetId" in events.Jet.fields:
            return {}
        return {NOTES_KEY: {"jet_id_recomputed": {events.metadata.get("filename", "?")}}}

    def process(self, events):
        meta = events.metadata
        sample = meta["dataset"]
        if "process" in meta and "variation" in meta:
            process_name, variation = meta["process"], meta["variation"]
        else:  # a run without a fileset's metadata: the AGC's PROCESS__VARIATION names
            process_name, variation = split_sample_name(sample)
        h = self.histograms(self.columns(events), process_name, variation)
        return {"hists": {sample: h}, "nevts": {sample: len(events)}, **self.notes(events)}

    def select(self, columns: dict, pt_vars: dict) -> tuple[np.ndarray, ...]:
        """Region, observable and leading jet pTs of every event per jet-pT variation
        (the numba kernels: lepton count, then one pass for every variation)."""
        jets, ele, mu, ids = (columns[k] for k in ("Jet", "Electron", "Muon", "ids"))
        n_leptons = kernels.count_leptons(
            ele["offsets"], ele["pt"], ele["eta"], ele["cutBased"], ele["sip3d"],
            mu["offsets"], mu["pt"], mu["eta"], mu["tightId"], mu["sip3d"], mu["pfRelIso04_all"],
        )  # fmt: skip
        scales = np.array([scale for scale, _ in pt_vars.values()])
        widths = np.array([width for _, width in pt_vars.values()])
        return kernels.select_regions_varied(
            n_leptons == 1, jets["offsets"], jets["pt"], jets["eta"], jets["phi"],
            jets["mass"], jets[self.btag_branch], jets["jetId"], self.btag_threshold,
            scales, widths, *ids,
        )  # fmt: skip

    def histograms(self, columns: dict, process_name: str, variation: str) -> hist.Hist:
        """Selection, observables, systematics and weights of one chunk's columns."""
        h = new_histogram(process_name, variation)
        pt_vars = pt_variations(variation)
        regions, observables, leading_pts = self.select(columns, pt_vars)
        for v, pt_var in enumerate(pt_vars):
            region, observable, leading_pt = regions[v], observables[v], leading_pts[v]
            for code, region_name in ((kernels.REGION_4J1B, "4j1b"), (kernels.REGION_4J2B, "4j2b")):
                mask = region == code
                obs = observable[mask]

                def fill(name, weight=None, obs=obs, region_name=region_name):
                    h.fill(
                        observable=obs, region=region_name, process=process_name,
                        variation=name, weight=np.ones(len(obs)) if weight is None else weight,
                    )  # fmt: skip

                if pt_var != "nominal":
                    fill(pt_var)
                    continue
                fill(variation)
                if variation != "nominal":
                    continue
                lead = leading_pt[mask]
                for i in range(kernels.N_LEADING):
                    step = BTAG_WEIGHT_STEP * lead[:, i] / 50.0
                    fill(f"btag_var_{i}_up", 1.0 + step)
                    fill(f"btag_var_{i}_down", 1.0 - step)
                if process_name == "wjets":
                    fill("scale_var_up", np.full(len(obs), 1.0 + WJETS_SCALE_STEP))
                    fill("scale_var_down", np.full(len(obs), 1.0 - WJETS_SCALE_STEP))
        return h

    def postprocess(self, accumulator):
        return accumulator
