"""The CMS Open Data H -> tautau (mu tau_h) outreach analysis, ported to swift-rules stages.

The second reference analysis: cms-opendata-analyses/HiggsTauTauNanoAODOutreachAnalysis
(``skim.cxx``, ``histograms.py``, ``plot.py``), with its physics kept exactly. See
``docs/htautau.md``.
"""

from pathlib import Path

# Its registrations (stages, generator, fileset): the entry point `swift_rules.stages`.
REGISTRY = Path(__file__).with_name("registry.yaml")
# Its own steps after the generic ones (the QCD estimate, plot.py's plots).
RULES = Path(__file__).with_name("rules.smk")
