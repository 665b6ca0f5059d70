"""The jet ID for NanoAOD v15, which no longer stores ``Jet_jetId``.

CMS NanoAOD v15 (Run 3 data and simulation from 2024 on) drops ``Jet_jetId``: the
JetMET group prescribes recomputing the tight and tight-lepton-veto IDs from the
jet's energy fractions and constituent multiplicities. The recipe followed is the
JetMET one for 2024 (Summer24, AK4 PUPPI jets), from the "JetID13p6TeV"
recommendations (twiki.cern.ch/twiki/bin/view/CMS/JetID13p6TeV, NanoAOD v15 section;
cms-jetmet coordination issue 117):

    tight, |eta| <= 2.6:        neHEF < 0.99, neEmEF < 0.9, chMultiplicity +
                                neMultiplicity > 1, chHEF > 0.01, chMultiplicity > 0
    tight, 2.6 < |eta| <= 2.7:  neHEF < 0.90, neEmEF < 0.99
    tight, 2.7 < |eta| <= 3.0:  neHEF < 0.99
    tight, |eta| > 3.0:         neMultiplicity >= 2, neEmEF < 0.4
    tight lepton veto:          tight, and for |eta| <= 2.7 also muEF < 0.8, chEmEF < 0.8

The result is encoded as NanoAOD's ``Jet_jetId`` was (bit 1 tight, bit 2 tight lepton
veto): 6 for tight-lepton-veto jets, 2 for tight-only, 0 otherwise, so that the AGC's
selection (``jetId == 6``) reads it unchanged.
"""

from __future__ import annotations

import numpy as np

JET_ID_INPUTS = (
    "eta", "chHEF", "neHEF", "chEmEF", "neEmEF", "muEF", "chMultiplicity", "neMultiplicity",
)  # fmt: skip


def tight_lepton_veto_id(jets: dict[str, np.ndarray]) -> np.ndarray:
    """``jetId`` (0, 2 or 6) of flat jet columns, by the JetMET NanoAOD v15 recipe."""
    eta = np.abs(jets["eta"])
    ne_hef, ne_emef = jets["neHEF"], jets["neEmEF"]
    ch_mult = jets["chMultiplicity"].astype(np.int64)
    ne_mult = jets["neMultiplicity"].astype(np.int64)
    central = (
        (ne_hef < 0.99) & (ne_emef < 0.9) & (ch_mult + ne_mult > 1)
        & (jets["chHEF"] > 0.01) & (ch_mult > 0)
    )  # fmt: skip
    tight = np.select(
        [eta <= 2.6, eta <= 2.7, eta <= 3.0],
        [central, (ne_hef < 0.90) & (ne_emef < 0.99), ne_hef < 0.99],
        default=(ne_mult >= 2) & (ne_emef < 0.4),
    )
    lepton_veto = tight & ((eta > 2.7) | ((jets["muEF"] < 0.8) & (jets["chEmEF"] < 0.8)))
    return np.where(lepton_veto, 6, np.where(tight, 2, 0)).astype(np.int32)
