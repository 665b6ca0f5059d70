"""The CMS Open Data H -> tautau (mu tau_h) outreach analysis, ported to swift-rules stages.

The second reference analysis: cms-opendata-analyses/HiggsTauTauNanoAODOutreachAnalysis
(``skim.cxx``, ``histograms.py``, ``plot.py``), with its physics kept exactly. See
``docs/htautau.md``.
"""
