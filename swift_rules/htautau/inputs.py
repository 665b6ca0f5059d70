"""The input format of the analysis: the reduced NanoAOD of the CMS Open Data outreach tool.

``skim.cxx`` reads files made by ``AOD2NanoAOD.cc`` (cms-opendata-analyses/
AOD2NanoAODOutreachTool): one TTree ``Events`` whose branches and leaf types are those
the tool declares: ``run`` (``Int_t``), ``luminosityBlock`` (``UInt_t``), ``event``
(``ULong64_t``), three bool trigger bits, ``PV_*``, the collections ``Muon``, ``Electron``,
``Tau`` and ``Jet`` with their ``UInt_t`` counters (``nMuon``...), ``MET_*`` and, for
simulation only, ``GenPart`` (``nGenPart``). The generator writes exactly this, in the
tool's branch order. Light on purpose (numpy dtype names as strings, no numpy).
"""

from __future__ import annotations

MUON_FIELDS = {
    "pt": "f4",
    "eta": "f4",
    "phi": "f4",
    "mass": "f4",
    "charge": "i4",
    "pfRelIso03_all": "f4",
    "pfRelIso04_all": "f4",
    "tightId": "?",
    "softId": "?",
    "dxy": "f4",
    "dxyErr": "f4",
    "dz": "f4",
    "dzErr": "f4",
    "jetIdx": "i4",
    "genPartIdx": "i4",
}
ELECTRON_FIELDS = {
    "pt": "f4",
    "eta": "f4",
    "phi": "f4",
    "mass": "f4",
    "charge": "i4",
    "pfRelIso03_all": "f4",
    "dxy": "f4",
    "dxyErr": "f4",
    "dz": "f4",
    "dzErr": "f4",
    "cutBasedId": "?",
    "pfId": "?",
    "jetIdx": "i4",
    "genPartIdx": "i4",
}
TAU_FIELDS = {
    "pt": "f4",
    "eta": "f4",
    "phi": "f4",
    "mass": "f4",
    "charge": "i4",
    "decayMode": "i4",
    "relIso_all": "f4",
    "jetIdx": "i4",
    "genPartIdx": "i4",
    "idDecayMode": "?",
    "idIsoRaw": "f4",
    "idIsoVLoose": "?",
    "idIsoLoose": "?",
    "idIsoMedium": "?",
    "idIsoTight": "?",
    "idAntiEleLoose": "?",
    "idAntiEleMedium": "?",
    "idAntiEleTight": "?",
    "idAntiMuLoose": "?",
    "idAntiMuMedium": "?",
    "idAntiMuTight": "?",
}
JET_FIELDS = {"pt": "f4", "eta": "f4", "phi": "f4", "mass": "f4", "puId": "?", "btag": "f4"}
GENPART_FIELDS = {"pt": "f4", "eta": "f4", "phi": "f4", "mass": "f4", "pdgId": "i4", "status": "i4"}
TRIGGERS = ["HLT_IsoMu24_eta2p1", "HLT_IsoMu24", "HLT_IsoMu17_eta2p1_LooseIsoPFTau20"]
EVENT_FIELDS = {
    "run": "i4",
    "luminosityBlock": "u4",
    "event": "u8",
    **dict.fromkeys(TRIGGERS, "?"),
    "PV_npvs": "i4",
    "PV_x": "f4",
    "PV_y": "f4",
    "PV_z": "f4",
}
MET_FIELDS = {
    "MET_pt": "f4",
    "MET_phi": "f4",
    "MET_sumet": "f4",
    "MET_significance": "f4",
    "MET_CovXX": "f4",
    "MET_CovXY": "f4",
    "MET_CovYY": "f4",
}
COLLECTIONS = {
    "Muon": MUON_FIELDS,
    "Electron": ELECTRON_FIELDS,
    "Tau": TAU_FIELDS,
    "Jet": JET_FIELDS,
    "GenPart": GENPART_FIELDS,
}
# The tree's layout: scalars, then each collection (its counter first), as the tool writes.
LAYOUT = [
    *EVENT_FIELDS,
    "Muon",
    "Electron",
    "Tau",
    *MET_FIELDS,
    "Jet",
    "GenPart",
]


def branch_types(is_data: bool) -> dict[str, str]:
    """Every branch of a file, flat (``nMuon``, ``Muon_pt``...): name -> numpy dtype."""
    out = {}
    for name in LAYOUT:
        if name in COLLECTIONS:
            if name == "GenPart" and is_data:
                continue
            out[f"n{name}"] = "u4"
            out.update({f"{name}_{f}": t for f, t in COLLECTIONS[name].items()})
        else:
            out[name] = {**EVENT_FIELDS, **MET_FIELDS}[name]
    return out


BRANCH_TYPES = branch_types(is_data=False)

# Data runs: first run number and events per run of the toy.
